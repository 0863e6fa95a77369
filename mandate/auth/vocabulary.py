"""The OpenFGA vocabulary: object types, relations and how object ids are spelled, in one place.

Users are issuer-qualified: ``user:<issuer key>|<subject>``, so two trusted issuers whose
subjects overlap never share a grant. The subject is percent-encoded because OpenFGA ids may
not contain ``:``, ``#`` or white space (Auth0's ``auth0|123`` and URN subjects would).
"""

from __future__ import annotations

from typing import Final
from urllib.parse import quote, unquote

__all__ = [
    "APPROVER",
    "ASSISTANT_ADMIN",
    "AUDITOR",
    "CAN_READ",
    "CAN_USE",
    "INVOKER",
    "MEMBER",
    "OWNER",
    "PARENT",
    "READER_AGENT",
    "TENANT",
    "VIEWER",
    "agent",
    "document",
    "document_id",
    "folder",
    "group",
    "group_members",
    "subject_of",
    "tenant",
    "tenant_members",
    "tool",
    "user",
]

MEMBER: Final = "member"
APPROVER: Final = "approver"
AUDITOR: Final = "auditor"
ASSISTANT_ADMIN: Final = "assistant_admin"
"""The tenant relation of people who may create, change and delete the tenant's assistants."""
READER_AGENT: Final = "reader_agent"
VIEWER: Final = "viewer"
OWNER: Final = "owner"
CAN_READ: Final = "can_read"
CAN_USE: Final = "can_use"
INVOKER: Final = "invoker"
TENANT: Final = "tenant"
"""The relation that places a folder or document in its tenant."""
PARENT: Final = "parent"


def user(issuer_key: str, subject: str) -> str:
    """``user:<issuer key>|<subject>``: a person as one issuer knows them."""
    return f"user:{issuer_key}|{quote(subject, safe='')}"


def subject_of(user_id: str) -> tuple[str, str]:
    """``(issuer key, subject)`` of an issuer-qualified user id (the inverse of :func:`user`).

    Raises:
        ValueError: ``user_id`` is not an issuer-qualified user.
    """
    kind, _, rest = user_id.partition(":")
    issuer_key, bar, subject = rest.partition("|")
    if kind != "user" or not bar or not issuer_key or not subject:
        raise ValueError(f"{user_id!r} is not an issuer-qualified user (user:<issuer key>|<subject>).")
    return issuer_key, unquote(subject)


def agent(name: str) -> str:
    """``agent:<name>``; a name already spelled ``agent:<name>`` is returned as it is."""
    return name if name.startswith("agent:") else f"agent:{name}"


def tenant(name: str) -> str:
    """``tenant:<name>``."""
    return f"tenant:{name}"


def tenant_members(name: str) -> str:
    """``tenant:<name>#member``: everyone in the tenant, as a userset."""
    return f"tenant:{name}#{MEMBER}"


def group(name: str) -> str:
    """``group:<name>``."""
    return f"group:{name}"


def group_members(name: str) -> str:
    """``group:<name>#member``: a group as a userset."""
    return f"group:{name}#{MEMBER}"


def folder(name: str) -> str:
    """``folder:<name>``."""
    return f"folder:{name}"


def document(doc_id: str) -> str:
    """``document:<id>``."""
    return f"document:{doc_id}"


def document_id(obj: str) -> str:
    """The id of a ``document:<id>`` object (the inverse of :func:`document`)."""
    return obj.removeprefix("document:")


def tool(name: str) -> str:
    """``tool:<name>``."""
    return f"tool:{name}"
