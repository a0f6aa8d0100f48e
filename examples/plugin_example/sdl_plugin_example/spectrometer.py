"""A simulated scanning UV-Vis spectrophotometer: a film's absorbance spectrum, with noise.

The film on a glass slide is measured in transmission against a bare slide, so the absorbance
is the film's, A = alpha d / ln 10, plus what no absorption model holds: reflection at the
film's surfaces (a flat offset of a few hundredths, drawn per measurement), stray light (a
fraction of the beam reaching the detector whatever the sample, which caps the absorbance near
-log10(stray)) and photometric noise, constant in transmittance, so that in absorbance it grows
as 10^A (sigma_A = sigma_T 10^A / ln 10). The numbers are those of a bench double-beam
instrument's specification sheet (photometric noise ~1e-4 A at 0 A, stray light ~1e-4).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sdl_plugin_example.film import PerovskiteFilmSample
from sdl_plugin_example.optics import HC_EV_NM, absorption_coefficient_per_cm


@dataclass(frozen=True)
class UVVisInstrument:
    """Settings of a simulated spectrophotometer.

    Attributes
    ----------
    wavelength_range_nm
        First and last wavelength of the scan, nm: from 350 nm (below that the glass slide
        absorbs) to 1100 nm (the silicon detector's limit).
    step_nm
        Wavelength step, nm.
    transmittance_noise
        Standard deviation of one transmittance reading, as a fraction of the beam.
    stray_light
        Fraction of the beam that reaches the detector whatever the sample absorbs.
    reflection_loss
        Range of the flat absorbance offset from reflection at the film's surfaces.
    scan_rate_nm_per_s
        Speed of the monochromator's scan, nm/s.
    overhead_s
        Sample change and lamp settling per measurement, s.
    """

    wavelength_range_nm: tuple[float, float] = (350.0, 1100.0)
    step_nm: float = 1.0
    transmittance_noise: float = 3e-4
    stray_light: float = 1e-4
    reflection_loss: tuple[float, float] = (0.02, 0.06)
    scan_rate_nm_per_s: float = 10.0
    overhead_s: float = 15.0

    def __post_init__(self) -> None:
        first, last = self.wavelength_range_nm
        if not 0 < first < last:
            raise ValueError(
                f"wavelength_range_nm must satisfy 0 < first < last, got {first, last}"
            )
        if not 0 < self.step_nm < last - first:
            raise ValueError(f"step_nm must lie in (0, {last - first}) nm, got {self.step_nm}")

    @property
    def wavelength_nm(self) -> np.ndarray:
        """The scan's wavelengths, nm, ascending."""
        first, last = self.wavelength_range_nm
        return np.arange(first, last + self.step_nm / 2, self.step_nm)

    def absorbance(self, sample: PerovskiteFilmSample, rng: np.random.Generator) -> np.ndarray:
        """The absorbance the instrument reports for this film, one value per wavelength."""
        energy_ev = HC_EV_NM / self.wavelength_nm
        alpha_per_cm = sample.perovskite_fraction * absorption_coefficient_per_cm(
            energy_ev, sample.band_gap_ev, sample.urbach_energy_mev
        )
        film_absorbance = alpha_per_cm * sample.thickness_nm * 1e-7 / np.log(10)
        offset = rng.uniform(*self.reflection_loss)
        transmittance = 10.0 ** -(film_absorbance + offset)
        seen = (transmittance + self.stray_light) / (1 + self.stray_light)
        seen = seen + rng.normal(0.0, self.transmittance_noise, seen.shape)
        # A reading at or below zero transmittance is the detector's floor, not a number.
        return -np.log10(np.clip(seen, self.transmittance_noise / 10, None))

    def duration_s(self) -> float:
        """Instrument time of one scan, s."""
        first, last = self.wavelength_range_nm
        span_nm = last - first
        return span_nm / self.scan_rate_nm_per_s + self.overhead_s
