"""The whole-pattern fit keeps only the phases a pattern needs, and says how far to trust it."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.polynomial import chebyshev
from pymatgen.core import Lattice, Structure

from physics.diffraction import (
    CU_KALPHA1_ANGSTROM,
    CU_KALPHA2_ANGSTROM,
    caglioti_fwhm2_deg2,
    scherrer_fwhm_deg,
)
from physics.structures import get_structure, reflections_per_weight_fraction
from sdl.analysis.xrd.instrument import render_humps, render_phase
from sdl.analysis.xrd.reference import (
    ReferencePhase,
    amorphous_tio2_humps,
    library_from_structures,
)
from sdl.analysis.xrd.whole_pattern import analyse_pattern
from simulators.sample import SampleState
from simulators.xrd import PowderDiffractometer

TWO_THETA = np.linspace(10.0, 80.0, 2048)
TIO2 = library_from_structures({p: get_structure(p) for p in ("anatase", "rutile")})


def simulated(fractions, sizes_nm, seed, flux=1000.0, exposure_s=0.5):
    instrument = PowderDiffractometer(reference_line_cps_deg=flux)
    sample = SampleState("s", {}, fractions, sizes_nm)
    counts = instrument.measure(sample, np.random.default_rng(seed), exposure_s)
    return instrument.two_theta_deg, counts


def lorentzian_lines(phase, size_nm):
    """Pure Lorentzian K-alpha doublets on a broader Caglioti: not the fit's peak shape."""
    two_theta, _, intensity = reflections_per_weight_fraction(
        get_structure(phase), CU_KALPHA1_ANGSTROM, (5.0, 85.0)
    )
    d_spacing = CU_KALPHA1_ANGSTROM / (2 * np.sin(np.radians(two_theta / 2)))
    profile = np.zeros_like(TWO_THETA)
    for wavelength, ratio in ((CU_KALPHA1_ANGSTROM, 1.0), (CU_KALPHA2_ANGSTROM, 0.5)):
        centre = np.degrees(2 * np.arcsin(wavelength / (2 * d_spacing)))
        fwhm = np.sqrt(caglioti_fwhm2_deg2(centre, 0.008, -0.004, 0.006))
        fwhm = fwhm + scherrer_fwhm_deg(size_nm, centre, wavelength)
        half = fwhm[:, None] / 2
        lines = half / np.pi / ((TWO_THETA - centre[:, None]) ** 2 + half**2)
        profile += ratio * intensity @ lines
    return profile


def lorentzian_pattern(fractions, sizes_nm, seed):
    """Counts of a mixture of Lorentzian-line phases on a power-law background."""
    signal = sum(w * lorentzian_lines(p, sizes_nm[p]) for p, w in fractions.items())
    expected = 4000.0 * signal / signal.max() + 60.0 + 150.0 * (20.0 / TWO_THETA) ** 2
    return TWO_THETA, np.random.default_rng(seed).poisson(expected).astype(float)


@pytest.mark.parametrize(
    "pattern",
    [
        *(
            simulated(
                {"anatase": 0.6, "rutile": 0.25, "amorphous": 0.15},
                {"anatase": 12.0, "rutile": 40.0},
                seed,
            )
            for seed in range(3)
        ),
        *(
            lorentzian_pattern(
                {"anatase": 0.7, "rutile": 0.3}, {"anatase": 15.0, "rutile": 50.0}, seed
            )
            for seed in (3, 4)
        ),
    ],
)
def test_absent_brookite_is_not_invented(pattern):
    features = analyse_pattern(*pattern)
    assert features.phase_fractions["brookite"] == 0.0
    assert features.phase_fractions["anatase"] > 0.5


@pytest.mark.parametrize(
    "pattern",
    [
        simulated({"anatase": 0.97, "rutile": 0.03}, {"anatase": 30.0, "rutile": 40.0}, 5, 3000.0),
        lorentzian_pattern({"anatase": 0.97, "rutile": 0.03}, {"anatase": 30.0, "rutile": 40.0}, 6),
    ],
)
def test_three_percent_phase_with_enough_counts_is_kept(pattern):
    features = analyse_pattern(*pattern)
    assert features.phase_fractions["rutile"] == pytest.approx(0.03, abs=0.015)
    assert features.detection_limit["rutile"] < 0.03
    assert features.phase_fractions["brookite"] == 0.0


def test_a_phase_held_at_the_lower_size_bound_is_dropped_or_flagged():
    """A broad unmodelled hump under rutile's strongest line invites a 1.5 nm phase."""
    instrument = PowderDiffractometer()
    hump = 20.0 * np.exp(-0.5 * ((instrument.two_theta_deg - 27.4) / 2.5) ** 2)
    expected = instrument.ideal_pattern({"anatase": 1.0}, {"anatase": 30.0}) + hump
    counts = np.random.default_rng(0).poisson(expected).astype(float)
    features = analyse_pattern(instrument.two_theta_deg, counts)
    at_bound = [
        phase
        for phase in ("anatase", "brookite", "rutile")
        if features.phase_fractions[phase] > 0 and features.crystallite_size_nm[phase] < 2.25
    ]
    for phase in at_bound:
        assert f"{phase}_size_at_bound" in features.fit_flags
    assert features.crystallite_size_nm["anatase"] == pytest.approx(30.0, rel=0.1)


def own_model_pattern(seed, extra=None):
    """Counts from the fit's own renderer: anatase, rutile, the hump and a Chebyshev background."""
    signal = (
        0.6 * render_phase(TIO2["anatase"], TWO_THETA, 20.0)
        + 0.3 * render_phase(TIO2["rutile"], TWO_THETA, 50.0)
        + 0.1 * render_humps(amorphous_tio2_humps(), TWO_THETA)
    )
    if extra is not None:
        signal = signal + extra
    background = chebyshev.chebval(np.linspace(-1, 1, TWO_THETA.size), [80.0, -30.0, 10.0])
    expected = 3000.0 * signal / signal.max() + background
    return TWO_THETA, np.random.default_rng(seed).poisson(expected).astype(float)


@pytest.mark.parametrize("seed", [0, 1])
def test_reduced_chi_square_is_one_for_the_fits_own_model(seed):
    features = analyse_pattern(*own_model_pattern(seed))
    assert features.reduced_chi2 == pytest.approx(1.0, abs=0.1)
    assert features.fit_flags == ()
    assert features.as_dict()["xrd_poor_fit"] == 0.0
    assert features.as_dict()["xrd_reduced_chi2"] == features.reduced_chi2


def test_a_pattern_the_model_cannot_fit_is_flagged_poor():
    """Lines of a phase outside the library (rock-salt NiO) cannot be explained."""
    nio = ReferencePhase.from_structure(
        "NiO",
        Structure.from_spacegroup(
            "Fm-3m", Lattice.cubic(4.1771), ["Ni", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]
        ),
    )
    features = analyse_pattern(
        *own_model_pattern(2, extra=0.3 * render_phase(nio, TWO_THETA, 40.0))
    )
    assert features.reduced_chi2 > 2.0
    assert "poor_fit" in features.fit_flags
    assert features.as_dict()["xrd_poor_fit"] == 1.0


def test_detection_limit_is_reported_and_falls_with_counting_time():
    fractions, sizes = {"anatase": 1.0}, {"anatase": 30.0}
    short = analyse_pattern(*simulated(fractions, sizes, 7, flux=300.0, exposure_s=0.5))
    long = analyse_pattern(*simulated(fractions, sizes, 7, flux=300.0, exposure_s=5.0))
    for phase in ("brookite", "rutile", "amorphous"):
        assert 0.0 < long.detection_limit[phase] < short.detection_limit[phase] < 0.2
        # Ten times the counting time: a limit set by counting noise falls as 1 / sqrt(10).
        ratio = long.detection_limit[phase] / short.detection_limit[phase]
        assert ratio == pytest.approx(10**-0.5, rel=0.25)
        assert short.as_dict()[f"{phase}_detection_limit"] == short.detection_limit[phase]
