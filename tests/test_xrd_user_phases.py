"""A campaign's own phases from CIF files: the whole-pattern fit, the campaign file, the pipeline.

The mixtures are rendered here with another forward model than the fit's (Pearson VII lines
instead of Thompson-Cox-Hastings pseudo-Voigts, widths added in quadrature, another
instrument broadening and K-alpha2 ratio, a zero shift and a curved background), from the
line lists of :func:`physics.structures.reflections_per_weight_fraction`, so a good score is
not the fit recognising its own profiles.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from pymatgen.io.cif import CifWriter
from test_xrd_phases import OXIDE_STRUCTURES

from physics.diffraction import (
    CU_KALPHA1_ANGSTROM,
    CU_KALPHA2_ANGSTROM,
    bragg_two_theta_deg,
    scherrer_fwhm_deg,
)
from physics.structures import reflections_per_weight_fraction
from sdl.analysis.pipeline import Measurements, SampleAnalysis, fit_pattern
from sdl.analysis.xrd.reference import ReferencePhase
from sdl.analysis.xrd.user_phases import XRDPhases
from sdl.analysis.xrd.whole_pattern import analyse_pattern
from sdl.campaign.config import AnalysisConfig, parse_campaign
from sdl.campaign.schema import CampaignConfigError
from sdl.lab.stations import build_analysis

EXAMPLE = Path(__file__).parent.parent / "examples" / "tio2_bo.yaml"

#: Oxides with nothing of TiO2 in them, under the names a user would give them.
STRUCTURES = {
    "corundum": OXIDE_STRUCTURES["Al2O3"],
    "periclase": OXIDE_STRUCTURES["MgO"],
    "zincite": OXIDE_STRUCTURES["ZnO"],
}

#: The test diffractometer: not the fit's default instrument.
TWO_THETA_DEG = np.arange(15.0, 80.0, 0.02)
_CAGLIOTI_UVW = (0.008, -0.004, 0.006)
_KALPHA2_RATIO = 0.52
_PEARSON_M = 2.0
_ZERO_SHIFT_DEG = 0.04

#: How close a fitted weight fraction must come to the truth on these patterns (another
#: profile shape than the fit's costs about 0.01).
TOLERANCE = 0.03


def write_cifs(directory: Path, names=tuple(STRUCTURES)) -> dict[str, Path]:
    paths = {}
    for name in names:
        paths[name] = directory / f"{name}.cif"
        CifWriter(STRUCTURES[name], symprec=0.01).write_file(paths[name])
    return paths


def pearson_vii(x: np.ndarray, centre: float, fwhm: float) -> np.ndarray:
    """A unit-area Pearson VII line."""
    m = _PEARSON_M
    k = 2.0 ** (1.0 / m) - 1.0
    norm = math.gamma(m) * 2.0 * math.sqrt(k) / (math.gamma(m - 0.5) * math.sqrt(math.pi) * fwhm)
    return norm * (1.0 + 4.0 * k * ((x - centre) / fwhm) ** 2) ** -m


def render(name: str, size_nm: float, amorphous: bool = False) -> np.ndarray:
    """A phase's profile per unit weight fraction on the test diffractometer."""
    _, d_spacing, intensity = reflections_per_weight_fraction(
        STRUCTURES[name], CU_KALPHA1_ANGSTROM, (5.0, 120.0)
    )
    profile = np.zeros_like(TWO_THETA_DEG)
    for wavelength, ratio in ((CU_KALPHA1_ANGSTROM, 1.0), (CU_KALPHA2_ANGSTROM, _KALPHA2_RATIO)):
        centres = bragg_two_theta_deg(d_spacing, wavelength) + _ZERO_SHIFT_DEG
        tan = np.tan(np.radians(centres / 2))
        u, v, w = _CAGLIOTI_UVW
        instrument = np.sqrt(u * tan**2 + v * tan + w)
        size = scherrer_fwhm_deg(size_nm, centres, wavelength)
        for centre, area, fwhm in zip(centres, intensity, np.hypot(instrument, size), strict=True):
            profile += ratio * area * pearson_vii(TWO_THETA_DEG, centre, fwhm)
    return profile


def mixture(fractions: dict[str, float], sizes_nm: dict[str, float], seed: int) -> np.ndarray:
    """Poisson counts of a mixture of these weight fractions (1 nm for ``"glass"``)."""
    signal = sum(fractions[name] * render(name, sizes_nm[name]) for name in fractions)
    background = 400.0 * np.exp(-TWO_THETA_DEG / 25.0) + 80.0
    expected = background + 8000.0 * signal / signal.max()
    return np.random.default_rng(seed).poisson(expected).astype(float)


@pytest.fixture(scope="module")
def references() -> dict[str, ReferencePhase]:
    return {name: ReferencePhase.from_structure(name, s) for name, s in STRUCTURES.items()}


def test_a_mixture_of_phases_from_structures_is_quantified_and_an_absent_one_not_reported(
    references,
):
    fractions = {"corundum": 0.5, "zincite": 0.5}
    counts = mixture(fractions, {"corundum": 80.0, "zincite": 40.0}, seed=3)
    fit = analyse_pattern(TWO_THETA_DEG, counts, list(references.values()), False)
    for name, fraction in fractions.items():
        assert fit.phase_fractions[name] == pytest.approx(fraction, abs=TOLERANCE)
    assert fit.phase_fractions["periclase"] == 0.0
    assert fit.zero_shift_deg == pytest.approx(_ZERO_SHIFT_DEG, abs=0.02)


def test_three_phases_with_a_minor_one(references):
    fractions = {"corundum": 0.25, "periclase": 0.1, "zincite": 0.65}
    sizes = {"corundum": 60.0, "periclase": 30.0, "zincite": 100.0}
    counts = mixture(fractions, sizes, seed=11)
    fit = analyse_pattern(TWO_THETA_DEG, counts, list(references.values()), False)
    for name, fraction in fractions.items():
        assert fit.phase_fractions[name] == pytest.approx(fraction, abs=TOLERANCE)


def test_calibration_factors_divide_the_scales_before_normalising(references):
    """A phase whose lines are measured twice as strong as computed (factor 2) counts half."""
    fractions = {"corundum": 0.5, "zincite": 0.5}
    counts = mixture(fractions, {"corundum": 80.0, "zincite": 40.0}, seed=3)
    plain = analyse_pattern(TWO_THETA_DEG, counts, list(references.values()), False)
    calibrated = analyse_pattern(
        TWO_THETA_DEG,
        counts,
        [references["corundum"].calibrated(2.0), references["zincite"]],
        False,
    )
    ratio = plain.phase_fractions["corundum"] / plain.phase_fractions["zincite"]
    assert calibrated.phase_fractions["corundum"] / calibrated.phase_fractions[
        "zincite"
    ] == pytest.approx(ratio / 2.0, rel=0.02)
    assert sum(calibrated.phase_fractions.values()) == pytest.approx(1.0)


def test_an_amorphous_component_is_reported_only_when_asked_and_needed(references):
    phases = [references["corundum"], references["zincite"]]
    crystalline = mixture({"corundum": 0.5, "zincite": 0.5}, {"corundum": 80.0, "zincite": 40.0}, 3)
    fit = analyse_pattern(TWO_THETA_DEG, crystalline, phases, True)
    assert fit.phase_fractions["amorphous"] == 0.0
    # Amorphous material of the phases' mean composition: their lines at 1 nm.
    glass = 0.5 * render("corundum", 1.0) + 0.5 * render("zincite", 1.0)
    signal = 0.35 * glass + 0.3 * render("corundum", 80.0) + 0.35 * render("zincite", 40.0)
    background = 400.0 * np.exp(-TWO_THETA_DEG / 25.0) + 80.0
    counts = np.random.default_rng(4).poisson(background + 8000.0 * signal / signal.max())
    fit = analyse_pattern(TWO_THETA_DEG, counts.astype(float), phases, True)
    assert fit.phase_fractions["amorphous"] == pytest.approx(0.35, abs=0.1)
    assert fit.phase_fractions["zincite"] == pytest.approx(0.35, abs=0.1)


def test_a_user_phase_must_not_be_called_amorphous(references):
    renamed = ReferencePhase("amorphous", references["zincite"].d_spacing_angstrom, np.ones(3))
    with pytest.raises(ValueError, match="amorphous component"):
        analyse_pattern(TWO_THETA_DEG, np.ones_like(TWO_THETA_DEG), [renamed])


def test_phases_from_cif_files_feed_the_pipeline_fit(tmp_path):
    cifs = write_cifs(tmp_path)
    phases = XRDPhases.from_files([(name, path, 1.0) for name, path in cifs.items()])
    counts = mixture({"periclase": 0.3, "zincite": 0.7}, {"periclase": 50.0, "zincite": 50.0}, 5)
    fit = fit_pattern(TWO_THETA_DEG, counts, phases)
    assert fit.phase_fractions["periclase"] == pytest.approx(0.3, abs=TOLERANCE)
    assert fit.phase_fractions["corundum"] == 0.0
    assert fit.features["zincite_fraction"] == pytest.approx(0.7, abs=TOLERANCE)
    # What a run records rebuilds the same phases, the files gone.
    for path in cifs.values():
        path.unlink()
    again = fit_pattern(TWO_THETA_DEG, counts, XRDPhases.from_dict(phases.as_dict()))
    assert again.phase_fractions == fit.phase_fractions


def test_the_campaign_file_takes_phases_from_cif_files(tmp_path):
    cifs = write_cifs(tmp_path)
    config = AnalysisConfig.model_validate(
        {
            "xrd_phases": [
                {"name": "corundum", "cif": str(cifs["corundum"]), "calibration_factor": 1.2},
                {"name": "zincite", "cif": str(cifs["zincite"])},
            ],
            "xrd_amorphous": True,
        }
    )
    phases = config.xrd_phase_set()
    assert phases is not None
    assert phases.names == ("corundum", "zincite")
    assert phases.amorphous
    assert [p.calibration_factor for p in phases.references] == [1.2, 1.0]
    assert config.phases(("anatase",)) == ("corundum", "zincite")
    assert AnalysisConfig().xrd_phase_set() is None
    assert AnalysisConfig().phases(("anatase", "rutile")) == ("anatase", "rutile")


def example_campaign(**analysis) -> dict:
    """The example TiO2 campaign with these analysis settings."""
    campaign = yaml.safe_load(EXAMPLE.read_text())
    campaign["analysis"] = analysis
    return campaign


def refusal(**analysis) -> str:
    with pytest.raises(CampaignConfigError) as error:
        parse_campaign(example_campaign(**analysis))
    return str(error.value)


@pytest.mark.parametrize(
    ("phases", "expected"),
    [
        ([{"name": "corundum", "cif": "missing.cif"}], r"xrd_phases.0.cif.*no such file"),
        ([{"name": "corundum", "cif": "bad.cif"}], r"xrd_phases.0.cif.*bad.cif.*not a CIF"),
        (
            [
                {"name": "corundum", "cif": "corundum.cif"},
                {"name": "corundum", "cif": "zincite.cif"},
            ],
            r"xrd_phases.1.name.*'corundum' is named twice",
        ),
        (
            [{"name": "corundum", "cif": "corundum.cif", "calibration_factor": 0}],
            r"xrd_phases.0.calibration_factor.*greater than 0",
        ),
        ([{"name": "amorphous", "cif": "corundum.cif"}], r"xrd_phases.0.name.*xrd_amorphous"),
        ([{"name": "Al 2O3", "cif": "corundum.cif"}], r"xrd_phases.0.name"),
    ],
)
def test_the_campaign_file_refuses_bad_phases(tmp_path, monkeypatch, phases, expected):
    monkeypatch.chdir(tmp_path)
    write_cifs(tmp_path)
    Path("bad.cif").write_text("data_nothing\n_cell_length_a 3\nloop_\n_atom_site_label\n")
    assert_refused(refusal(xrd_phases=phases), expected)


def assert_refused(message: str, expected: str) -> None:
    import re

    assert re.search(expected, message, re.DOTALL), message


def test_xrd_amorphous_without_phases_is_refused(tmp_path):
    assert_refused(refusal(xrd_amorphous=True), r"xrd_amorphous.*xrd_phases only")


def test_sample_analysis_of_a_campaign_fits_its_own_phases(tmp_path):
    cifs = write_cifs(tmp_path)
    campaign = example_campaign(
        xrd_phases=[{"name": name, "cif": str(path)} for name, path in cifs.items()]
    )
    campaign["objectives"] = [{"name": "zincite_fraction", "direction": "maximize"}]
    campaign["instruments"] = ["xrd"]
    config = parse_campaign(campaign)
    analysis = build_analysis(config)
    assert isinstance(analysis, SampleAnalysis)
    counts = mixture({"corundum": 0.4, "zincite": 0.6}, {"corundum": 70.0, "zincite": 60.0}, 8)
    features = analysis.features(Measurements(two_theta_deg=TWO_THETA_DEG, counts=counts))
    assert features["zincite_fraction"] == pytest.approx(0.6, abs=TOLERANCE)
    assert features["periclase_fraction"] == 0.0
    assert "anatase_fraction" not in features
    recorded = analysis.settings["xrd_phases"]
    assert [p["name"] for p in recorded["phases"]] == ["corundum", "periclase", "zincite"]
    assert recorded["amorphous"] is False


def test_reports_redraw_fits_with_the_phases_the_campaign_recorded(tmp_path):
    from sdl.records.vocabulary import PURPOSE, Purpose
    from sdl.views.campaign_log import CampaignLog

    cifs = write_cifs(tmp_path, ("periclase", "zincite"))
    phases = XRDPhases.from_files([(name, path, 1.0) for name, path in cifs.items()], True)
    log = CampaignLog("c")
    assert log.fitted_phases(("anatase",)) == ("anatase",)
    log.add_start({PURPOSE: Purpose.CAMPAIGN, "time": 0.0, "xrd_phases": phases.as_dict()})
    recorded = log.fitted_phases(("anatase",))
    assert isinstance(recorded, XRDPhases)
    assert recorded.names == ("periclase", "zincite") and recorded.amorphous


def test_own_phases_without_a_diffractometer_are_refused(tmp_path):
    cifs = write_cifs(tmp_path)
    campaign = example_campaign(xrd_phases=[{"name": "corundum", "cif": str(cifs["corundum"])}])
    campaign["instruments"] = ["microscope"]
    with pytest.raises(CampaignConfigError) as error:
        parse_campaign(campaign)
    assert_refused(str(error.value), r"analysis.xrd_phases.*has no xrd.*add xrd to instruments")
