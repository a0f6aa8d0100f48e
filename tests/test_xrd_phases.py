"""Phase identification and quantification against a library computed from crystal structures."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from physics.diffraction import CU_KALPHA1_ANGSTROM, bragg_two_theta_deg
from physics.phases import TIO2_POLYMORPHS
from physics.structures import get_structure
from sdl.analysis.xrd.instrument import render_phase
from sdl.analysis.xrd.quantify import quantify_phases
from sdl.analysis.xrd.reference import ReferencePhase, library_from_structures
from simulators.sample import SampleState
from simulators.xrd import PowderDiffractometer

TIO2 = library_from_structures({p: get_structure(p) for p in TIO2_POLYMORPHS})


def rock_salt(a):
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(a), ["Ni", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


#: Oxides with nothing of TiO2 in them: rock-salt NiO and MgO, wurtzite ZnO, corundum Al2O3.
OXIDE_STRUCTURES = {
    "NiO": rock_salt(4.1771),
    "MgO": Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(4.212), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    ),
    "ZnO": Structure.from_spacegroup(
        "P6_3mc",
        Lattice.hexagonal(3.2498, 5.2066),
        ["Zn", "O"],
        [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.382]],
    ),
    "Al2O3": Structure.from_spacegroup(
        "R-3c",
        Lattice.hexagonal(4.759, 12.991),
        ["Al", "O"],
        [[0, 0, 0.35216], [0.30624, 0, 0.25]],
    ),
}

#: Their library.
OXIDES = library_from_structures(OXIDE_STRUCTURES)


def test_reference_intensities_per_weight_fraction_follow_hill_and_howard():
    """The same structure with a doubled cell has the same intensity per unit weight."""
    single = ReferencePhase.from_structure("NiO", rock_salt(4.1771))
    double = rock_salt(4.1771)
    double.make_supercell([2, 1, 1])
    doubled = ReferencePhase.from_structure("NiO", double)
    assert doubled.intensity.max() == pytest.approx(single.intensity.max(), rel=1e-6)


def test_rendered_profile_has_lines_at_the_bragg_angles():
    nio = OXIDES["NiO"]
    two_theta = np.linspace(30, 50, 4001)
    profile = render_phase(nio, two_theta, 100.0)
    # NiO (200): d = a/2, 2 theta = 43.29 deg for Cu K-alpha1.
    expected = bragg_two_theta_deg(4.1771 / 2, CU_KALPHA1_ANGSTROM)
    assert two_theta[np.argmax(profile)] == pytest.approx(expected, abs=0.01)
    shifted = render_phase(nio, two_theta, 100.0, zero_shift_deg=0.1, lattice_strain=-0.002)
    assert two_theta[np.argmax(shifted)] > expected + 0.15


def mixture(library, fractions, sizes_nm, seed, zero_shift_deg=0.0, strains=None):
    """Poisson counts of a mixture: weight-fraction-weighted reference profiles on a background."""
    two_theta = np.linspace(15.0, 80.0, 3000)
    strains = strains or {}
    signal = sum(
        fraction
        * render_phase(
            library[name],
            two_theta,
            sizes_nm[name],
            zero_shift_deg=zero_shift_deg,
            lattice_strain=strains.get(name, 0.0),
        )
        for name, fraction in fractions.items()
    )
    expected = 300.0 * np.exp(-two_theta / 40.0) + 50.0 + 5000.0 * signal / signal.max()
    return two_theta, np.random.default_rng(seed).poisson(expected).astype(float)


def test_a_library_of_other_oxides_is_identified_and_quantified():
    fractions = {"NiO": 0.3, "ZnO": 0.5, "Al2O3": 0.2}
    sizes = {"NiO": 40.0, "ZnO": 80.0, "Al2O3": 150.0}
    two_theta, counts = mixture(
        OXIDES, fractions, sizes, seed=1, zero_shift_deg=0.08, strains={"ZnO": 0.002}
    )
    result = quantify_phases(two_theta, counts, OXIDES)
    assert set(result.present) == set(fractions)
    for name, fraction in fractions.items():
        assert result.weight_fractions[name] == pytest.approx(fraction, abs=0.03)
        assert 0 < result.weight_fractions_std[name] < 0.03
        assert result.crystallite_size_nm[name] == pytest.approx(sizes[name], rel=0.25)
    assert result.weight_fractions["MgO"] == 0.0
    assert math.isnan(result.crystallite_size_nm["MgO"])
    assert result.lattice_strain["ZnO"] == pytest.approx(0.002, abs=5e-4)
    assert result.zero_shift_deg == pytest.approx(0.08, abs=0.03)
    assert sum(result.weight_fractions.values()) == pytest.approx(1.0)


def test_tio2_polymorphs_from_the_simulator_with_overlapping_lines_and_zero_shift():
    """Anatase (101) and brookite (120)/(111) overlap near 25.3 deg; brookite must still count."""
    instrument = PowderDiffractometer(zero_shift_deg=-0.12)
    sample = SampleState(
        "s",
        {},
        {"anatase": 0.6, "brookite": 0.25, "rutile": 0.15},
        {"anatase": 20.0, "brookite": 15.0, "rutile": 50.0},
    )
    counts = instrument.measure(sample, np.random.default_rng(2))
    result = quantify_phases(instrument.two_theta_deg, counts, TIO2)
    assert set(result.present) == {"anatase", "brookite", "rutile"}
    for name, fraction in sample.phase_fractions.items():
        assert result.weight_fractions[name] == pytest.approx(fraction, abs=0.04)
    assert result.zero_shift_deg == pytest.approx(-0.12, abs=0.03)
    assert result.crystallite_size_nm["rutile"] == pytest.approx(50.0, rel=0.2)


def test_absent_phases_are_rejected_in_a_single_phase_pattern():
    instrument = PowderDiffractometer()
    sample = SampleState("s", {}, {"rutile": 1.0}, {"rutile": 30.0})
    counts = instrument.measure(sample, np.random.default_rng(5))
    result = quantify_phases(instrument.two_theta_deg, counts, TIO2)
    assert result.present == ("rutile",)
    assert result.weight_fractions["rutile"] == pytest.approx(1.0)


def test_empty_library_is_refused():
    with pytest.raises(ValueError, match="empty"):
        quantify_phases(np.linspace(10, 80, 100), np.ones(100), {})
