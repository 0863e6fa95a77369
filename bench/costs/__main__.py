"""``python -m bench.costs``: see :mod:`bench.costs.run`."""

import sys

from bench.costs.run import main

sys.exit(main())
