"""The shared world of the simulated instruments: one clock, one seed, one sample stage."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ophyd.status import DeviceStatus

from simulators.clock import SimClock
from simulators.faults import FaultInjector
from simulators.stage import SampleStage

logger = logging.getLogger(__name__)


class SimulatedLab(SampleStage):
    """What simulated devices share: the clock, the random stream, the stage and the faults.

    The stage and the random streams are :class:`simulators.stage.SampleStage`'s, shared
    with the Channel Access IOCs; this adds the clock and the fault injector, and runs
    actions off the RunEngine.

    Parameters
    ----------
    clock
        Instrument time; its speed-up decides how long actions take on the wall clock.
    seed
        Seeds every random draw (batch variation, counting noise, micrograph texture), so
        the same campaign with the same seed sees the same samples and noise.
    faults
        What goes wrong and when (default: nothing).
    action_timeout_s
        Wall seconds an action may take to respond before its Status fails with
        :class:`TimeoutError` (None: wait for ever), as a real controller's watchdog would.
    """

    def __init__(
        self,
        clock: SimClock | None = None,
        seed: int = 0,
        faults: FaultInjector | None = None,
        action_timeout_s: float | None = None,
    ) -> None:
        super().__init__(seed)
        self.clock = clock or SimClock()
        self.faults = faults or FaultInjector()
        self.action_timeout_s = action_timeout_s

    def run_action(
        self, device: object, action: Callable[[], float], description: str
    ) -> DeviceStatus:
        """Run ``action`` off the RunEngine's thread and finish a Status when it is done.

        ``action`` does the simulated work and returns its instrument duration in seconds;
        the Status completes after that duration on the lab clock (at once when the clock's
        speed-up is infinite). An exception in ``action`` fails the Status with it, and so
        does an ``action`` that has not returned after ``action_timeout_s``.
        """
        status = DeviceStatus(device)
        responded = threading.Event()

        def work() -> None:
            try:
                duration_s = action()
                responded.set()
                time.sleep(self.clock.advance(duration_s))
            except Exception as error:
                logger.warning("%s failed: %s", description, error)
                status.set_exception(error)
            else:
                status.set_finished()

        def watchdog() -> None:
            if not responded.is_set() and not status.done:
                status.set_exception(
                    TimeoutError(
                        f"{description} did not respond within {self.action_timeout_s:g} s"
                    )
                )

        threading.Thread(target=work, name=description, daemon=True).start()
        if self.action_timeout_s is not None:
            timer = threading.Timer(self.action_timeout_s, watchdog)
            timer.daemon = True
            timer.start()
        return status
