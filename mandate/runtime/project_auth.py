"""A project's own LangGraph ``Auth`` handlers, applied after Mandate's: they may narrow, never widen.

They are named in ``mandate.yaml`` (``auth: ./auth.py:auth``), never in ``langgraph.json``, whose
``auth`` is Mandate's own, so both ``mandate serve`` and ``langgraph dev`` verify every request with
Mandate's verifier and decide ownership, tenants and grants first; only then does a project's
``@auth.on`` handler see the action, with a user built from the verified principal (its
issuer-qualified id as ``identity``, its scopes as ``permissions``, its tenant) and never a token.
``False`` refuses; a mapping is a filter the thread's metadata must match; ``None``/``True`` lets
Mandate's own decision stand. The project's ``@auth.authenticate`` is never called: identity is
Mandate's, so a project cannot replace it.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from langgraph_sdk import Auth

from mandate.auth import Principal
from mandate.runtime.errors import ProjectAuthRefusedError

__all__ = ["ProjectAuth", "ProjectUser"]

Resource = Literal["threads", "assistants"]
Action = Literal["create", "read", "update", "delete", "search", "create_run"]


@dataclass(frozen=True, kw_only=True, slots=True)
class ProjectUser:
    """The verified principal as LangGraph's ``BaseUser``: no token, nothing a client chose."""

    identity: str
    display_name: str
    tenant: str
    permissions: tuple[str, ...] = field(default=())
    is_authenticated: bool = True

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    @classmethod
    def of(cls, principal: Principal) -> ProjectUser:
        return cls(
            identity=principal.user_id, display_name=principal.subject, tenant=principal.tenant,
            permissions=tuple(sorted(principal.scopes)),
        )


class ProjectAuth:
    """The project's ``Auth`` object, consulted after Mandate has allowed an action."""

    def __init__(self, auth: Auth) -> None:
        self._auth = auth

    def _handler(self, resource: str, action: str) -> Any:
        """The most specific handler, as the LangGraph server picks it."""
        handlers = self._auth._handlers  # noqa: SLF001  (the SDK keeps them here; the server reads them alike)
        for key in ((resource, action), (resource, "*"), ("*", action), ("*", "*")):
            if key in handlers:
                return handlers[key][-1]
        return self._auth._global_handlers[-1] if self._auth._global_handlers else None  # noqa: SLF001

    async def check(
        self, principal: Principal, resource: Resource, action: Action, value: dict[str, Any], *, metadata: Mapping[str, Any]
    ) -> None:
        """Refuse unless the project's handler lets ``principal`` do ``action`` on ``resource``.

        Args:
            value: What the action is about (``thread_id``, ``assistant_id``, ``metadata``…), a copy.
            metadata: The thread's metadata, which a returned filter must match.

        Raises:
            ProjectAuthRefusedError: The handler said no, its filter does not match, or it failed.
        """
        decision = await self.decide(principal, resource, action, value)
        if decision and any(metadata.get(k) != v for k, v in decision.items()):
            raise ProjectAuthRefusedError(f"The project's auth handler refuses {resource}.{action} on this thread.")

    async def decide(
        self, principal: Principal, resource: Resource, action: Action, value: dict[str, Any]
    ) -> Mapping[str, Any] | None:
        """The project handler's filter for ``principal`` doing ``action`` (``None``: no filter).

        A server that filters by metadata itself (``langgraph dev``) adds the filter to Mandate's own.

        Raises:
            ProjectAuthRefusedError: The handler said no, returned something else than a filter, or failed.
        """
        handler = self._handler(resource, action)
        if handler is None:
            return None
        user = ProjectUser.of(principal)
        context = Auth.types.AuthContext(permissions=list(user.permissions), user=user, resource=resource, action=action)
        try:
            decision = handler(ctx=context, value=dict(value))
            if inspect.isawaitable(decision):
                decision = await decision
        except Exception as exc:  # the project's code failed: fail closed
            raise ProjectAuthRefusedError(f"The project's auth handler for {resource}.{action} failed.") from exc
        if decision is None or decision is True:
            return None
        if isinstance(decision, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in decision.items()):
            return dict(decision)
        # False, or anything but a filter of plain values: refused, never read as "allowed".
        raise ProjectAuthRefusedError(f"The project's auth handler refuses {resource}.{action}.")
