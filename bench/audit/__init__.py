"""Audit benchmarks: overhead of the durable audit per run, and audit write throughput."""
