"""An instrument calibrated on a standard: its breadths and zero, its file, and its use."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from sdl.analysis.pipeline import AnalysedRun, RawRun, SampleAnalysis
from sdl.analysis.xrd.calibration import InstrumentCalibration, calibrate, read_calibration
from sdl.analysis.xrd.instrument import ProfileShape
from sdl.campaign.config import CampaignConfigError, parse_campaign
from sdl.cli import main
from sdl.lab.stations import build_analysis
from sdl.loop.recording import DecisionRecorder
from sdl.views.campaign_log import CampaignLog
from simulators.xrd import PowderDiffractometer

ROOT = Path(__file__).resolve().parent.parent

#: An instrument unlike the analysis's default one: broader lines, a zero well off.
INSTRUMENT = {
    "caglioti_u_deg2": 0.012,
    "caglioti_v_deg2": -0.006,
    "caglioti_w_deg2": 0.006,
    "zero_shift_deg": 0.27,
}


def scan(phases, sizes, seed=0, n_points=4000, low=15.0, high=120.0, **instrument):
    diffractometer = PowderDiffractometer(
        two_theta_min_deg=low, two_theta_max_deg=high, n_points=n_points, **instrument
    )
    expected = diffractometer.ideal_pattern(phases, sizes, exposure_s=2.0)
    rng = np.random.default_rng(seed)
    return diffractometer, rng.poisson(expected).astype(float)


@pytest.fixture(scope="module")
def lab6_fit():
    diffractometer, counts = scan({"LaB6": 1.0}, {"LaB6": 5000.0}, **INSTRUMENT)
    return diffractometer, calibrate(diffractometer.two_theta_deg, counts, "LaB6")


def test_breadths_and_zero_are_recovered_from_lab6(lab6_fit):
    diffractometer, fit = lab6_fit
    calibration = fit.calibration
    two_theta = np.array([20.0, 45.0, 80.0, 115.0])
    true_fwhm = np.sqrt(diffractometer._instrument_fwhm2_deg2(two_theta))
    fitted = calibration.shape.instrument_fwhm_deg(two_theta)
    assert np.allclose(fitted, true_fwhm, rtol=0.03)
    assert calibration.zero_shift_deg == pytest.approx(INSTRUMENT["zero_shift_deg"], abs=0.003)
    assert calibration.reduced_chi2 == pytest.approx(1.0, abs=0.2)
    assert not calibration.poor_fit
    assert all(sigma > 0 for sigma in calibration.uncertainty.values())


def test_silicon_calibrates_the_same_instrument():
    diffractometer, counts = scan({"Si": 1.0}, {"Si": 5000.0}, seed=1, **INSTRUMENT)
    calibration = calibrate(diffractometer.two_theta_deg, counts, "Si").calibration
    assert calibration.zero_shift_deg == pytest.approx(INSTRUMENT["zero_shift_deg"], abs=0.005)
    fitted = calibration.shape.instrument_fwhm_deg(np.array([30.0, 90.0]))
    true = np.sqrt(diffractometer._instrument_fwhm2_deg2(np.array([30.0, 90.0])))
    assert np.allclose(fitted, true, rtol=0.05)


def test_a_scan_of_something_else_is_a_poor_fit():
    diffractometer, counts = scan({"anatase": 1.0}, {"anatase": 40.0})
    calibration = calibrate(diffractometer.two_theta_deg, counts, "LaB6").calibration
    assert calibration.poor_fit


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"standard": "NaCl"}, "standard must be one of"),
        ({"two_theta_deg": np.linspace(10, 12, 500)}, "holds 0 lines of LaB6"),
    ],
)
def test_bad_calibration_input_is_refused_by_name(lab6_fit, kwargs, message):
    diffractometer, _ = lab6_fit
    arguments = {
        "two_theta_deg": diffractometer.two_theta_deg,
        "counts": np.ones(4000),
        "standard": "LaB6",
    }
    arguments.update(kwargs)
    arguments["counts"] = np.ones(arguments["two_theta_deg"].size)
    with pytest.raises(ValueError, match=message):
        calibrate(**arguments)


def test_the_file_reads_back_and_names_what_is_missing(lab6_fit, tmp_path):
    calibration = lab6_fit[1].calibration
    path = tmp_path / "xrd-instrument.yaml"
    calibration.write(path)
    assert read_calibration(path) == calibration
    data = yaml.safe_load(path.read_text())
    del data["caglioti_uvw_deg2"]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match="needs caglioti_uvw_deg2"):
        read_calibration(path)


def test_the_command_writes_the_calibration_and_its_plot(lab6_fit, tmp_path, capsys):
    diffractometer, fit = lab6_fit
    scan_file = tmp_path / "lab6.csv"
    counts = fit.fitted_pattern  # any LaB6 scan will do; the fitted one is a clean one
    rows = "\n".join(
        f"{t:.5f},{c:.1f}" for t, c in zip(diffractometer.two_theta_deg, counts, strict=True)
    )
    scan_file.write_text("two_theta_deg,counts\n" + rows + "\n")
    out = tmp_path / "cal.yaml"
    assert main(["calibrate-xrd", str(scan_file), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Caglioti U" in printed and "written:" in printed
    assert read_calibration(out).standard == "LaB6"
    assert out.with_suffix(".png").stat().st_size > 10_000


def test_a_calibrated_analysis_fits_an_unusual_instrument_without_calling_it_drift(lab6_fit):
    truth = {"anatase": 0.6, "rutile": 0.4}
    sizes = {"anatase": 18.0, "rutile": 45.0}
    diffractometer, counts = scan(
        truth, sizes, seed=3, n_points=2048, low=10.0, high=80.0, **INSTRUMENT
    )
    raw = RawRun(
        {"uid": "raw-1"}, {"xrd_two_theta": diffractometer.two_theta_deg, "xrd_counts": counts}
    )

    def analysed(calibration: InstrumentCalibration | None) -> AnalysedRun:
        analysis = SampleAnalysis(
            ["xrd"],
            ("anatase", "brookite", "rutile"),
            zero_tolerance_deg=0.2,
            xrd_calibration=calibration,
        )
        return analysis.analyse(raw)

    assert analysed(None).problem_kind == "drift"  # the zero is 0.27 deg off the default
    calibrated = analysed(lab6_fit[1].calibration)
    assert calibrated.problem_kind is None
    assert calibrated.features["anatase_fraction"] == pytest.approx(0.6, abs=0.03)
    assert calibrated.features["rutile_crystallite_size_nm"] == pytest.approx(45.0, rel=0.1)
    recorded = dict(calibrated.documents())["start"]["xrd_instrument"]
    assert recorded["standard"] == "LaB6"
    assert math.isfinite(recorded["rwp"])


def test_a_campaign_names_its_calibration_file_and_a_missing_one_is_refused(lab6_fit, tmp_path):
    campaign = yaml.safe_load((ROOT / "examples" / "tio2_bo.yaml").read_text())
    campaign["analysis"] = {"xrd_instrument": str(tmp_path / "missing.yaml")}
    with pytest.raises(CampaignConfigError, match="xrd_instrument: no such file"):
        parse_campaign(campaign)
    path = tmp_path / "xrd-instrument.yaml"
    lab6_fit[1].calibration.write(path)
    campaign["analysis"] = {"xrd_instrument": str(path)}
    analysis = build_analysis(parse_campaign(campaign))
    assert analysis.xrd_calibration == lab6_fit[1].calibration


def test_a_calibrated_zero_beyond_half_a_degree_is_reached():
    truth = {"anatase": 0.7, "rutile": 0.3}
    sizes = {"anatase": 25.0, "rutile": 40.0}
    diffractometer, counts = scan(
        truth, sizes, seed=4, n_points=2048, low=10.0, high=80.0, zero_shift_deg=0.72
    )
    raw = RawRun(
        {"uid": "raw-2"}, {"xrd_two_theta": diffractometer.two_theta_deg, "xrd_counts": counts}
    )
    calibration = InstrumentCalibration(ProfileShape(), 0.7, "LaB6")
    analysis = SampleAnalysis(
        ["xrd"],
        ("anatase", "brookite", "rutile"),
        zero_tolerance_deg=0.2,
        xrd_calibration=calibration,
    )
    analysed = analysis.analyse(raw)
    assert analysed.problem_kind is None
    assert analysed.features["xrd_zero_shift_deg"] == pytest.approx(0.72, abs=0.01)
    assert analysed.features["anatase_fraction"] == pytest.approx(0.7, abs=0.03)


def test_the_campaign_run_carries_the_calibration_for_later_readers(lab6_fit, tmp_path):
    calibration = lab6_fit[1].calibration
    campaign = yaml.safe_load((ROOT / "examples" / "tio2_bo.yaml").read_text())
    path = tmp_path / "xrd-instrument.yaml"
    calibration.write(path)
    campaign["analysis"] = {"xrd_instrument": str(path)}
    config = parse_campaign(campaign)
    documents = []
    DecisionRecorder(config.name, lambda name, doc: documents.append((name, doc))).campaign(
        config, build_analysis(config).settings
    )
    path.unlink()  # a reader elsewhere, later, without the file
    log = CampaignLog(config.name)
    log.add_start(dict(documents)["start"])
    assert log.xrd_calibration == calibration
