"""Hang detection: an experiment that runs far longer than experiments take is flagged.

An instrument's own timeout catches an action that never answers, but it must allow for the
longest legitimate action (a 12-hour calcination), so a step stuck for an hour goes unseen
all night. The watchdog knows what this campaign's experiments take (the median wall time of
the last ones, or what the campaign file expects before the first has finished) and flags
one that has *run* (paused time does not count) ``factor`` times longer, but never sooner
than ``min_s``. The station then aborts the plan and the attempt is a ``hang`` fault, which
the campaign's fault policy handles like any other.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType

from sdl.campaign.config import WatchdogConfig

#: How many recent experiments the expected duration is the median of.
RECENT = 20
#: Seconds between two looks at a running experiment.
POLL_S = 0.25


class ExperimentHung(RuntimeError):
    """An experiment ran past the watchdog's limit (the ``hang`` fault kind)."""


class ExpectedDuration:
    """What one experiment of the campaign is expected to take, shared by its stations.

    Parameters
    ----------
    config
        The campaign's ``watchdog`` section.
    """

    def __init__(self, config: WatchdogConfig) -> None:
        self.config = config
        self._recent: deque[float] = deque(maxlen=RECENT)
        self._lock = threading.Lock()

    def record(self, running_s: float) -> None:
        """An experiment finished after ``running_s`` wall seconds of running."""
        with self._lock:
            self._recent.append(running_s)

    def limit_s(self) -> float | None:
        """Running seconds after which an experiment is hung; None: none is flagged yet."""
        if not self.config.enabled:
            return None
        with self._lock:
            expected = statistics.median(self._recent) if self._recent else self.config.expected_s
        if expected is None:
            return None
        return max(self.config.min_s, self.config.factor * expected)


class Watchdog:
    """Watches one experiment: counts the seconds ``running()`` says it runs and calls
    ``on_hang(reason)`` once, from its own thread, when they pass the limit.

    Use it as a context manager around the experiment; ``running_s`` is what it ran.
    """

    def __init__(
        self,
        expected: ExpectedDuration,
        running: Callable[[], bool],
        on_hang: Callable[[str], None],
        what: str,
    ) -> None:
        self.expected = expected
        self._running = running
        self._on_hang = on_hang
        self._what = what
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self.running_s = 0.0
        self.hung: str | None = None

    def __enter__(self) -> Watchdog:
        self._thread = threading.Thread(target=self._watch, name=f"watchdog {self._what}")
        self._thread.daemon = True
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()

    def _watch(self) -> None:
        last = time.monotonic()
        while not self._done.wait(POLL_S):
            now = time.monotonic()
            if self._running():
                self.running_s += now - last
            last = now
            limit = self.expected.limit_s()
            if limit is not None and self.running_s > limit:
                self.hung = (
                    f"{self._what} hung: running for {self.running_s:.0f} s, over the "
                    f"watchdog's {limit:.0f} s ({self.expected.config.factor:g}x the expected "
                    "duration)"
                )
                self._on_hang(self.hung)
                return
