"""The cost of each control per run, from spans (see :mod:`bench.costs.run`)."""
