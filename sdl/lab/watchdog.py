"""Hang detection: an experiment that runs far longer than it should is flagged.

An instrument's own timeout catches an action that never answers, but it must allow for the
longest legitimate action (a 12-hour calcination), so a step stuck for an hour goes unseen
all night. The watchdog knows what this experiment should take: the synthesis time its
recipe needs (the synthesis model's own estimate, at the instruments' pace) plus what the
rest of an experiment took lately (the median over the last ones, or what the campaign file
expects before the first has finished). It flags one that has *run* (paused time does not
count) ``factor`` times longer, but never sooner than ``min_s``. The station then aborts the
plan and the attempt is a ``hang`` fault, which the campaign's fault policy handles like any
other.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sdl.campaign.config import CampaignConfig, WatchdogConfig
from sdl.campaign.systems import get_system

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
    synthesis_s
        Instrument seconds the synthesis of given conditions takes (the model's estimate);
        None: unknown, the whole experiment is learnt from the earlier ones.
    wall_per_instrument_s
        Wall seconds per instrument second (``1 / speedup`` simulated; 1 on real hardware).
    """

    def __init__(
        self,
        config: WatchdogConfig,
        synthesis_s: Callable[[Mapping[str, float]], float] | None = None,
        wall_per_instrument_s: float = 0.0,
    ) -> None:
        self.config = config
        self._synthesis_s = synthesis_s
        self._scale = wall_per_instrument_s
        self._rest: deque[float] = deque(maxlen=RECENT)  # wall seconds beyond the synthesis
        self._lock = threading.Lock()

    def _synthesis_wall_s(self, conditions: Mapping[str, float]) -> float:
        if self._synthesis_s is None or self._scale == 0:
            return 0.0
        return self._scale * self._synthesis_s(conditions)

    def record(self, running_s: float, conditions: Mapping[str, float]) -> None:
        """An experiment at ``conditions`` finished after ``running_s`` wall seconds."""
        with self._lock:
            self._rest.append(max(0.0, running_s - self._synthesis_wall_s(conditions)))

    def limit_s(self, conditions: Mapping[str, float]) -> float | None:
        """Running seconds after which an experiment at ``conditions`` is hung; None: none
        is flagged (the watchdog is off, or nothing is known yet)."""
        if not self.config.enabled:
            return None
        with self._lock:
            rest = statistics.median(self._rest) if self._rest else None
        if rest is None:
            if self.config.expected_s is None:
                return None
            expected = max(self.config.expected_s, self._synthesis_wall_s(conditions))
        else:
            expected = rest + self._synthesis_wall_s(conditions)
        return max(self.config.min_s, self.config.factor * expected)


def expected_duration(config: CampaignConfig) -> ExpectedDuration:
    """The campaign's expected durations: its system's synthesis model estimates the
    synthesis, at the simulated clock's pace (``1 / speedup``) or, on real hardware, at the
    wall clock's."""
    model = get_system(config.devices.system).make_model()
    scale = 1.0 if config.devices.backend == "epics" else 1.0 / config.devices.speedup
    return ExpectedDuration(config.watchdog, model.duration_s, scale)


@dataclass
class Watchdog:
    """Watches one experiment at ``conditions``: counts the seconds ``running()`` says it
    runs and calls ``on_hang(reason)`` once, from its own thread, when they pass the limit.

    Use it as a context manager around the experiment; ``running_s`` is what it ran.
    """

    expected: ExpectedDuration
    conditions: Mapping[str, float]
    running: Callable[[], bool]
    on_hang: Callable[[str], None]
    what: str
    running_s: float = 0.0
    hung: str | None = None
    _done: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Watchdog:
        self._thread = threading.Thread(target=self._watch, name=f"watchdog {self.what}")
        self._thread.daemon = True
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()

    def _watch(self) -> None:
        last = time.monotonic()
        while not self._done.wait(POLL_S):
            now = time.monotonic()
            if self.running():
                self.running_s += now - last
            last = now
            limit = self.expected.limit_s(self.conditions)
            if limit is not None and self.running_s > limit:
                self.hung = (
                    f"{self.what} hung: running for {self.running_s:.0f} s, over the "
                    f"watchdog's {limit:.0f} s ({self.expected.config.factor:g}x the expected "
                    "duration)"
                )
                self.on_hang(self.hung)
                return
