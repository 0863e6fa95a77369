"""``python -m bench.load``: concurrent users over two tenants, with correctness checks (see :mod:`bench.load.run`)."""
