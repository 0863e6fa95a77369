"""The auditor timeline: steps in words, people resolved only when genuine, chain status per record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mandate._db import Pool
from mandate.audit import AuditLog, CheckpointSigner, Pseudonymizer, build_timeline
from tests.audit.helpers import CHECKPOINT_EVERY, event, tamper

THREAD = "5d0c4a52-2222-4000-8000-00000000bbbb"
ISSUER = "https://issuer.example"
PSEUDONYMIZE = Pseudonymizer(b"timeline-test-key")
ALICE = PSEUDONYMIZE(ISSUER, "alice")
BOB = PSEUDONYMIZE(ISSUER, "bob")


async def _payment_story(log: AuditLog) -> None:
    """The payment demo's records: step-up, bob's approval, the gate, the payment."""
    log.remember_subject(pseudonym=ALICE, issuer=ISSUER, subject="alice")
    log.remember_subject(pseudonym=BOB, issuer=ISSUER, subject="bob")
    common = {"thread_id": THREAD, "tool": "send_payment", "tool_call_id": "c1", "agent": "agent:executor"}
    about = {"args_hash": "ab" * 16, "requester": ALICE}
    for name, actor, decision, detail in (
        ("step_up.required", ALICE, "asked", {"acr": "urn:mandate:acr:mfa"}),
        ("step_up.satisfied", ALICE, "ok", {"acr": "urn:mandate:acr:mfa"}),
        ("consent.requested", ALICE, "asked", {"policy": "approver"}),
        ("consent.decided", BOB, "approve", {"policy": "approver", "comment_given": True}),
        ("tool.started", BOB, "allowed", {"audience": "https://pay.example", "scopes": ["payments:write"],
                                          "decided_by": [BOB], "attempt": 1}),
        ("tool.succeeded", BOB, "ok", {"id": "pay_1", "status": "done"}),
    ):
        await log.record(event(event=name, actor=actor, decision=decision, detail={**about, **detail}, **common))


async def test_timeline_of_a_thread_names_each_gate_and_the_people_behind_pseudonyms(
    pool: Pool, log: AuditLog, signer: CheckpointSigner
) -> None:
    await _payment_story(log)
    await log.record(event(thread_id="another-thread"))
    timeline = await build_timeline(
        pool, tenant="acme", keys=[signer.public_key], pseudonymize=PSEUDONYMIZE, thread_id=THREAD
    )
    assert [e.step for e in timeline.entries] == [
        "Step-up asked", "Step-up satisfied", "Approval asked", "Approval decided: approved",
        "Gate passed: grant and decision re-checked, tool started", "Tool succeeded",
    ]
    assert [e.gate for e in timeline.entries] == [True, True, True, True, True, False]
    assert timeline.requester is not None and timeline.requester.subject == "alice"
    decided, started, succeeded = timeline.entries[3:]
    assert (decided.actor.subject, decided.actor.issuer) == ("bob", ISSUER)
    assert [p.subject for p in started.deciders] == ["bob"]
    assert ("Delegated token", "audience https://pay.example, scope payments:write") in started.facts
    assert ("Outcome", "done pay_1") in succeeded.facts
    assert {e.chain for e in timeline.entries} == {"chained"}  # 7 records, checkpoint every 10
    assert timeline.report is not None and timeline.report.ok


async def test_timeline_stays_in_its_tenant(pool: Pool, log: AuditLog, signer: CheckpointSigner) -> None:
    await _payment_story(log)
    timeline = await build_timeline(
        pool, tenant="globex", keys=[signer.public_key], pseudonymize=PSEUDONYMIZE, thread_id=THREAD
    )
    assert timeline.entries == () and timeline.report is None


async def test_timeline_leaves_a_forged_directory_entry_unresolved(
    pool: Pool, log: AuditLog, signer: CheckpointSigner
) -> None:
    await _payment_story(log)
    async with pool.connection() as conn:  # someone points bob's pseudonym at carol
        await conn.execute("UPDATE mandate.audit_subjects SET subject = 'carol' WHERE pseudonym = %s", (BOB,))
    timeline = await build_timeline(
        pool, tenant="acme", keys=[signer.public_key], pseudonymize=PSEUDONYMIZE, thread_id=THREAD
    )
    decided = timeline.entries[3]
    assert decided.actor.pseudonym == BOB and not decided.actor.resolved
    assert timeline.entries[0].actor.subject == "alice"


async def test_timeline_marks_records_after_a_break_in_the_chain_unverified(
    pool: Pool, log: AuditLog, signer: CheckpointSigner
) -> None:
    for n in range(CHECKPOINT_EVERY):  # sealed by the checkpoint at 10
        await log.record(event(n=n, thread_id=THREAD))
    await _payment_story(log)  # 11..16, on the chain alone
    await tamper(pool, ("UPDATE mandate.audit_records SET decision = 'reject' WHERE tenant = 'acme' AND seq = 14", {}))
    timeline = await build_timeline(
        pool, tenant="acme", keys=[signer.public_key], pseudonymize=PSEUDONYMIZE, thread_id=THREAD
    )
    chain = {e.record.seq: e.chain for e in timeline.entries}
    assert chain == {**dict.fromkeys(range(1, 11), "sealed"), 11: "chained", 12: "chained", 13: "chained",
                     14: "unverified", 15: "unverified", 16: "unverified"}
    assert timeline.report is not None and timeline.report.problem is not None
    assert (timeline.report.problem.kind, timeline.report.problem.seq) == ("altered", 14)


async def test_timeline_of_a_time_range_is_oldest_first_and_bounded(
    pool: Pool, log: AuditLog, signer: CheckpointSigner
) -> None:
    await _payment_story(log)
    now = datetime.now(UTC)
    timeline = await build_timeline(
        pool, tenant="acme", keys=[signer.public_key], pseudonymize=PSEUDONYMIZE,
        since=now - timedelta(hours=1), until=now + timedelta(minutes=1),
    )
    assert [e.record.seq for e in timeline.entries] == [1, 2, 3, 4, 5, 6] and not timeline.truncated
    empty = await build_timeline(
        pool, tenant="acme", keys=[signer.public_key], pseudonymize=PSEUDONYMIZE, until=now - timedelta(hours=1)
    )
    assert empty.entries == ()
