"""Benchmarks: figures printed side by side with their floors; never part of the test suite."""
