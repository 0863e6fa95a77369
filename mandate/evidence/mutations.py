"""Named mutations: for each control, the smallest edit of its enforcing code that removes it.

A mutation replaces one snippet, which must occur exactly once in its file, by another. It is
applied to a copy of the tree, never to the working tree; the control's tests must then fail.
A mutation whose tests stay green is a finding: the control is not proven by them.

The snippets quote today's code. When the code changes under them, :func:`snippet_problem`
says which mutation no longer matches, and ``mandate controls check`` refuses to run until the
snippet is brought up to date.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mandate.evidence.errors import MutationError

__all__ = ["MUTATIONS", "Mutation", "apply_mutation", "mutation_named", "snippet_problem"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Mutation:
    """One textual edit that removes a control."""

    name: str
    """Stable name, as the controls table cites it."""
    removes: str
    """What the edited code no longer does, in one sentence."""
    path: str
    """The file edited, relative to the repository root."""
    original: str
    """The snippet replaced; it must occur exactly once in :attr:`path`."""
    replacement: str
    """What it is replaced by."""


MUTATIONS: tuple[Mutation, ...] = (
    Mutation(
        name="verifier-skips-claim-validation",
        removes="TokenVerifier.verify accepts a well-signed token without checking sub, exp, nbf, iat or aud.",
        path="mandate/auth/verifier.py",
        original="        _validate_claims(claims, audience=self._audience, now=now)\n",
        replacement="        pass  # mutation: the registered claims are not validated\n",
    ),
    Mutation(
        name="executor-passes-user-token-through",
        removes="The tool executor sends the user's own access token downstream instead of the exchanged one.",
        path="mandate/nodes/tool_executor.py",
        original="        result = await invoke(spec, args, delegated, f\"{ctx.thread_id}:{call['id']}\")\n",
        replacement=(
            "        result = await invoke(spec, args, delegated and type(delegated)(access_token=token,"
            " audience=delegated.audience, scopes=delegated.scopes, expires_at=delegated.expires_at),"
            " f\"{ctx.thread_id}:{call['id']}\")  # mutation: the user's token passes through\n"
        ),
    ),
    Mutation(
        name="retriever-skips-change-feed",
        removes="The retriever answers from its kept closures and document tokens without following OpenFGA's change log.",
        path="mandate/retrieval/retriever.py",
        original="asyncio.ensure_future(self._feed.sync(since=started))",
        replacement="asyncio.ensure_future(asyncio.sleep(0, FeedReport(changes=0, documents=0, fga_calls=0,"
        " sql_round_trips=0)))  # mutation: the change log is not followed",
    ),
    Mutation(
        name="exchange-as-service-account",
        removes="The broker gets the agent's own client-credentials token (a service account), not one for the user.",
        path="mandate/auth/exchange.py",
        original="grant_type=TOKEN_EXCHANGE_GRANT,",
        replacement='grant_type="client_credentials",  # mutation: a broad service account',
    ),
    Mutation(
        name="executor-runs-without-audit-record",
        removes="The tool runs although its write-ahead audit record could not be written.",
        path="mandate/nodes/tool_executor.py",
        original='        return outcome(call, "failed", exc.code)  # no durable record, no tool run\n',
        replacement='        started = ""  # mutation: run the tool without its durable record\n',
    ),
    Mutation(
        name="redaction-disabled",
        removes="Captured text reaches spans unredacted (tokens, e-mail addresses, IBANs, long numbers).",
        path="mandate/audit/redaction.py",
        original="    for pattern, replacement in _RULES:\n        text = pattern.sub(replacement, text)\n    return text\n",
        replacement="    return text  # mutation: nothing is redacted\n",
    ),
    Mutation(
        name="gate-allows-at-the-effect",
        removes="execution_refusal allows every call: the executor no longer re-checks the ledger at the effect.",
        path="mandate/gate/check.py",
        original="    gated = spec.approval is not ApprovalPolicy.NONE or spec.step_up is not None\n",
        replacement=(
            "    return None  # mutation: allow instead of check\n"
            "    gated = spec.approval is not ApprovalPolicy.NONE or spec.step_up is not None\n"
        ),
    ),
    Mutation(
        name="threads-drop-owner-filter",
        removes="A thread is read by id alone: neither its tenant nor its owner is checked.",
        path="mandate/runtime/queries.py",
        original=(
            "WHERE thread_id = %(thread_id)s AND tenant = %(tenant)s AND owner_issuer = %(issuer)s"
            " AND owner_subject = %(subject)s\n"
        ),
        replacement="WHERE thread_id = %(thread_id)s\n",
    ),
    Mutation(
        name="verifier-skips-record-hash",
        removes="The audit verifier no longer recomputes each record's hash, so an edited record passes.",
        path="mandate/audit/verify.py",
        original='        if record_hash(row) != bytes(row["hash"]):\n',
        replacement="        if False:  # mutation: record hashes are not recomputed\n",
    ),
    Mutation(
        name="audit-api-skips-auditor-check",
        removes="Anyone of the tenant reads its audit trail: the OpenFGA auditor check is skipped.",
        path="mandate/api/routes/audit.py",
        original="    if not await services.authz.check(question, strong=True):\n",
        replacement="    if False:  # mutation: allow instead of check\n",
    ),
    Mutation(
        name="requests-skip-revocation-check",
        removes="A cut-off user's tokens are accepted: requests skip the revocation list.",
        path="mandate/api/deps.py",
        original="    await services.sessions.check_not_revoked(principal, issued_at=issued_at(token))\n",
        replacement="",
    ),
    Mutation(
        name="pseudonym-is-the-subject",
        removes="Audit records and spans name the person (their sub) instead of a keyed pseudonym.",
        path="mandate/audit/pseudonym.py",
        original='        return "psn_" + mac.hexdigest()[:32]\n',
        replacement="        return subject  # mutation: no pseudonym\n",
    ),
    Mutation(
        name="trace-content-on-by-default",
        removes="Spans capture user messages and tool arguments unless told not to (opt-out instead of opt-in).",
        path="mandate/runtime/settings.py",
        original="    trace_content: bool = False\n",
        replacement="    trace_content: bool = True  # mutation: content capture by default\n",
    ),
    Mutation(
        name="dev-mode-by-default",
        removes="Settings default to dev mode, with the dev issuer and placeholder secrets allowed.",
        path="mandate/runtime/settings.py",
        original='    env: Literal["dev", "test", "prod"] = "prod"\n',
        replacement='    env: Literal["dev", "test", "prod"] = "dev"  # mutation: insecure by default\n',
    ),
    Mutation(
        name="record-omits-token-vault",
        removes="The record of processing no longer names the token vault, a store of personal data.",
        path="docs/record-of-processing.md",
        original=(
            "| requester token while others decide, or while a run is queued | `mandate.token_vault` (AES-256-GCM) |"
            " the user's access token, encrypted | its expiry (minutes), the end of the queued run, or erasure |\n"
        ),
        replacement="",
    ),
    Mutation(
        name="vault-stores-token-in-clear",
        removes="The token vault stores the user's access token in clear instead of sealing it with AES-256-GCM.",
        path="mandate/auth/vault.py",
        original="        sealed = self._aead.encrypt(nonce, token.encode(), _aad(issuer, subject, thread_id))\n",
        replacement="        sealed = token.encode()  # mutation: stored in clear\n",
    ),
    Mutation(
        name="erasure-keeps-threads",
        removes="Erasure leaves the person's threads in place.",
        path="mandate/audit/retention.py",
        original='            await conn.execute(queries.DELETE_THREADS, {"thread_ids": thread_ids})\n',
        replacement="            pass  # mutation: the threads are kept\n",
    ),
    Mutation(
        name="authz-allows-when-openfga-fails",
        removes="When OpenFGA cannot be reached, every question it was asked is answered 'allowed'.",
        path="mandate/auth/authz.py",
        original=(
            '                span.set_attribute("mandate.authz.error", type(exc).__name__)\n'
            '                raise AuthorizationUnavailableError("The authorization service is unavailable.") from exc\n'
        ),
        replacement="                return [True] * len(questions)  # mutation: allow when OpenFGA fails\n",
    ),
    Mutation(
        name="pool-keeps-dead-connections",
        removes="The pool hands out connections without checking them, so each one a Postgres restart broke fails a request.",
        path="mandate/_db.py",
        original="        check=check_if_the_server_spoke,\n",
        replacement="",
    ),
    Mutation(
        name="verifier-fetch-without-timeout",
        removes="A request that needs the issuer's keys waits for a hung issuer without bound.",
        path="mandate/auth/verifier.py",
        original="            async with asyncio.timeout(self._fetch_timeout):\n",
        replacement="            async with asyncio.timeout(None):  # mutation: no bound on the fetch\n",
    ),
    Mutation(
        name="audit-write-failure-swallowed",
        removes="A failed audit write is ignored: the caller gets a record id for a record that was never written.",
        path="mandate/audit/log.py",
        original='            raise AuditUnavailableError("The audit log is unavailable.") from exc\n        if traced:\n',
        replacement="            return str(uuid.uuid4())  # mutation: the failure is swallowed\n        if traced:\n",
    ),
    Mutation(
        name="decision-audited-outside-its-transaction",
        removes="A consent decision commits before its audit record is written, so a failed audit write leaves a decision no record explains.",
        path="mandate/runtime/ledger.py",
        original="            async with self._pool.connection() as conn, conn.transaction():\n                if await (await conn.execute(sql, params)).fetchone() is None:\n",
        replacement="            async with self._pool.connection() as conn:  # mutation: autocommit, no shared transaction\n                if await (await conn.execute(sql, params)).fetchone() is None:\n",
    ),
    Mutation(
        name="downstream-retry-with-new-key",
        removes="Each retry of a downstream call carries a new idempotency key, so a lost answer becomes a second effect.",
        path="mandate/tools/downstream.py",
        original="                response = await _attempt(http, spec, args=args, headers=headers)\n",
        replacement=(
            "                headers = {**headers, 'Idempotency-Key': f'{idempotency_key}:{attempt.retry_state.attempt_number}'}"
            "  # mutation\n"
            "                response = await _attempt(http, spec, args=args, headers=headers)\n"
        ),
    ),
)
"""Every mutation the controls table may cite."""


def mutation_named(name: str) -> Mutation | None:
    """The mutation called ``name``, or ``None``."""
    return next((mutation for mutation in MUTATIONS if mutation.name == name), None)


def snippet_problem(mutation: Mutation, root: Path) -> str | None:
    """Why ``mutation`` cannot be applied under ``root``, or ``None`` if its snippet occurs exactly once."""
    target = root / mutation.path
    try:
        text = target.read_text(encoding="utf-8")
    except OSError as exc:
        return f"mutation {mutation.name}: cannot read {mutation.path} ({exc.strerror or exc})"
    count = text.count(mutation.original)
    if count == 1:
        return None
    first = mutation.original.strip().splitlines()[0] if mutation.original.strip() else mutation.original
    where = "no longer occurs" if count == 0 else f"occurs {count} times"
    return (
        f"mutation {mutation.name}: its snippet {where} in {mutation.path} (it must occur exactly once): "
        f"{first[:100]!r}. The enforcing code changed; update the snippet in mandate/evidence/mutations.py."
    )


def apply_mutation(mutation: Mutation, root: Path) -> None:
    """Apply ``mutation`` to the tree at ``root`` (a copy: never the working tree).

    Raises:
        MutationError: The snippet does not occur exactly once.
    """
    problem = snippet_problem(mutation, root)
    if problem is not None:
        raise MutationError(problem)
    target = root / mutation.path
    target.write_text(target.read_text(encoding="utf-8").replace(mutation.original, mutation.replacement), encoding="utf-8")
