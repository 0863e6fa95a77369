"""``python -m bench.retrieval``: see :mod:`bench.retrieval.run`."""

import sys

from bench.retrieval.run import main

sys.exit(main())
