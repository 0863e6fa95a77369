"""Throughput and latency of 1, 2 and 3 Mandate replicas on one Postgres and one OpenFGA."""
