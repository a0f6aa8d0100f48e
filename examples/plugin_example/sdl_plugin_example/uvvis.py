"""The UV-Vis spectrometer as an sdl instrument: its device, simulated device and plug-in.

Named ``uvvis`` in a campaign, its readings are ``uvvis_wavelength_nm``, ``uvvis_absorbance``
and ``uvvis_measurement_time_s`` (instrument time), and its analysis step
(:func:`sdl_plugin_example.tauc.analyse_spectrum`) turns them into the band gap, the Urbach
energy and the peak absorbance of the film.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from devices.signals import MeasuredSignal
from devices.sim_lab import SimulatedLab
from ophyd import Component as Cpt
from ophyd import Device
from ophyd.status import StatusBase
from sdl.plugins import InstrumentPlugin

from sdl_plugin_example.film import PerovskiteFilmSample
from sdl_plugin_example.spectrometer import UVVisInstrument
from sdl_plugin_example.tauc import analyse_spectrum


class UVVisSpectrometer(Device):
    """A UV-Vis absorption spectrometer: one transmission scan per trigger, as absorbance."""

    wavelength_nm = Cpt(MeasuredSignal, value=np.zeros(0), units="nm", kind="normal")
    absorbance = Cpt(MeasuredSignal, value=np.zeros(0), units="", kind="normal")
    measurement_time_s = Cpt(MeasuredSignal, value=0.0, units="s", kind="normal")


class SimulatedUVVis(UVVisSpectrometer):
    """A UV-Vis spectrometer whose spectra come from :class:`UVVisInstrument`.

    ``raw_dir`` is accepted because sdl hands every plug-in device one; a spectrum is small
    enough to travel in the event itself, so nothing is written there.
    """

    def __init__(
        self,
        *args: Any,
        lab: SimulatedLab,
        raw_dir: Path | None = None,
        instrument: UVVisInstrument | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._lab = lab
        self.raw_dir = raw_dir
        self.instrument = instrument or UVVisInstrument()
        # Shapes are known before the first scan, so describe() is right from the start.
        self.wavelength_nm.put(self.instrument.wavelength_nm)
        self.absorbance.put(np.zeros_like(self.instrument.wavelength_nm))

    def trigger(self) -> StatusBase:
        def scan() -> float:
            self._lab.faults.begin_action(self.name)
            sample = self._lab.require_sample()
            if not isinstance(sample, PerovskiteFilmSample):
                raise TypeError(
                    f"{self.name} measures perovskite films (system perovskite_film), "
                    f"got a {type(sample).__name__}"
                )
            absorbance = self.instrument.absorbance(sample, self._lab.new_rng())
            duration_s = self.instrument.duration_s()
            self.absorbance.put(absorbance)
            self.measurement_time_s.put(duration_s)
            return duration_s

        return self._lab.run_action(self, scan, f"{self.name} scan")


UVVIS = InstrumentPlugin(
    name="uvvis",
    features=("band_gap_ev", "urbach_energy_mev", "absorbance_max"),
    simulated=SimulatedUVVis,
    analyse=analyse_spectrum,
    description="UV-Vis absorption of a thin film: Tauc band gap, Urbach energy, peak absorbance",
)
