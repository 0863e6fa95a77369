"""Property-based API fuzzing: canaries to guard, the checks every answer must pass, a liveness probe.

A :class:`Fuzzer` sends schemathesis-generated requests as one user over real HTTP and holds every
answer to the rules of ``tests/e2e/test_api_fuzz.py``: no 5xx, errors are ``{"code", "message"}``
JSON, streams end, and nothing of another user's :class:`Canary` (thread id, document phrases) comes
back, nor a token. Part of the time it swaps a generated ``thread_id`` for the other user's thread (which must be
refused) or for the caller's own scratch thread (so requests get past the ownership check into
deeper code). Failures are collected, not raised, so one run lists every distinct one.

Why not ``schemathesis.pytest.from_fixture``: the schema is only known once the stack runs (a
fixture), and that lazy loader sets ``request.node._nodeid``, which pytest 9.2 no longer has. So
:func:`fuzz_operation` drives the two phases itself, against schemathesis 4.15.2 (the newest that
installs beside ``langgraph-cli[inmem]``: later ones need ``jsonschema-rs>=0.60``, langgraph-api
``<0.45``). That version has no public ``schema.iter_coverage_cases``; the coverage phase (boundary
values, missing and wrong-typed fields, unexpected methods) comes from
``schemathesis.generation.hypothesis.builder.generate_coverage_cases``, the generator its own pytest
plugin and engine feed into ``hypothesis.example``. Random valid and invalid requests come from the
public ``operation.as_strategy`` under ``hypothesis.given``. Its ``Response`` has no
``stream_cut_short`` and its ``Case`` no ``derive``: :meth:`Fuzzer.send` reads each answer itself
within a time and event budget, and :func:`_with_thread` copies a case to swap a thread in.
"""

from __future__ import annotations

import copy
import json
import re
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import httpx
import hypothesis
import requests
import schemathesis
from hypothesis import strategies as st
from hypothesis.internal.conjecture import utils as conjecture_utils
from schemathesis import APIOperation, BaseSchema, Case, CheckContext, CheckFunction, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.core import NotSet

# Not re-exported by ``schemathesis.errors`` in 4.15.2; this is where ``Case.validate_response`` raises it from.
from schemathesis.core.failures import FailureGroup

# 4.15.2's coverage phase: public as ``schema.iter_coverage_cases`` only in later versions.
from schemathesis.generation.hypothesis import examples as schemathesis_examples
from schemathesis.generation.hypothesis.builder import generate_coverage_cases
from schemathesis.openapi.generation.filters import is_valid_header

from tests.utils.threads import ask, bearer, last_answer, new_thread

__all__ = [
    "CLIENT_TIMEOUT",
    "Canary",
    "Failure",
    "Fuzzer",
    "fuzz_config",
    "fuzz_operation",
    "plant_canary",
]

CLIENT_TIMEOUT = 30.0
"""Seconds any one fuzzed request may take (a stream: in total) before it counts as a stall."""
PROBE_EVERY = 25
"""Requests between two liveness probes (``GET /ok``)."""
PROBE_TIMEOUT = 5.0
"""Seconds the liveness probe may take."""
MAX_STREAM_EVENTS = 500
"""Events read from one stream; a run's stream ends long before (a few events per node)."""
SSE_EVENT_END = re.compile(rb"\r?\n\r?\n")
"""The blank line that ends one server-sent event."""
ERROR_CODE = re.compile(r"^[a-z][a-z0-9_]*$")
"""A stable, machine-readable error code: snake_case, never a sentence or a class name."""
JWT = re.compile(r"eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.")
"""A signed or unsigned JWT: a header and claims, base64url JSON objects."""
MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]


def fuzz_config() -> schemathesis.Config:
    """Schemathesis settings for a run over real HTTP against a live, stateful service.

    Ids seen in earlier answers are not reused as inputs: a user's fuzzing must not delete or
    change their own canary thread, and the run stays a function of the seed. (In 4.15.2 only the
    fuzzing phase has ``extra-data-sources``; its coverage phase draws on the schema's own examples
    only. Neither is handed live answers here anyway: that takes the engine's data source, which
    :func:`fuzz_operation` does not use.) The stream budget (``max-stream-events`` in later versions)
    is :data:`MAX_STREAM_EVENTS`, applied by :meth:`Fuzzer.send`.
    """
    return schemathesis.Config.from_dict(
        {
            "generation": {"mode": "all", "database": "none"},
            "phases": {"fuzzing": {"extra-data-sources": {"responses": False}}},
            "request-timeout": CLIENT_TIMEOUT,
        }
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class Canary:
    """What one user owns and no one else may ever see."""

    user: str
    """The owner (a demo user)."""
    thread_id: str
    """The owner's thread, which holds a question and an answer from a private document."""
    phrases: tuple[str, ...]
    """Distinctive phrases of that answer (and its document) that appear nowhere else."""
    values: dict[str, Any]
    """The thread's state when planted, to prove afterwards that no one else changed it."""


def plant_canary(client: httpx.Client, token: str, *, user: str, question: str, candidates: tuple[str, ...]) -> Canary:
    """Have ``user`` ask ``question`` on a new thread; the ``candidates`` found in the answer become the canary.

    Raises:
        AssertionError: The run failed or the answer holds none of ``candidates``.
    """
    thread_id = new_thread(client, token)
    response = ask(client, token, thread_id, question)
    assert response.status_code == 200, response.text
    answer = last_answer(response.json())
    phrases = tuple(phrase for phrase in candidates if phrase in answer)
    assert phrases, f"{user}'s answer holds none of {candidates}: {answer!r}"
    state = client.get(f"/threads/{thread_id}/state", headers=bearer(token))
    assert state.status_code == 200, state.text
    return Canary(user=user, thread_id=thread_id, phrases=phrases, values=state.json()["values"])


# Checks, in schemathesis's signature ``(ctx, response, case)``; a failed check raises AssertionError.


def error_is_json_with_code(ctx: CheckContext, response: Response, case: Case) -> None:
    """An error answer is ``{"code": <snake_case>, "message": <str>}`` JSON, never a trace."""
    if response.status_code < 400:
        return
    content_type = ", ".join(response.headers.get("content-type", []))
    assert content_type.startswith("application/json"), f"error answer is {content_type or 'untyped'}, not JSON"
    try:
        body = json.loads(response.content or b"")
    except ValueError:
        raise AssertionError("error answer is not valid JSON") from None
    assert isinstance(body, dict), f"error answer is a JSON {type(body).__name__}, not an object"
    code = body.get("code")
    assert isinstance(code, str) and ERROR_CODE.match(code), f"error answer has no stable code: {body}"
    assert isinstance(body.get("message"), str), f"error answer has no message: {body}"
    assert "Traceback" not in response.text, "error answer holds a stack trace"


def streams_end_cleanly(ctx: CheckContext, response: Response, case: Case) -> None:
    """A server-sent event stream ends by itself, and carries no ``internal_error`` (a 500 in disguise)."""
    content_type = ", ".join(response.headers.get("content-type", []))
    if not content_type.startswith("text/event-stream"):
        return
    assert not getattr(response, "stream_cut_short", False), (
        f"the stream did not end within {CLIENT_TIMEOUT:.0f} s or {MAX_STREAM_EVENTS} events (stall)"
    )
    for event, data in _events(response.text):
        if event != "error":
            continue
        try:
            payload = json.loads(data)
        except ValueError:
            raise AssertionError(f"stream error event is not JSON: {data!r}") from None
        code = payload.get("error") if isinstance(payload, dict) else None
        assert isinstance(code, str) and ERROR_CODE.match(code), f"stream error event has no stable code: {data!r}"
        assert code != "internal_error", f"the run failed inside the stream: {data!r}"


def _events(text: str) -> Iterator[tuple[str, str]]:
    for block in re.split(r"\r?\n\r?\n", text):
        name, data = "message", []
        for line in block.splitlines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        if data:
            yield name, "\n".join(data)


def no_canary_leak(canary: Canary) -> CheckFunction:
    """A check: no answer holds ``canary``'s phrases, nor its thread id (bar a 4xx echoing what was sent)."""

    def no_leak_of_other_users_data(ctx: CheckContext, response: Response, case: Case) -> None:
        text = _response_text(response)
        for phrase in canary.phrases:
            assert phrase not in text, f"the answer holds {canary.user}'s document text {phrase!r}"
        if canary.thread_id in text:
            echoed = canary.thread_id in _request_text(case) and 400 <= response.status_code < 500
            assert echoed, f"the answer holds {canary.user}'s thread id {canary.thread_id}"

    return no_leak_of_other_users_data


def no_token_in_answer(token: str) -> CheckFunction:
    """A check: no answer holds the caller's access token, or any other JWT."""

    def no_token_in_the_answer(ctx: CheckContext, response: Response, case: Case) -> None:
        text = _response_text(response)
        assert token not in text, "the answer holds the caller's access token"
        assert not JWT.search(text), "the answer holds a JWT"

    return no_token_in_the_answer


def foreign_thread_refused(canary: Canary) -> CheckFunction:
    """A check for requests that name ``canary``'s thread as the caller's: they are refused (4xx)."""

    def other_users_thread_refused(ctx: CheckContext, response: Response, case: Case) -> None:
        assert 400 <= response.status_code < 500, (
            f"a request naming {canary.user}'s thread was answered {response.status_code}, not refused"
        )

    return other_users_thread_refused


def _request_text(case: Case) -> str:
    body = case.body.decode("utf-8", "replace") if isinstance(case.body, bytes) else case.body
    body = body if isinstance(body, (dict, list, str, int, float, bool)) else None
    return f"{case.formatted_path} {json.dumps(case.query, default=str)} {json.dumps(body, default=str)}"


def _response_text(response: Response) -> str:
    headers = " ".join(f"{k}: {', '.join(v)}" for k, v in response.headers.items())
    return headers + "\n" + (response.content or b"").decode("utf-8", "replace")


@dataclass(frozen=True, kw_only=True, slots=True)
class Failure:
    """One distinct failure: the first request that showed it, and how often it recurred."""

    key: str
    """Operation, failed checks and status: what makes two failures the same."""
    report: str
    """Schemathesis's report of the first occurrence, with a curl command to reproduce it."""


@dataclass(kw_only=True)
class Fuzzer:
    """Sends generated requests as one user and checks every answer."""

    base_url: str
    token: str = field(repr=False)
    """The user's access token (out of ``repr``: a failing test prints its fixtures)."""
    own_thread: str
    """A thread of this user: swapped in part of the time so requests reach past the ownership check."""
    foreign: Canary
    """Another user's canary: never leaked, and its thread swapped in part of the time (must be refused)."""
    session: requests.Session = field(default_factory=lambda: _bare_session(), repr=False)
    sent: int = 0
    """Requests sent so far (the liveness probe runs every :data:`PROBE_EVERY`)."""
    foreign_sent: int = 0
    """Requests that named the other user's thread."""
    own_sent: int = 0
    """Requests that named this user's scratch thread."""
    reached: set[str] = field(default_factory=set, repr=False)
    """Operations that answered 2xx to a request on the caller's own thread: past the ownership check."""
    failures: dict[str, Failure] = field(default_factory=dict, repr=False)
    """Distinct failures, first occurrence kept."""
    counts: dict[str, int] = field(default_factory=dict, repr=False)
    """Occurrences per failure key."""

    def check(self, case: Case) -> None:
        """Send ``case`` (possibly with a thread swapped in), check its answer and record any failure.

        Raises:
            AssertionError: The liveness probe failed: the service stopped answering.
        """
        case, swapped = self._swap_thread(case)
        try:
            response = self.send(case)
        except requests.RequestException as exc:
            # A read timeout while the body comes surfaces as a ConnectionError wrapping urllib3's.
            if isinstance(exc, requests.Timeout) or "timed out" in str(exc):
                report = f"no answer within {CLIENT_TIMEOUT:.0f} s:\n{_describe(case)}"
                self._record(f"{case.operation.label} stall", report)
            else:
                self._record(f"{case.operation.label} {type(exc).__name__}", f"{exc}\n{_describe(case)}")
            return
        finally:
            self.sent += 1
            if self.sent % PROBE_EVERY == 0:
                self.probe()
        checks: list[CheckFunction] = [not_a_server_error, error_is_json_with_code, streams_end_cleanly]
        checks += [no_canary_leak(self.foreign), no_token_in_answer(self.token)]
        if swapped == "foreign":
            self.foreign_sent += 1
            # Naming another's thread in the path, or as the id of a thread to create, must fail. A query
            # filter naming it (``/audit?thread_id=``) may succeed, and then match nothing: the leak check.
            if "thread_id" in case.path_parameters or (isinstance(case.body, dict) and "thread_id" in case.body):
                checks.append(foreign_thread_refused(self.foreign))
        elif swapped == "own":
            self.own_sent += 1
            if response.status_code < 300:
                self.reached.add(case.operation.label)
        try:
            case.validate_response(response, checks=checks, headers=bearer(self.token))
        except FailureGroup as group:
            names = ",".join(sorted({failure.title for failure in group.exceptions}))
            key = f"{case.operation.label} [{response.status_code}] {names}"
            self._record(key, f"{group.message}\n{_describe(case)}")
        self._restore_own_thread(case, response.status_code)

    def send(self, case: Case) -> CappedResponse:
        """Send ``case`` as this user, the way ``Case.call`` does, and read the answer within a budget.

        A server-sent event stream is read until it ends, :data:`CLIENT_TIMEOUT` seconds have passed
        in total, or :data:`MAX_STREAM_EVENTS` events have come; in the last two cases, or if it stops
        sending for :data:`CLIENT_TIMEOUT` seconds, the answer is marked ``stream_cut_short``. (4.15.2's
        ``Case.call`` reads a body whole, so a stream that never ends would hold the test.)

        Raises:
            requests.Timeout: No answer (status and headers) within :data:`CLIENT_TIMEOUT`.
            requests.ConnectionError: Any other answer's body stalled (:data:`CLIENT_TIMEOUT`
                seconds without a byte) or the connection failed.
        """
        kwargs = case.as_transport_kwargs(base_url=self.base_url, headers=bearer(self.token))
        start = time.monotonic()
        try:
            answer = self.session.request(**kwargs, stream=True, timeout=CLIENT_TIMEOUT)
        except requests.ConnectionError as exc:
            # After an unexpected error the server closes the keep-alive connection once its 500 is
            # sent (uvicorn, as Starlette re-raises it); the next request on that connection may find
            # it reset before any answer. That 500 is recorded for the request that caused it: send
            # this one again, once, on a new connection. A second failure is this request's own.
            if isinstance(exc, requests.Timeout) or "Connection aborted" not in str(exc):
                raise
            start = time.monotonic()
            answer = self.session.request(**kwargs, stream=True, timeout=CLIENT_TIMEOUT)
        with answer:
            streaming = answer.headers.get("content-type", "").startswith("text/event-stream")
            body, cut_short = bytearray(), False
            try:
                for chunk in answer.iter_content(chunk_size=None):
                    body += chunk
                    over_time = time.monotonic() - start > CLIENT_TIMEOUT
                    if streaming and (over_time or len(SSE_EVENT_END.findall(body)) >= MAX_STREAM_EVENTS):
                        cut_short = True
                        break
            except requests.ConnectionError:
                if not streaming:
                    raise
                cut_short = True  # no byte for CLIENT_TIMEOUT seconds: a stalled stream
            raw = answer.raw
            return CappedResponse(
                status_code=answer.status_code,
                headers={name: raw.headers.getlist(name) for name in raw.headers.keys()},
                content=bytes(body),
                request=answer.request,
                elapsed=time.monotonic() - start,
                verify=True,
                message=answer.reason,
                http_version="1.0" if raw.version == 10 else "1.1",
                encoding=answer.encoding,
                stream_cut_short=cut_short,
            )

    def probe(self) -> None:
        """``GET /ok`` answers within :data:`PROBE_TIMEOUT`: the service did not stall.

        Raises:
            AssertionError: It did not answer ``{"ok": true}``.
            httpx.TimeoutException: It did not answer in time.
        """
        response = httpx.get(f"{self.base_url}/ok", timeout=PROBE_TIMEOUT)
        assert response.status_code == 200 and response.json() == {"ok": True}, response.text

    def take_failures(self) -> list[str]:
        """The distinct failures recorded since the last call, as reports; clears them."""
        reports = [f"{f.key} (x{self.counts[f.key]})\n{f.report}" for f in self.failures.values()]
        self.failures.clear()
        self.counts.clear()
        return reports

    def _record(self, key: str, report: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1
        self.failures.setdefault(key, Failure(key=key, report=report))

    def _swap_thread(self, case: Case) -> tuple[Case, str | None]:
        """Replace a generated ``thread_id`` (path, query or top-level body field): a third of the time
        with the other user's thread (``"foreign"``), a third with this user's own (``"own"``). The choice
        is a function of the generated request, so a seed replays the same requests.
        """
        places = [c for c in (case.path_parameters, case.query, case.body) if isinstance(c, dict) and "thread_id" in c]
        if not places:
            return case, None
        generated = json.dumps([c["thread_id"] for c in places], default=str)
        choice = zlib.crc32(f"{case.method} {case.path} {generated}".encode()) % 3
        if choice == 2:
            return case, None
        kind, value = ("foreign", self.foreign.thread_id) if choice == 0 else ("own", self.own_thread)
        return _with_thread(case, value), kind

    def _restore_own_thread(self, case: Case, status: int) -> None:
        """Recreate the scratch thread (same id) after a fuzzed ``DELETE`` removed it."""
        deleted = case.method.upper() == "DELETE" and case.path_parameters.get("thread_id") == self.own_thread
        if deleted and status < 300:
            response = httpx.post(
                f"{self.base_url}/threads", json={"thread_id": self.own_thread}, headers=bearer(self.token), timeout=10
            )
            assert response.status_code == 200, response.text


class CappedResponse(Response):
    """A schemathesis ``Response`` read within a budget: says whether a stream was cut short."""

    __slots__ = ("stream_cut_short",)

    def __init__(self, *args: Any, stream_cut_short: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stream_cut_short = stream_cut_short
        """The stream had not ended within the time or event budget (a stall)."""


def _bare_session() -> requests.Session:
    """A session without requests' default headers, as schemathesis's transport sends: only the case's."""
    session = requests.Session()
    session.headers.clear()
    return session


def _with_thread(case: Case, thread_id: str) -> Case:
    """A copy of ``case`` (4.15.2 has no ``Case.derive``) naming ``thread_id`` wherever it names a thread.

    The copy keeps the case's metadata (its phase and scenario: a coverage case that omits a header
    still omits it), which schemathesis then re-validates, as for any change to a generated case.
    """
    swapped = Case(
        case.operation,
        case.method,
        case.path,
        path_parameters=copy.deepcopy(case.path_parameters),
        headers=case.headers.copy(),
        cookies=copy.deepcopy(case.cookies),
        query=copy.deepcopy(case.query),
        body=case.body if isinstance(case.body, NotSet) else copy.deepcopy(case.body),
        media_type=case.media_type,
        multipart_content_types=case.multipart_content_types,
        meta=copy.deepcopy(case.meta),
    )
    for container in (swapped.path_parameters, swapped.query, swapped.body):
        if isinstance(container, dict) and "thread_id" in container:
            container["thread_id"] = thread_id
    return swapped


def _describe(case: Case) -> str:
    body = case.body if isinstance(case.body, (dict, list, str, bytes, int, float, bool, type(None))) else "<none>"
    return f"request: {case.method.upper()} {case.formatted_path} query={case.query!r} body={body!r}"


def coverage_cases(schema: BaseSchema, operation: APIOperation, *, seed: int) -> Iterator[Case]:
    """Schemathesis's coverage phase for ``operation``: each boundary, missing or wrong-typed value, and
    each method the path does not declare, once.

    4.15.2 has no ``schema.iter_coverage_cases``; this is the generator behind it, the one 4.15.2's
    pytest plugin and engine turn into ``hypothesis.example`` cases, with the phase's settings from
    the schema's config. It ignores, itself, the warning for a schema pattern that is valid ECMA 262
    but not Python syntax. The cases are listed before any is sent, so that filter is not in force
    while requests run.

    Some values of the phase (an object's unexpected properties, say) are drawn at random; 4.15.2
    seeds those draws only from ``SCHEMATHESIS_BENCHMARK_SEED``, read once at import, so the module's
    copy is set to ``seed`` while the cases are listed: the same seed, the same cases.

    Dropped: cases with a header no HTTP client can send (not Latin-1, or a control character), by
    the test schemathesis applies to the headers of its random cases. 4.15.2's coverage phase omits
    it for an object's unexpected properties in headers (an ``idempotency-key`` of astral-plane
    characters: three cases of ~1,550); ``http.client`` refuses to send them (``UnicodeEncodeError``).
    """
    phase = schema.config.phases_for(operation=operation).coverage
    with mock.patch.object(schemathesis_examples, "SCHEMATHESIS_BENCHMARK_SEED", seed):
        cases = list(
            generate_coverage_cases(
                operation=operation,
                generation_modes=MODES,
                auth_storage=None,
                as_strategy_kwargs={},
                generate_duplicate_query_parameters=phase.generate_duplicate_query_parameters,
                unexpected_methods=phase.unexpected_methods,
                generation_config=schema.config.generation_for(operation=operation, phase="coverage"),
            )
        )
    yield from (case for case in cases if is_valid_header(dict(case.headers)))


def fuzz_operation(
    schema: BaseSchema, operation: APIOperation, fuzzer: Fuzzer, *, coverage: bool, max_examples: int, seed: int
) -> list[str]:
    """Send ``operation``'s coverage cases (if ``coverage``) and ``max_examples`` random ones; returns
    the distinct failures.

    Random requests are valid or invalid (either mode), from a seed derived from ``seed`` and the
    operation, so a run is replayed exactly. There is no shrinking: checks record failures instead
    of raising, and the coverage phase already sends the simplest request of each kind.
    """
    seed ^= zlib.crc32(operation.label.encode())
    if coverage:
        for case in coverage_cases(schema, operation, seed=seed):
            fuzzer.check(case)

    @hypothesis.seed(seed)
    @hypothesis.settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=False,
        phases=[hypothesis.Phase.generate],
        suppress_health_check=list(hypothesis.HealthCheck),
        verbosity=hypothesis.Verbosity.quiet,
    )
    @hypothesis.given(case=st.one_of([operation.as_strategy(generation_mode=mode) for mode in MODES]))
    def random_requests(case: Case) -> None:
        fuzzer.check(case)

    random_requests()
    return fuzzer.take_failures()
