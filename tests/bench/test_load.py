"""The load script's short version: correctness under concurrency (never its timings)."""

from __future__ import annotations

import argparse

import pytest

from bench.load.run import DEFAULT_MIX, drive, parse_arguments, parse_mix, scenario_of
from mandate.runtime.settings import Settings

SEED = 1
"""With this seed the first ten scenarios hold every kind, the cross-tenant read after the others started."""


async def test_load_short_run_leaks_nothing_and_makes_each_effect_once(base_url: str, stack_settings: Settings) -> None:
    scenarios = [scenario_of(n, DEFAULT_MIX, seed=SEED) for n in range(10)]
    assert set(scenarios) == set(DEFAULT_MIX)
    report = await drive(
        base_url, stack_settings.database_url, users=3, seconds=600, max_scenarios=10, seed=SEED, progress=False
    )
    tally = report.tally
    assert report.scenarios == 10
    assert dict(tally.errors) == {}, tally.error_samples
    assert tally.leaks == [] and tally.replays_run == []
    assert report.duplicate_effects == 0 and report.unreported_effects == []
    for kind in ("question", "ticket.approve", "payment.approve", "replay", "cross_tenant_read"):
        assert tally.latencies[kind], f"no {kind} request was made"
    effects = sum(len(ids) for ids in tally.effects_seen.values())
    assert effects == scenarios.count("ticket") + scenarios.count("payment")
    assert report.clean


async def test_load_refuses_any_address_but_loopback(stack_settings: Settings) -> None:
    with pytest.raises(ValueError, match="loopback"):
        await drive("http://10.0.0.1:8000", stack_settings.database_url, users=1, seconds=1, max_scenarios=1)


def test_load_arguments_refuse_unknown_scenarios_and_unbounded_runs() -> None:
    assert parse_mix("question=1,payment=0") == {"question": 1, "payment": 0}
    for bad in ("question=x", "delete_everything=1", "question=0"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_mix(bad)
    with pytest.raises(SystemExit):
        parse_arguments(["--seconds", "0"])
