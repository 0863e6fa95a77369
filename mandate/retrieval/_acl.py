"""ACL tokens: the principals a document's own tuples name, and the principals a user holds.

A document's tokens are the users of its direct ``viewer`` and ``owner`` tuples (``user:bob``,
``group:finance#member``) and its ``parent`` folders (``folder:contracts``, meaning "viewers of that
folder"). A user's tokens are ``user:<id>``, every group the user is a member of, and every folder
the user may view, all listed by OpenFGA for this query. A chunk is a candidate when the two sets
overlap: the overlap is exactly OpenFGA's ``viewer`` as long as the document's tokens match its
tuples (ingestion writes both; :class:`~mandate.retrieval._feed.ChangeFeed` follows later changes before every query).
Tenant membership and the agent's grant are resolved separately.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from mandate.auth import Authorizer, Relationship
from mandate.auth import vocabulary as fga
from mandate.retrieval.directory import RelationshipDirectory

__all__ = ["GRANTING_RELATIONS", "Principals", "document_acl", "resolve_principals", "synced_acl"]

GRANTING_RELATIONS = frozenset({"viewer", "owner", "parent"})
"""Relations of a document whose users grant ``viewer`` (directly, as owner, or through a folder)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Principals:
    """What one (user, agent) pair holds in one tenant, according to OpenFGA at query time."""

    tokens: tuple[str, ...]
    """ACL tokens of the user: the user, its groups (``group:g#member``) and viewable folders."""
    tenant_member: bool
    """Whether the user is a member of the tenant (``can_read`` requires it)."""
    agent_documents: tuple[str, ...] | None
    """Documents the agent may read when it holds no tenant-wide grant; ``None`` means all."""


def document_acl(relationships: Iterable[Relationship]) -> tuple[str, ...]:
    """The sorted ACL tokens of a document, from its direct tuples."""
    return tuple(sorted({r.user for r in relationships if r.relation in GRANTING_RELATIONS}))


def synced_acl(relationships: Iterable[Relationship], *, tenant: str) -> tuple[str, ...]:
    """The tokens of a stored document of ``tenant``: none unless its tuples still place it there.

    ``can_read`` needs the document's ``tenant`` tuple; a document whose tuples no longer name the
    tenant its rows are stored under is readable by nobody, so it carries no token.
    """
    tuples = list(relationships)
    if not any(r.relation == fga.TENANT and r.user == fga.tenant(tenant) for r in tuples):
        return ()
    return document_acl(tuples)


async def resolve_principals(
    *, directory: RelationshipDirectory, authz: Authorizer, user: str, agent: str, tenant: str
) -> Principals:
    """Ask OpenFGA, concurrently, what ``user`` and ``agent`` hold in ``tenant``.

    Raises:
        IncompleteListingError: A listing may be cut short; the caller must not use these tokens.
        AuthorizationUnavailableError: OpenFGA erred.
    """
    groups, folders, (member, agent_tenant_wide) = await asyncio.gather(
        directory.list_objects(user=user, relation="member", object_type="group"),
        directory.list_objects(user=user, relation="viewer", object_type="folder"),
        authz.batch_check(
            [Relationship(user, fga.MEMBER, fga.tenant(tenant)), Relationship(agent, fga.READER_AGENT, fga.tenant(tenant))],
            strong=True,
        ),
    )
    agent_documents = None
    if not agent_tenant_wide:
        listed = await directory.list_objects(user=agent, relation="reader_agent", object_type="document")
        agent_documents = tuple(sorted(fga.document_id(obj) for obj in listed))
    return Principals(
        tokens=tuple(sorted({user, *(f"{group}#member" for group in groups), *folders})),
        tenant_member=member,
        agent_documents=agent_documents,
    )
