"""``python -m bench.replicas``: see :mod:`bench.replicas.run`."""

import sys

from bench.replicas.run import main

sys.exit(main())
