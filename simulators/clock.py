"""Simulated instrument time: actions cost hours on the clock while tests run in milliseconds."""

from __future__ import annotations

import math
import threading


class SimClock:
    """A clock that counts instrument seconds and says how long to really wait for them.

    Parameters
    ----------
    speedup
        Simulated seconds per wall-clock second. ``math.inf`` (the default) makes every
        action complete at once; ``3600`` turns an hour of synthesis into a second.
    """

    def __init__(self, speedup: float = math.inf) -> None:
        if not speedup > 0:
            raise ValueError(f"speedup must be > 0 (math.inf for instant), got {speedup}")
        self.speedup = speedup
        self._elapsed_s = 0.0
        self._lock = threading.Lock()

    @property
    def elapsed_s(self) -> float:
        """Instrument seconds spent so far."""
        return self._elapsed_s

    def advance(self, duration_s: float) -> float:
        """Spend ``duration_s`` instrument seconds; return the wall-clock seconds to wait for it."""
        if duration_s < 0 or math.isnan(duration_s):
            raise ValueError(f"duration_s must be >= 0, got {duration_s}")
        with self._lock:
            self._elapsed_s += duration_s
        return duration_s / self.speedup
