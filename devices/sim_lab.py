"""The shared world of the simulated instruments: one clock, one seed, one sample stage."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ophyd.status import DeviceStatus

from simulators.clock import SimClock
from simulators.stage import SampleStage

logger = logging.getLogger(__name__)


class SimulatedLab(SampleStage):
    """What simulated devices share: the instrument clock, the random stream and the stage.

    The stage and the random streams are :class:`simulators.stage.SampleStage`'s, shared
    with the Channel Access IOCs; this adds the clock and runs actions off the RunEngine.

    Parameters
    ----------
    clock
        Instrument time; its speed-up decides how long actions take on the wall clock.
    seed
        Seeds every random draw (batch variation, counting noise, micrograph texture), so
        the same campaign with the same seed sees the same samples and noise.
    """

    def __init__(self, clock: SimClock | None = None, seed: int = 0) -> None:
        super().__init__(seed)
        self.clock = clock or SimClock()

    def run_action(
        self, device: object, action: Callable[[], float], description: str
    ) -> DeviceStatus:
        """Run ``action`` off the RunEngine's thread and finish a Status when it is done.

        ``action`` does the simulated work and returns its instrument duration in seconds;
        the Status completes after that duration on the lab clock (at once when the clock's
        speed-up is infinite). An exception in ``action`` fails the Status with it.
        """
        status = DeviceStatus(device)

        def work() -> None:
            try:
                duration_s = action()
                time.sleep(self.clock.advance(duration_s))
            except Exception as error:
                logger.exception("%s failed", description)
                status.set_exception(error)
            else:
                status.set_finished()

        threading.Thread(target=work, name=description, daemon=True).start()
        return status
