"""The tool registry: what each tool is, where it calls, and what it demands before it may run."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from mandate.auth import StepUpRequirement
from mandate.auth import vocabulary as fga
from mandate.tools.errors import InvalidToolArgsError, UnknownToolError

__all__ = [
    "ApprovalPolicy",
    "EditRule",
    "ToolRegistry",
    "ToolSpec",
    "args_hash",
    "decision_refusal",
]


class ApprovalPolicy(StrEnum):
    """Who must say yes before a tool runs."""

    NONE = "none"
    USER_CONSENT = "user_consent"
    APPROVER = "approver"
    """An approver of the tenant, never the requester."""


EditRule = Literal["any", "decrease", "increase"]
"""How an approver may change one argument without sending the call back to the requester."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ToolSpec:
    """One tool and its policy."""

    name: str
    description: str
    args_schema: type[BaseModel] | None
    """Validates and normalises the arguments before anyone decides on them; ``None`` (a project tool
    whose schema lives with its code) keeps them as given, and the tool validates them when it runs."""
    audience: str | None
    """Downstream API base URL and token audience; ``None`` for tools served inside Mandate."""
    relation: str = "can_use"
    """OpenFGA relation the user needs on :attr:`resource` for the call to run."""
    scopes: tuple[str, ...] = ()
    """Scopes the user's token must hold and the delegated token is limited to."""
    sensitivity: Literal["read", "write", "financial"] = "read"
    step_up: StepUpRequirement | None = None
    approval: ApprovalPolicy = ApprovalPolicy.NONE
    approver_distinct: bool = True
    """For :attr:`ApprovalPolicy.APPROVER`: the approver must not be the requester."""
    approval_ttl: int = 3600
    """Seconds a pending consent or approval stays valid."""
    editable: Mapping[str, EditRule] = field(default_factory=dict)
    """Arguments an approver may change on their own (``amount: decrease``); any other edit by
    someone other than the requester goes back to the requester, so two people agree on one call."""

    @property
    def resource(self) -> str:
        """The OpenFGA object a call targets (``tool:<name>``)."""
        return fga.tool(self.name)

    def validate_args(self, args: dict[str, Any]) -> dict[str, Any]:
        """The arguments, validated and normalised by the tool's schema.

        Raises:
            InvalidToolArgsError: They do not match (the message names fields, never values).
        """
        if self.args_schema is None:
            try:
                return dict(json.loads(json.dumps(args, allow_nan=False)))
            except (TypeError, ValueError) as exc:
                raise InvalidToolArgsError(f"Invalid arguments for {self.name}: not JSON.", fields=("args",)) from exc
        try:
            return self.args_schema.model_validate(args).model_dump(mode="json")
        except ValidationError as exc:
            fields = sorted({".".join(str(p) for p in err["loc"]) for err in exc.errors()})
            raise InvalidToolArgsError(f"Invalid arguments for {self.name}: {', '.join(fields)}.", fields=tuple(fields)) from exc


def edit_within_policy(spec: ToolSpec, original: Mapping[str, Any], edited: Mapping[str, Any]) -> bool:
    """Whether an approver's edit of ``original`` into ``edited`` stays inside ``spec.editable``.

    Every changed argument must be listed, and a ``decrease``/``increase`` rule holds only for
    numbers that moved that way. Anything else needs the requester's agreement.
    """
    for name in set(original) | set(edited):
        before, after = original.get(name), edited.get(name)
        if before == after:
            continue
        rule = spec.editable.get(name)
        if rule == "any":
            continue
        numbers = isinstance(before, (int, float)) and isinstance(after, (int, float))
        if rule == "decrease" and numbers and after < before:  # type: ignore[operator]
            continue
        if rule == "increase" and numbers and after > before:  # type: ignore[operator]
            continue
        return False
    return True


def decision_refusal(spec: ToolSpec, *, is_requester: bool, is_tenant_approver: bool) -> str | None:
    """Why this person may not decide on a call of ``spec``, or ``None`` if they may.

    Args:
        spec: The tool whose call awaits a decision.
        is_requester: The decider is the user who asked (same issuer, subject and tenant).
        is_tenant_approver: OpenFGA says the decider is an ``approver`` of the requester's tenant.
    """
    if spec.approval is ApprovalPolicy.USER_CONSENT:
        return None if is_requester else "consent_requires_requester"
    if spec.approval is ApprovalPolicy.APPROVER:
        if is_requester and spec.approver_distinct:
            return "requester_cannot_approve"
        return None if is_tenant_approver else "not_an_approver"
    return "no_decision_needed"


def args_hash(name: str, args: dict[str, Any]) -> str:
    """SHA-256 over the tool name and canonical JSON arguments: what an approval is bound to."""
    canonical = json.dumps({"name": name, "args": args}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class ToolRegistry:
    """Tools by name."""

    def __init__(self, specs: Iterable[ToolSpec]) -> None:
        self._specs: dict[str, ToolSpec] = {}
        for spec in specs:
            if spec.name in self._specs:
                raise ValueError(f"Tool {spec.name!r} is defined twice.")
            self._specs[spec.name] = spec

    def get(self, name: str) -> ToolSpec:
        """The spec for ``name``.

        Raises:
            UnknownToolError: No such tool (the call is denied).
        """
        try:
            return self._specs[name]
        except KeyError:
            raise UnknownToolError(f"Tool {name!r} is not registered.") from None

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._specs.values())
