"""The demo world: tenants, users' grants, agents' grants, tools and documents."""

from mandate.devstack.demo.world import DEMO_DOCUMENTS, DEMO_RELATIONSHIPS, seed_demo_world

__all__ = ["DEMO_DOCUMENTS", "DEMO_RELATIONSHIPS", "seed_demo_world"]
