"""The powder X-ray diffractometer: trigger a scan of the sample on the stage, read a pattern."""

from __future__ import annotations

from typing import Any

import numpy as np
from ophyd import Component as Cpt
from ophyd import Device
from ophyd.status import StatusBase

from devices.signals import LimitedSignal, MeasuredSignal
from devices.sim_lab import SimulatedLab
from simulators.xrd import EXPOSURE_LIMITS_S, EXPOSURE_S, PowderDiffractometer


class Diffractometer(Device):
    """A powder diffractometer: one 2-theta scan per trigger, read as two 1-D arrays."""

    two_theta = Cpt(MeasuredSignal, value=np.zeros(0), units="deg", kind="normal")
    counts = Cpt(MeasuredSignal, value=np.zeros(0), units="counts", kind="normal")
    scan_time_s = Cpt(MeasuredSignal, value=0.0, units="s", kind="normal")
    exposure_s = Cpt(
        LimitedSignal, limits=EXPOSURE_LIMITS_S, units="s", value=EXPOSURE_S, kind="config"
    )


class SimulatedDiffractometer(Diffractometer):
    """A diffractometer whose patterns come from :class:`simulators.xrd.PowderDiffractometer`."""

    def __init__(
        self,
        *args: Any,
        lab: SimulatedLab,
        instrument: PowderDiffractometer | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._lab = lab
        self.instrument = instrument or PowderDiffractometer()
        # Shapes are known before the first scan, so describe() is right from the start.
        self.two_theta.put(self.instrument.two_theta_deg)
        self.counts.put(np.zeros_like(self.instrument.two_theta_deg))

    def trigger(self) -> StatusBase:
        exposure_s = float(self.exposure_s.get())

        def scan() -> float:
            struck = self._lab.faults.begin_action(self.name)
            sample = self._lab.require_sample()
            counts = self.instrument.measure(sample, self._lab.new_rng(), exposure_s=exposure_s)
            counts = self._lab.faults.pattern(struck, self.instrument.two_theta_deg, counts)
            duration_s = self.instrument.duration_s(exposure_s=exposure_s)
            self.counts.put(counts)
            self.scan_time_s.put(duration_s)
            return duration_s

        return self._lab.run_action(self, scan, f"{self.name} scan")
