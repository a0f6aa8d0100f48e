"""The sample stage and random streams that every instrument of one simulated lab shares."""

from __future__ import annotations

import threading

import numpy as np

from simulators.sample import SampleState


class SampleStage:
    """The sample on the stage plus one seeded random stream per action.

    The reactor puts each new sample on the stage; the diffractometer and the microscope
    measure whatever is there, as a sample changer would hand it over in a real lab. Both
    backends use it: the in-process simulated devices and the Channel Access IOCs.

    Parameters
    ----------
    seed
        Seeds every random draw (batch variation, counting noise, micrograph texture), so
        the same campaign with the same seed sees the same samples and noise.
    """

    def __init__(self, seed: int = 0) -> None:
        self._seed_sequence = np.random.SeedSequence(seed)
        self._rng_lock = threading.Lock()
        self.sample_on_stage: SampleState | None = None

    def new_rng(self) -> np.random.Generator:
        """An independent generator for one action, reproducible from the stage's seed."""
        with self._rng_lock:
            (child,) = self._seed_sequence.spawn(1)
        return np.random.default_rng(child)

    def require_sample(self) -> SampleState:
        """The sample on the stage; a measurement before any synthesis is an error."""
        if self.sample_on_stage is None:
            raise RuntimeError("no sample on the stage: synthesise one with the reactor first")
        return self.sample_on_stage
