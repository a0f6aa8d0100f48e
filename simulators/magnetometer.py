"""A vibrating-sample magnetometer: the saturation polarisation of a sample, with noise.

The sample is driven to saturation and its moment is read ``n_sweeps`` times; each reading
scatters by a relative calibration noise and an absolute noise floor (Foner, Rev. Sci.
Instrum. 30 (1959) 548, for the method). The instrument reports the mean and its standard
error, so the uncertainty comes from the data, not from the simulator's truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulators.sample import SampleState


@dataclass(frozen=True)
class MagnetometerReading:
    """Mean saturation polarisation mu0 Ms of the sweeps and its standard error, tesla."""

    polarisation_t: float
    polarisation_t_std: float


@dataclass(frozen=True)
class VibratingSampleMagnetometer:
    """Settings of a simulated VSM.

    Attributes
    ----------
    n_sweeps
        Field sweeps to saturation per measurement.
    relative_noise
        Relative scatter of one sweep (sample mounting, calibration).
    noise_floor_t
        Absolute scatter of one sweep, tesla (pick-up coil noise).
    sweep_s
        Instrument time per sweep, s.
    """

    n_sweeps: int = 5
    relative_noise: float = 0.02
    noise_floor_t: float = 0.01
    sweep_s: float = 120.0

    def __post_init__(self) -> None:
        if self.n_sweeps < 2:
            raise ValueError(f"n_sweeps must be >= 2 to estimate an error, got {self.n_sweeps}")

    def measure(self, sample: SampleState, rng: np.random.Generator) -> MagnetometerReading:
        """The mean of ``n_sweeps`` noisy readings of the sample's saturation polarisation."""
        sigma_t = np.hypot(self.relative_noise * sample.polarisation_t, self.noise_floor_t)
        sweeps = sample.polarisation_t + rng.normal(0.0, sigma_t, self.n_sweeps)
        return MagnetometerReading(
            polarisation_t=float(sweeps.mean()),
            polarisation_t_std=float(sweeps.std(ddof=1) / np.sqrt(self.n_sweeps)),
        )

    def duration_s(self) -> float:
        """Instrument time of one measurement, s."""
        return self.n_sweeps * self.sweep_s
