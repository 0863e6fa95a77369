"""The tool gate: the call ledger, typed interrupt payloads, and the checks made at the effect."""

from mandate.gate.check import decider_refusal, execution_refusal, is_tenant_approver, party_of
from mandate.gate.interrupts import (
    DECISION_TYPES,
    REVIEW_KINDS,
    ActionRequest,
    AnswerRefusal,
    InterruptKind,
    ReauthenticateRequest,
    ReviewAnswer,
    ReviewConfig,
    ReviewRequest,
    StepUpRequest,
    interrupt_kind,
    parse_review_answer,
)
from mandate.gate.ledger import CallLedger, CallRecord, CallStatus, ExecutionStart, Party, ProposedCall, StepUpEvidence

__all__ = [
    "DECISION_TYPES",
    "REVIEW_KINDS",
    "ActionRequest",
    "AnswerRefusal",
    "CallLedger",
    "CallRecord",
    "CallStatus",
    "ExecutionStart",
    "InterruptKind",
    "Party",
    "ProposedCall",
    "ReauthenticateRequest",
    "ReviewAnswer",
    "ReviewConfig",
    "ReviewRequest",
    "StepUpEvidence",
    "StepUpRequest",
    "decider_refusal",
    "execution_refusal",
    "interrupt_kind",
    "is_tenant_approver",
    "parse_review_answer",
    "party_of",
]
