"""Property-based fuzzing from the service's own OpenAPI document: whatever is sent, it stays closed.

For every operation in ``GET /openapi.json`` (as served by the app under test), schemathesis sends
requests over real HTTP as carol (tenant globex), then as alice (tenant acme): as carol, its coverage
cases (boundary, missing and wrong-typed values, unexpected methods: about 1,550 requests) and
random valid and invalid ones; as alice, random ones. Each user first plants a canary: a thread
whose answer quotes a private document of their tenant. Every answer to the other user must then
be: not a 5xx; if an error, ``{"code", "message"}`` JSON; if a stream, one that ends; free of the
canary's thread id and document text; free of tokens. Part of the time a generated ``thread_id`` becomes the
canary's thread (a path naming it must be refused) or the caller's own scratch thread (so requests
get past the ownership check into the run engine). A ``GET /ok`` probe every few requests, and a
client timeout on each, catch a stalled service. Each operation is a subtest; its failures are
listed together, each with a curl command that reproduces it.

Bounded: ``FUZZ_EXAMPLES`` random requests per operation and user, no shrinking, a fixed seed so
that CI replays the same requests (about two minutes on two cores, stack start included).
``MANDATE_FUZZ_EXAMPLES`` and ``MANDATE_FUZZ_SEED`` explore further locally.

Not fuzzed, because they are not in the schema: ``/dev-idp`` (the dev-only OAuth server, a mounted
app speaking form-encoded OAuth with its own tests in ``tests/auth``) and ``/ui`` (server-rendered
HTML forms behind CSRF tokens, driven in a browser by ``test_approver_page``). Nothing else is
excluded.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import httpx
import pytest
import schemathesis
from schemathesis import APIOperation, BaseSchema
from schemathesis.core.result import Err

from tests.utils.fuzz import Canary, Fuzzer, fuzz_config, fuzz_operation, plant_canary
from tests.utils.threads import bearer, new_thread

FUZZ_EXAMPLES = int(os.environ.get("MANDATE_FUZZ_EXAMPLES", "8"))
FUZZ_SEED = int(os.environ.get("MANDATE_FUZZ_SEED", "20260301"))
CANARIES = {
    "alice": ("Summarize the latest contract terms for ACME.", ("net 45", "Initech", "Master Services Agreement")),
    "carol": ("What are the Globex contract terms?", ("net 30", "Hooli", "Springfield")),
}
"""Per user: the question that plants their canary, and phrases of their document the answer may quote."""


@pytest.fixture(scope="module")
def canaries(base_url: str, token: Callable[..., str]) -> dict[str, Canary]:
    """alice's and carol's canary threads, planted before any fuzzing."""
    with httpx.Client(base_url=base_url, timeout=60) as client:
        return {
            user: plant_canary(client, token(user), user=user, question=question, candidates=phrases)
            for user, (question, phrases) in CANARIES.items()
        }


@pytest.fixture(scope="module")
def api_schema(base_url: str) -> BaseSchema:
    """The service's own OpenAPI document, as served."""
    return schemathesis.openapi.from_url(f"{base_url}/openapi.json", config=fuzz_config())


@pytest.fixture(scope="module")
def operations(api_schema: BaseSchema) -> list[APIOperation]:
    """Every operation of the document (an operation schemathesis cannot read fails here)."""
    operations = []
    for result in api_schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()
        operations.append(result.ok())
    return operations


def _fuzzer(base_url: str, token: Callable[..., str], user: str, foreign: Canary) -> Iterator[Fuzzer]:
    bearer_token = token(user)
    with httpx.Client(base_url=base_url, timeout=60) as client:
        own_thread = new_thread(client, bearer_token)
    fuzzer = Fuzzer(base_url=base_url, token=bearer_token, own_thread=own_thread, foreign=foreign)
    with fuzzer.session:
        yield fuzzer


@pytest.fixture(scope="module")
def carol_fuzzer(base_url: str, token: Callable[..., str], canaries: dict[str, Canary]) -> Iterator[Fuzzer]:
    """carol (globex), guarding alice's canary."""
    yield from _fuzzer(base_url, token, "carol", canaries["alice"])


@pytest.fixture(scope="module")
def alice_fuzzer(base_url: str, token: Callable[..., str], canaries: dict[str, Canary]) -> Iterator[Fuzzer]:
    """alice (acme), guarding carol's canary."""
    yield from _fuzzer(base_url, token, "alice", canaries["carol"])


def _fuzz_every_operation(
    schema: BaseSchema, operations: list[APIOperation], fuzzer: Fuzzer, subtests: pytest.Subtests, *, coverage: bool
) -> None:
    for operation in operations:
        with subtests.test(msg=operation.label):
            failures = fuzz_operation(
                schema, operation, fuzzer, coverage=coverage, max_examples=FUZZ_EXAMPLES, seed=FUZZ_SEED
            )
            assert not failures, "\n\n".join(failures)
    # The swaps are a function of the generated values; had none happened, the checks on them proved nothing.
    assert fuzzer.foreign_sent > 0, f"no request named {fuzzer.foreign.user}'s thread"
    assert fuzzer.reached, "no request on the caller's own thread got past the ownership check"
    fuzzer.probe()


def test_api_fuzz_as_carol_reveals_nothing_of_alice(
    api_schema: BaseSchema, operations: list[APIOperation], carol_fuzzer: Fuzzer, subtests: pytest.Subtests
) -> None:
    _fuzz_every_operation(api_schema, operations, carol_fuzzer, subtests, coverage=True)


def test_api_fuzz_as_alice_reveals_nothing_of_carol(
    api_schema: BaseSchema, operations: list[APIOperation], alice_fuzzer: Fuzzer, subtests: pytest.Subtests
) -> None:
    # The coverage cases test input handling, the same for any caller: carol's pass sent them all.
    _fuzz_every_operation(api_schema, operations, alice_fuzzer, subtests, coverage=False)


@pytest.mark.parametrize("user", sorted(CANARIES))
def test_api_fuzz_leaves_canary_threads_unchanged(
    base_url: str, token: Callable[..., str], canaries: dict[str, Canary], user: str
) -> None:
    canary = canaries[user]
    response = httpx.get(f"{base_url}/threads/{canary.thread_id}/state", headers=bearer(token(user)), timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["values"] == canary.values


def test_api_fuzz_checks_catch_a_user_reading_their_own_canary(
    base_url: str, token: Callable[..., str], api_schema: BaseSchema, canaries: dict[str, Canary]
) -> None:
    # The leak and refusal checks are not vacuous: alice "guarding" her own canary must trip both,
    # since her own thread, swapped into a path, answers 200 with its id and her document's text.
    own = canaries["alice"]
    fuzzer = Fuzzer(base_url=base_url, token=token("alice"), own_thread=own.thread_id, foreign=own)
    with fuzzer.session:
        failures = fuzz_operation(
            api_schema, api_schema["/threads/{thread_id}/state"]["GET"], fuzzer, coverage=True, max_examples=5, seed=1
        )
    assert fuzzer.foreign_sent > 0
    text = "\n".join(failures)
    assert "no_leak_of_other_users_data" in text and "other_users_thread_refused" in text, text
