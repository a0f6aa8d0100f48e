"""Crystal structures of the TiO2 polymorphs: composition, density and known Bragg angles."""

from __future__ import annotations

import pytest
from pymatgen.analysis.diffraction.xrd import XRDCalculator

from physics.phases import TIO2_POLYMORPHS
from physics.structures import get_structure


def strongest_lines_deg(phase, n):
    pattern = XRDCalculator(wavelength=1.5406).get_pattern(
        get_structure(phase), two_theta_range=(10, 80)
    )
    by_intensity = sorted(zip(pattern.y, pattern.x, strict=True), reverse=True)
    return [two_theta for _, two_theta in by_intensity[:n]]


@pytest.mark.parametrize(
    ("phase", "space_group", "density_g_cm3"),
    [("anatase", 141, 3.89), ("rutile", 136, 4.25), ("brookite", 61, 4.12)],
)
def test_structure_is_tio2_with_the_literature_space_group_and_density(
    phase, space_group, density_g_cm3
):
    structure = get_structure(phase)
    assert structure.composition.reduced_formula == "TiO2"
    assert structure.get_space_group_info()[1] == space_group
    assert structure.density == pytest.approx(density_g_cm3, abs=0.02)


@pytest.mark.parametrize("phase", TIO2_POLYMORPHS)
def test_titanium_is_octahedrally_coordinated_at_ti_o_bond_lengths(phase):
    structure = get_structure(phase)
    titanium = next(site for site in structure if site.specie.symbol == "Ti")
    neighbours = structure.get_neighbors(titanium, 2.2)
    assert len(neighbours) == 6
    assert all(1.85 < n.nn_distance < 2.06 for n in neighbours)


@pytest.mark.parametrize(
    ("phase", "two_theta_deg"),
    [("anatase", 25.3), ("rutile", 27.4), ("rutile", 36.1), ("brookite", 30.8)],
)
def test_strong_reflections_sit_at_their_known_bragg_angles(phase, two_theta_deg):
    lines = strongest_lines_deg(phase, 3)
    assert min(abs(line - two_theta_deg) for line in lines) < 0.1


def test_strongest_line_of_anatase_is_101():
    pattern = XRDCalculator(wavelength=1.5406).get_pattern(get_structure("anatase"))
    strongest = max(range(len(pattern.y)), key=lambda i: pattern.y[i])
    assert pattern.hkls[strongest][0]["hkl"] == (1, 0, 1)


def test_returned_structure_is_a_copy_the_caller_may_change():
    get_structure("rutile").scale_lattice(100.0)
    assert get_structure("rutile").volume == pytest.approx(4.594**2 * 2.959)


def test_unknown_phase_is_refused_naming_the_known_ones():
    with pytest.raises(ValueError, match="anatase.*brookite.*rutile"):
        get_structure("quartz")
