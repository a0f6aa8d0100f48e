"""The magnetometer: trigger a measurement of the sample on the stage, read its polarisation."""

from __future__ import annotations

from typing import Any

from ophyd import Component as Cpt
from ophyd import Device
from ophyd.status import StatusBase

from devices.signals import MeasuredSignal
from devices.sim_lab import SimulatedLab
from simulators.magnetometer import VibratingSampleMagnetometer


class Magnetometer(Device):
    """Saturation polarisation mu0 Ms of a sample per trigger, with its standard error."""

    polarisation_t = Cpt(MeasuredSignal, value=0.0, units="T", kind="hinted")
    polarisation_t_std = Cpt(MeasuredSignal, value=0.0, units="T", kind="normal")
    measurement_time_s = Cpt(MeasuredSignal, value=0.0, units="s", kind="normal")


class SimulatedMagnetometer(Magnetometer):
    """A magnetometer whose readings come from :class:`VibratingSampleMagnetometer`."""

    def __init__(
        self,
        *args: Any,
        lab: SimulatedLab,
        instrument: VibratingSampleMagnetometer | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._lab = lab
        self.instrument = instrument or VibratingSampleMagnetometer()

    def trigger(self) -> StatusBase:
        def measure() -> float:
            self._lab.faults.begin_action(self.name)
            reading = self.instrument.measure(self._lab.require_sample(), self._lab.new_rng())
            duration_s = self.instrument.duration_s()
            self.polarisation_t.put(reading.polarisation_t)
            self.polarisation_t_std.put(reading.polarisation_t_std)
            self.measurement_time_s.put(duration_s)
            return duration_s

        return self._lab.run_action(self, measure, f"{self.name} measurement")
