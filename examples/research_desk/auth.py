"""The desk's own LangGraph auth handlers, named in ``mandate.yaml`` (``auth: ./auth.py:auth``).

Under Mandate (``mandate serve``, or ``langgraph dev`` with Mandate's auth in ``langgraph.json``) they
can only narrow what Mandate allowed: identity, tenants, ownership and grants are decided before these
run, and their ``authenticate`` (none here) would never be called."""

from langgraph_sdk import Auth

auth = Auth()


@auth.on
async def acme_only(ctx: Auth.types.AuthContext, value: dict) -> bool:
    """The research desk serves ACME's people only."""
    return ctx.user["tenant"] == "acme"


@auth.on.threads.read
async def anyone_may_read(ctx: Auth.types.AuthContext, value: dict) -> bool:
    """Tries to widen reading to every thread: Mandate's owner check still comes first."""
    return True


@auth.on.threads.create_run
async def the_desk_as_shipped(ctx: Auth.types.AuthContext, value: dict) -> bool:
    """Runs take the desk as shipped: not an assistant a tenant's admin configured from it."""
    return value["assistant_id"] == "desk"
