"""A clock for code that takes one (``clock: Callable[[], float]``): it moves only when the test says so."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class FakeClock:
    """Seconds (epoch by default) that move only when the test sets :attr:`now`."""

    now: float = field(default_factory=time.time)

    def __call__(self) -> float:
        return self.now
