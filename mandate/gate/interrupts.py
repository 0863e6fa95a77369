"""The interrupt payloads the gate pauses with, and the one parser of a reviewer's answer.

Each kind is defined once here and used by the nodes, the approval queue, the approver page and
the API. Review requests follow LangChain's human-in-the-loop shape (``action_requests`` and
``review_configs``), so front ends built for it can drive them; answers are accepted in that
shape too (``{"decisions": [{"type": "edit", "edited_action": {"name", "args"}}]}``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from typing_extensions import NotRequired, TypedDict

__all__ = [
    "DECISION_TYPES",
    "REVIEW_KINDS",
    "ActionRequest",
    "AnswerRefusal",
    "InterruptKind",
    "ReauthenticateRequest",
    "ReviewAnswer",
    "ReviewConfig",
    "ReviewRequest",
    "SealedAnswer",
    "StepUpRequest",
    "answer_of_run",
    "interrupt_kind",
    "parse_review_answer",
    "seal_answer",
    "seal_resume",
]

InterruptKind = Literal["consent", "approval", "step_up", "reauthenticate"]
REVIEW_KINDS: tuple[InterruptKind, ...] = ("consent", "approval")
"""Kinds a person answers with a decision; they are listed in the approval queue."""
DECISION_TYPES = ("approve", "edit", "reject", "respond")
"""``respond`` is a rejection that carries a message back, as in LangChain's middleware."""
MAX_ANSWER_MESSAGE = 2000


class ActionRequest(TypedDict):
    """The exact call a person is asked about."""

    name: str
    args: dict[str, Any]
    description: str


class ReviewConfig(TypedDict):
    """Which decisions the person may take on an action."""

    action_name: str
    allowed_decisions: list[str]


class ReviewRequest(TypedDict):
    """``consent`` (the requester decides) or ``approval`` (an approver of the tenant decides)."""

    kind: Literal["consent", "approval"]
    action_requests: list[ActionRequest]
    review_configs: list[ReviewConfig]
    approval_id: str
    """The ledger row (``/approvals/{id}``)."""
    tool_call_id: str
    args_hash: str
    policy: str
    agent: str
    risk: str
    expires_at: float
    """Epoch seconds; after it no decision is accepted and the call does not run."""
    expires_in: int
    purpose: Literal["decide", "confirm_edit"]
    """``confirm_edit``: someone else edited the call; the requester must agree to the new arguments."""
    edited_by: NotRequired[str]
    """Pseudonym of whoever edited the arguments (``confirm_edit`` only)."""
    error: NotRequired[str]
    """Why the last answer was refused (a stable code); the question is asked again."""
    error_field: NotRequired[str]
    """Which field of the last answer was wrong, when one was."""


class StepUpRequest(TypedDict):
    """RFC 9470 inside a run: the requester must sign in again, stronger or fresher, then resume."""

    kind: Literal["step_up"]
    tool: str
    tool_call_id: str
    acr_values: str
    max_age: int
    description: str


class ReauthenticateRequest(TypedDict):
    """The call needs the requester's own valid sign-in to be delegated and none is usable here."""

    kind: Literal["reauthenticate"]
    tool_call_ids: list[str]
    description: str
    reason: Literal["token_not_held", "token_expired", "token_too_weak"]
    """Why no sign-in is usable: ``token_not_held`` (this server keeps no tokens, as under ``langgraph
    dev``: run the call through Mandate's own server), ``token_expired`` (the requester's sign-in, kept
    while the call waited for someone else, expired or is no longer usable), ``token_too_weak`` (the
    sign-in is weaker than the call needs; ``acr_values`` says what it needs)."""
    acr_values: NotRequired[str]
    """The authentication level the new sign-in must reach (the calls need step-up)."""


def interrupt_kind(value: Any) -> InterruptKind | None:
    """The kind of an interrupt value, or ``None`` if it is not one of the gate's."""
    kind = value.get("kind") if isinstance(value, dict) else None
    return kind if kind in ("consent", "approval", "step_up", "reauthenticate") else None


@dataclass(frozen=True, kw_only=True, slots=True)
class ReviewAnswer:
    """One person's decision on one call, as parsed from a resume value."""

    type: Literal["approve", "edit", "reject"]
    args: dict[str, Any] | None = None
    """The edited arguments (``edit`` only), not yet validated against the tool's schema."""
    message: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class AnswerRefusal:
    """Why an answer cannot be taken: a stable code and, when one was wrong, the field."""

    code: str
    field: str | None = None


def parse_review_answer(value: Any, *, tool_call_id: str, args_hash: str, tool: str) -> ReviewAnswer | AnswerRefusal:
    """Parse a resume value for the review of one call.

    Accepts ``{"decisions": [{"type": …, "edited_action": {"name", "args"}, "args"?, "message"?}],
    "tool_call_id"?, "args_hash"?}``; when the optional ids are given they must name the call.
    """
    decisions = value.get("decisions") if isinstance(value, dict) else None
    if not isinstance(decisions, list) or len(decisions) != 1 or not isinstance(decisions[0], dict):
        return AnswerRefusal(code="invalid_decisions", field="decisions")
    if value.get("tool_call_id", tool_call_id) != tool_call_id or value.get("args_hash", args_hash) != args_hash:
        return AnswerRefusal(code="stale_decision", field="args_hash")
    decision = decisions[0]
    kind = decision.get("type")
    if kind not in DECISION_TYPES:
        return AnswerRefusal(code="unsupported_decision", field="decisions[0].type")
    message = decision.get("message", "")
    if not isinstance(message, str) or len(message) > MAX_ANSWER_MESSAGE:
        return AnswerRefusal(code="invalid_decisions", field="decisions[0].message")
    if kind in ("reject", "respond"):
        return ReviewAnswer(type="reject", message=message)
    if kind == "approve":
        return ReviewAnswer(type="approve", message=message)
    action = decision.get("edited_action")
    if action is not None:
        if not isinstance(action, dict) or action.get("name", tool) != tool:
            return AnswerRefusal(code="invalid_edit", field="decisions[0].edited_action.name")
        args = action.get("args")
        field = "decisions[0].edited_action.args"
    else:
        args = decision.get("args")
        field = "decisions[0].args"
    if not isinstance(args, dict):
        return AnswerRefusal(code="invalid_edit", field=field)
    return ReviewAnswer(type="edit", args=args, message=message)


class SealedAnswer(TypedDict):
    """A resume value as the server hands it to the graph: the answer and the run that delivered it.

    LangGraph re-runs an interrupted task from its start and replays, in order, every answer the
    task was ever given. A gate that asks several questions in one task (a decision, then the
    requester's confirmation of an approver's edit) must take each answer in the run that brought
    it, never replay an earlier person's answer against a later question.
    """

    mandate_run_id: str
    kind: InterruptKind
    """The kind of pause it answers: a step-up resume is never taken as a decision."""
    answer: Any


def seal_answer(answer: Any, *, run_id: str, kind: InterruptKind) -> SealedAnswer:
    """``answer`` to a pause of ``kind``, bound to the run that delivers it."""
    return SealedAnswer(mandate_run_id=run_id, kind=kind, answer=answer)


def answer_of_run(value: Any, *, run_id: str | None, kinds: tuple[InterruptKind, ...] = REVIEW_KINDS) -> tuple[bool, Any]:
    """Whether ``value`` answers a pause of one of ``kinds`` in run ``run_id``, and the answer it carries.

    An unsealed value comes from a caller that invokes the graph itself (a test, ``langgraph dev``)
    and counts as this run's.
    """
    if isinstance(value, dict) and set(value) == {"mandate_run_id", "kind", "answer"}:
        return value["mandate_run_id"] == run_id and value["kind"] in kinds, value["answer"]
    return True, value


def seal_resume(resume: Any, *, pending: dict[str, Any], run_id: str) -> Any:
    """The resume value of a run, with every answer to one of the gate's pauses sealed to ``run_id``.

    Args:
        resume: The client's ``command.resume``: one answer, or answers by interrupt id.
        pending: The thread's pending interrupt values by interrupt id.
        run_id: The run that delivers the answers.
    """
    def seal(interrupt_id: str | None, answer: Any) -> Any:
        value = pending.get(interrupt_id) if interrupt_id else next(iter(pending.values()), None)
        kind = interrupt_kind(value)
        return seal_answer(answer, run_id=run_id, kind=kind) if kind else answer

    if isinstance(resume, dict) and resume and set(resume) <= set(pending):
        return {interrupt_id: seal(interrupt_id, answer) for interrupt_id, answer in resume.items()}
    return seal(None, resume)
