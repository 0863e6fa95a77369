"""The peer benchmark: one user's graph served by Mandate, ``langgraph dev`` and aegra (see :mod:`bench.peers.run`)."""
