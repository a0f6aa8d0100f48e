"""The shared world of the simulated instruments: one clock, one seed, one sample stage."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np
from ophyd.status import DeviceStatus

from simulators.clock import SimClock
from simulators.sample import SampleState

logger = logging.getLogger(__name__)


class SimulatedLab:
    """What simulated devices share: the instrument clock, the random stream and the stage.

    The reactor puts each new sample on the stage; the diffractometer and the microscope
    measure whatever is there, as a sample changer would hand it over in a real lab.

    Parameters
    ----------
    clock
        Instrument time; its speed-up decides how long actions take on the wall clock.
    seed
        Seeds every random draw (batch variation, counting noise, micrograph texture), so
        the same campaign with the same seed sees the same samples and noise.
    """

    def __init__(self, clock: SimClock | None = None, seed: int = 0) -> None:
        self.clock = clock or SimClock()
        self._seed_sequence = np.random.SeedSequence(seed)
        self._rng_lock = threading.Lock()
        self.sample_on_stage: SampleState | None = None

    def new_rng(self) -> np.random.Generator:
        """An independent generator for one action, reproducible from the lab's seed."""
        with self._rng_lock:
            (child,) = self._seed_sequence.spawn(1)
        return np.random.default_rng(child)

    def require_sample(self) -> SampleState:
        """The sample on the stage; a measurement before any synthesis is an error."""
        if self.sample_on_stage is None:
            raise RuntimeError("no sample on the stage: synthesise one with the reactor first")
        return self.sample_on_stage

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
