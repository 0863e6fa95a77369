"""What the virtual users do: ask questions, open tickets with consent, make payments with approval.

Each scenario is one user's piece of work over HTTP, as a client does it. It times every request
under its kind (``question``, ``ticket.ask`` …), counts an answer it did not expect as an error of
that kind, and checks what must never happen under load: an answer holding text of a document its
user may not read, another tenant's thread readable, a replayed approval that runs again.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = ["KINDS", "PAYER", "PERSONAS", "SCENARIOS", "Client", "Persona", "Tally"]

OTP = "000000"
"""The dev issuer's second factor."""

ACME_PHRASES = ("net 45 days", "Frankfurt am Main", "99.9 percent", "two times the fees")
"""Text of ACME's master services agreement (finance and legal of acme only)."""
GLOBEX_PHRASES = ("net 30 days", "Springfield plant", "Hooli Industries")
"""Text of Globex's contract terms (globex only)."""

KINDS = (
    "login", "thread", "question", "ticket.ask", "ticket.approve", "payment.ask", "payment.step_up",
    "payment.approve", "replay", "cross_tenant_read",
)
"""Request kinds, each with its own latencies and errors."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Persona:
    """A demo user, with what they may and may not read."""

    user: str
    tenant: str
    question: str
    forbidden: tuple[str, ...]
    """Phrases that must never reach this user's answers."""
    expected: tuple[str, ...] = ()
    """Phrases an answer to their question should hold (recall; counted, not required)."""
    pays: bool = False
    """Whether they may request payments (approved by bob)."""


PERSONAS = (
    Persona(user="alice", tenant="acme", question="Summarize the latest contract terms for ACME.",
            forbidden=GLOBEX_PHRASES, expected=("net 45 days",), pays=True),
    Persona(user="carol", tenant="globex", question="Summarize the contract terms for Globex.",
            forbidden=ACME_PHRASES, expected=("net 30 days",)),
    Persona(user="dave", tenant="acme", question="Summarize the latest contract terms for ACME.",
            forbidden=ACME_PHRASES + GLOBEX_PHRASES),
)
"""Two tenants: acme (alice may read the agreement, dave may not) and globex (carol)."""
PAYER = PERSONAS[0]
"""Who requests payments, whichever virtual user runs the scenario: acme's finance (bob approves)."""


@dataclass
class Tally:
    """Everything the virtual users saw, shared by all of them (one event loop: no locks needed)."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    error_samples: list[str] = field(default_factory=list)
    leaks: list[str] = field(default_factory=list)
    """What leaked: never anything."""
    replays_run: list[str] = field(default_factory=list)
    """Threads whose replayed approval ran again: never any."""
    answered: int = 0
    """Questions answered whose user may read the document asked about."""
    recalled: int = 0
    """Of those, answers that hold the document's terms."""
    effects_seen: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    """Effect ids each thread's outcomes reported."""
    threads: dict[str, str] = field(default_factory=dict)
    """Every thread created, with its tenant."""

    def error(self, kind: str, response: httpx.Response | None, note: str = "") -> None:
        self.errors[kind] += 1
        if len(self.error_samples) < 20:
            status = response.status_code if response is not None else "no answer"
            body = response.text[:200] if response is not None else ""
            self.error_samples.append(f"{kind}: {status} {note} {body}".strip())


@dataclass
class Client:
    """One virtual user's HTTP client, timing each request under its kind."""

    http: httpx.AsyncClient
    tally: Tally
    tokens: dict[tuple[str, bool], tuple[str, float]] = field(default_factory=dict)

    async def request(self, kind: str, method: str, path: str, *, token: str | None = None, **kw: Any) -> httpx.Response | None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        started = time.perf_counter()
        try:
            response = await self.http.request(method, path, headers=headers, **kw)
        except httpx.HTTPError as exc:
            self.tally.error(kind, None, type(exc).__name__)
            return None
        self.tally.latencies[kind].append(time.perf_counter() - started)
        return response

    async def token(self, user: str, *, mfa: bool = False) -> str | None:
        """A token for ``user`` (with a fresh second factor if ``mfa``), reused while it is young."""
        held = self.tokens.get((user, mfa))
        # MFA tokens prove a recent sign-in (payments want one within 5 minutes): renew after 2.
        if held is not None and time.monotonic() - held[1] < (120 if mfa else 600):
            return held[0]
        form = {"grant_type": "password", "client_id": "mandate-cli", "username": user, "password": "demo"}
        if mfa:
            form["otp"] = OTP
        response = await self.request("login", "POST", "/dev-idp/token", data=form)
        if response is None or response.status_code != 200:
            self.tally.error("login", response)
            return None
        token = str(response.json()["access_token"])
        self.tokens[(user, mfa)] = (token, time.monotonic())
        return token

    async def new_thread(self, token: str, tenant: str) -> str | None:
        response = await self.request("thread", "POST", "/threads", token=token, json={})
        if response is None or response.status_code != 200:
            self.tally.error("thread", response)
            return None
        thread = str(response.json()["thread_id"])
        self.tally.threads[thread] = tenant
        return thread

    async def run(self, kind: str, token: str, thread: str, body: dict[str, Any]) -> dict[str, Any] | None:
        response = await self.request(kind, "POST", f"/threads/{thread}/runs/wait", token=token, json=body)
        if response is None or response.status_code != 200:
            self.tally.error(kind, response)
            return None
        return dict(response.json())


def _ask(text: str) -> dict[str, Any]:
    return {"assistant_id": "mandate", "input": {"messages": [{"role": "user", "content": text}]}}


def _resume(value: Any) -> dict[str, Any]:
    return {"command": {"resume": value}}


def _interrupt_kind(values: dict[str, Any]) -> str | None:
    interrupts = values.get("__interrupt__") or []
    return str(interrupts[0]["value"]["kind"]) if interrupts else None


def _record_effects(tally: Tally, thread: str, values: dict[str, Any], kind: str) -> bool:
    """Note the effects the outcomes report; False (an error of ``kind``) unless one call succeeded."""
    outcomes = values.get("outcomes") or []
    succeeded = [o for o in outcomes if o.get("status") == "succeeded"]
    for outcome in succeeded:
        tally.effects_seen[thread].add(str(outcome["detail"].get("id")))
    if not succeeded:
        tally.error(kind, None, f"outcomes {[(o.get('status'), o.get('code')) for o in outcomes]}")
    return bool(succeeded)


async def question(client: Client, persona: Persona, n: int) -> None:
    """Ask the persona's question; the answer must hold nothing they may not read."""
    token = await client.token(persona.user)
    thread = token and await client.new_thread(token, persona.tenant)
    if not token or not thread:
        return
    values = await client.run("question", token, thread, _ask(persona.question))
    if values is None:
        return
    answer = str(values["messages"][-1]["content"])
    if persona.expected:
        client.tally.answered += 1
        client.tally.recalled += all(p in answer for p in persona.expected)
    leaked = [p for p in persona.forbidden if p.lower() in answer.lower()]
    if leaked:
        client.tally.leaks.append(f"{persona.user} read {leaked} in thread {thread}")


async def ticket(client: Client, persona: Persona, n: int) -> None:
    """Open a ticket: ask, consent, and (every third time) replay the consent, which must not run again."""
    token = await client.token(persona.user)
    thread = token and await client.new_thread(token, persona.tenant)
    if not token or not thread:
        return
    asked = await client.run("ticket.ask", token, thread, _ask(f"Open a ticket: load test {persona.user} #{n}"))
    if asked is None:
        return
    if _interrupt_kind(asked) != "consent":
        return client.tally.error("ticket.ask", None, f"no consent asked: {_interrupt_kind(asked)}")
    approve = _resume({"decisions": [{"type": "approve"}]})
    done = await client.run("ticket.approve", token, thread, approve)
    if done is None or not _record_effects(client.tally, thread, done, "ticket.approve"):
        return
    if n % 3 == 0:
        await _replay(client, token, thread, approve)


async def payment(client: Client, persona: Persona, n: int) -> None:
    """alice pays: ask, step up with MFA, bob approves with MFA; replayed decisions must not pay twice."""
    requester, bob = await client.token(persona.user), await client.token("bob", mfa=True)
    thread = requester and await client.new_thread(requester, persona.tenant)
    if not requester or not bob or not thread:
        return
    amount = 10 + n % 90
    asked = await client.run("payment.ask", requester, thread, _ask(f"Send {amount} EUR to Initech Services GmbH"))
    if asked is None:
        return
    if _interrupt_kind(asked) != "step_up":
        return client.tally.error("payment.ask", None, f"no step-up asked: {_interrupt_kind(asked)}")
    stepped_up = await client.token(persona.user, mfa=True)
    stepped = stepped_up and await client.run("payment.step_up", stepped_up, thread, _resume({}))
    if not stepped:
        return
    if _interrupt_kind(stepped) != "approval":
        return client.tally.error("payment.step_up", None, f"no approval asked: {_interrupt_kind(stepped)}")
    listed = await client.request("payment.approve", "GET", "/approvals", token=bob)
    mine = [a for a in (listed.json() if listed is not None and listed.status_code == 200 else []) if a["thread_id"] == thread]
    if len(mine) != 1:
        return client.tally.error("payment.approve", listed, "approval not listed for bob")
    decide = f"/approvals/{mine[0]['id']}/decision"
    decided = await client.request("payment.approve", "POST", decide, token=bob, json={"type": "approve"})
    if decided is None or decided.status_code != 200:
        return client.tally.error("payment.approve", decided)
    state = await client.request("payment.approve", "GET", f"/threads/{thread}/state", token=requester)
    if state is None or state.status_code != 200:
        return client.tally.error("payment.approve", state)
    if not _record_effects(client.tally, thread, state.json()["values"], "payment.approve"):
        return
    replayed = await client.request("replay", "POST", decide, token=bob, json={"type": "approve"})
    if replayed is not None and replayed.status_code == 200:
        client.tally.replays_run.append(thread)


async def cross_tenant_read(client: Client, persona: Persona, n: int) -> None:
    """Try to read a thread of the other tenant: it must not be found."""
    others = [t for t, tenant in client.tally.threads.items() if tenant != persona.tenant]
    token = await client.token(persona.user)
    if not others or not token:
        return
    target = others[n % len(others)]
    response = await client.request("cross_tenant_read", "GET", f"/threads/{target}/state", token=token)
    if response is None:
        return
    if response.status_code != 404:
        client.tally.leaks.append(f"{persona.user} ({persona.tenant}) got {response.status_code} for thread {target}")


async def _replay(client: Client, token: str, thread: str, body: dict[str, Any]) -> None:
    response = await client.request("replay", "POST", f"/threads/{thread}/runs/wait", token=token, json=body)
    if response is not None and response.status_code == 200:
        client.tally.replays_run.append(thread)


Scenario = Callable[[Client, Persona, int], Any]
SCENARIOS: dict[str, Scenario] = {
    "question": question,
    "ticket": ticket,
    "payment": payment,
    "cross_tenant_read": cross_tenant_read,
}
"""Scenarios by name, as ``--mix`` weighs them."""
