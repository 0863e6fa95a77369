"""The authorized-retrieval benchmark (``python -m bench.retrieval --help``)."""
