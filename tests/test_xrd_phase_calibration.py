"""`sdl calibrate-phases`: a campaign's phase calibration factors fitted on standards.

The standards are mixtures of corundum, periclase and zincite of known weights, rendered with
another forward model than the fit's (see :mod:`tests.test_xrd_user_phases`) and with each
phase's lines scaled by a true intensity factor, as microabsorption or a reagent's amorphous
content would scale them: zincite 1.6 times, periclase 0.75 times what its structure gives.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from sdl.analysis.pipeline import fit_pattern
from sdl.analysis.xrd.phase_calibration import (
    StandardResult,
    combine_standards,
    parse_weights,
)
from sdl.campaign.config import parse_campaign
from sdl.cli import main
from tests.test_xrd_user_phases import TWO_THETA_DEG, example_campaign, mixture, write_cifs

#: Measured over computed intensity per unit weight fraction, relative to corundum.
TRUE_FACTORS = {"corundum": 1.0, "periclase": 0.75, "zincite": 1.6}
SIZES_NM = {"corundum": 80.0, "periclase": 50.0, "zincite": 60.0}

#: The standards: known weight fractions, one scan each.
STANDARDS = (
    {"corundum": 0.5, "zincite": 0.5},
    {"corundum": 0.3, "periclase": 0.3, "zincite": 0.4},
    {"periclase": 0.6, "zincite": 0.4},
)

#: How close a recovered factor must come to the true one (the fit's other line shape costs
#: about 0.01 in a fraction, 1-2 % in a ratio of fractions).
FACTOR_TOLERANCE = 0.05


def measured(weights: dict[str, float], seed: int) -> np.ndarray:
    """Counts of a mixture whose phases scatter ``TRUE_FACTORS`` times their computed lines."""
    return mixture({p: w * TRUE_FACTORS[p] for p, w in weights.items()}, SIZES_NM, seed)


def campaign_of(phases: list[dict]) -> dict:
    """The example campaign, made to measure the zincite fraction of these phases."""
    campaign = example_campaign(xrd_phases=phases)
    campaign["objectives"] = [{"name": "zincite_fraction", "direction": "maximize"}]
    campaign["instruments"] = ["xrd"]
    return campaign


def write_scan(path: Path, counts: np.ndarray) -> Path:
    np.savetxt(path, np.column_stack([TWO_THETA_DEG, counts]), header="two_theta,counts")
    return path


def weights_option(weights: dict[str, float]) -> str:
    return ",".join(f"{name}={weight}" for name, weight in weights.items())


@pytest.fixture
def campaign(tmp_path, monkeypatch) -> Path:
    """A campaign file naming the three phases, all at factor 1, in a fresh directory."""
    monkeypatch.chdir(tmp_path)
    cifs = write_cifs(tmp_path)
    path = tmp_path / "campaign.yaml"
    phases = [{"name": name, "cif": str(cif)} for name, cif in cifs.items()]
    path.write_text(yaml.safe_dump(campaign_of(phases)))
    return path


@pytest.fixture
def scans(tmp_path) -> list[Path]:
    return [
        write_scan(tmp_path / f"standard{i}.xy", measured(weights, seed=20 + i))
        for i, weights in enumerate(STANDARDS)
    ]


def calibrate(campaign: Path, scans: list[Path], *options: str) -> int:
    weights = [option for w in STANDARDS for option in ("--weights", weights_option(w))]
    return main(["calibrate-phases", str(campaign), *map(str, scans), *weights, *options])


def test_factors_are_recovered_from_standards_and_make_an_unknown_mixture_right(
    campaign, scans, tmp_path, capsys
):
    out = tmp_path / "phases.yaml"
    assert calibrate(campaign, scans, "--reference", "corundum", "--out", str(out)) == 0
    printed = capsys.readouterr().out
    assert "xrd_phases:" in printed and "reference corundum" in printed

    block = yaml.safe_load(out.read_text())["xrd_phases"]
    factors = {entry["name"]: entry["calibration_factor"] for entry in block}
    for name, true_factor in TRUE_FACTORS.items():
        assert factors[name] == pytest.approx(true_factor, rel=FACTOR_TOLERANCE)

    unknown = {"corundum": 0.2, "periclase": 0.3, "zincite": 0.5}
    counts = measured(unknown, seed=99)
    uncalibrated = parse_campaign(yaml.safe_load(campaign.read_text()))
    calibrated = parse_campaign(campaign_of(block))
    for config, within in ((uncalibrated, False), (calibrated, True)):
        phases = config.analysis.xrd_phase_set()
        fractions = fit_pattern(TWO_THETA_DEG, counts, phases).phase_fractions
        error = max(abs(fractions[name] - weight) for name, weight in unknown.items())
        assert (error < 0.03) is within, (fractions, error)


def test_the_table_gives_each_phase_with_its_uncertainty_and_each_scan(campaign, scans, capsys):
    assert calibrate(campaign, scans) == 0
    rows = {
        line.split()[0]: line.split()[1:]
        for line in capsys.readouterr().out.splitlines()
        if line.split() and line.split()[0] in TRUE_FACTORS
    }
    factor, std, *per_scan = rows["zincite"]
    assert float(factor) == pytest.approx(1.6, rel=FACTOR_TOLERANCE)
    assert 0 < float(std) < 0.1
    assert len(per_scan) == 3  # zincite is in every standard
    assert rows["corundum"][:2] == ["1.0000", "0.0000"]  # the first phase is the reference
    assert rows["periclase"][2] == "-"  # not in the first standard


def test_one_weights_option_serves_every_scan_of_one_standard(campaign, tmp_path, capsys):
    weights = {"corundum": 0.4, "zincite": 0.6}
    scans = [write_scan(tmp_path / f"s{seed}.xy", measured(weights, seed)) for seed in (1, 2)]
    argv = ["calibrate-phases", str(campaign), *map(str, scans), "--weights"]
    assert main([*argv, weights_option(weights)]) == 0
    block = capsys.readouterr().out.split("xrd_phases:")[1]
    assert "no standard holds it: factor kept" in block  # periclase


def test_standards_linked_through_a_shared_phase_calibrate_the_others():
    """corundum-zincite and zincite-periclase: periclase is linked to corundum via zincite."""

    def result(source: str, fractions: dict[str, float], weights: dict[str, float]):
        return StandardResult(
            source, weights, fractions, {p: 0.01 for p in fractions}, 0.1, 1.0, ()
        )

    factors = combine_standards(
        [
            result("a", {"corundum": 0.25, "zincite": 0.75}, {"corundum": 0.5, "zincite": 0.5}),
            result("b", {"zincite": 0.5, "periclase": 0.5}, {"zincite": 0.75, "periclase": 0.25}),
        ],
        "corundum",
    )
    assert factors.factors["zincite"] == pytest.approx(3.0)
    assert factors.factors["periclase"] == pytest.approx(3.0 * 3.0)
    assert math.isnan(factors.reduced_chi2)  # just determined: no scatter to measure


def test_scatter_between_standards_widens_the_uncertainty():
    def result(source: str, corundum: float):
        return StandardResult(
            source,
            {"corundum": 0.5, "zincite": 0.5},
            {"corundum": corundum, "zincite": 1 - corundum},
            {"corundum": 0.005, "zincite": 0.005},
            0.1,
            1.0,
            (),
        )

    agreeing = combine_standards([result("a", 0.40), result("b", 0.40)], "corundum")
    scattered = combine_standards([result("a", 0.35), result("b", 0.45)], "corundum")
    assert scattered.factors_std["zincite"] > 5 * agreeing.factors_std["zincite"]
    assert scattered.per_standard["zincite"] == pytest.approx((0.65 / 0.35, 0.55 / 0.45))


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        ("corundum=0.5,zincite=0.6", r"sums to 1.100; weight fractions must sum to 1"),
        ("corundum=0.5,quartz=0.5", r"'quartz' is not a phase.*corundum, periclase, zincite"),
        ("corundum=0.5,zincite", r"'zincite': expected NAME=WEIGHT_FRACTION"),
        ("corundum=1.5,zincite=-0.5", r"zincite=-0.5: a weight fraction is >= 0"),
        ("corundum=0.5,corundum=0.5", r"'corundum' is given twice"),
    ],
)
def test_bad_weights_are_refused_with_what_is_allowed(weights, expected):
    with pytest.raises(ValueError, match=expected):
        parse_weights(weights, ("corundum", "periclase", "zincite"))


def refusal(capsys, argv: list[str]) -> str:
    assert main(["calibrate-phases", *argv]) == 2
    return capsys.readouterr().err


def test_the_command_refuses_what_it_cannot_calibrate(campaign, scans, tmp_path, capsys):
    scan, weights = str(scans[0]), weights_option(STANDARDS[0])
    message = refusal(capsys, [str(campaign), scan, "--weights", "corundum=0.5,zincite=0.6"])
    assert "--weights (scan 1" in message and "must sum to 1" in message
    message = refusal(
        capsys, [str(campaign), scan, "--weights", weights, "--reference", "periclase"]
    )
    assert "reference 'periclase': no standard holds it" in message
    assert "choose one of corundum, zincite" in message
    message = refusal(capsys, [str(campaign), scan, "--weights", weights, "--reference", "quartz"])
    assert "'quartz' is not a phase of the campaign" in message
    message = refusal(capsys, [str(campaign), str(tmp_path / "missing.xy"), "--weights", weights])
    assert "missing.xy" in message
    (tmp_path / "words.xy").write_text("two theta, counts\nten, twenty\n")
    message = refusal(capsys, [str(campaign), str(tmp_path / "words.xy"), "--weights", weights])
    assert "expected two numeric columns" in message
    twice = ["--weights", weights, "--weights", weights]
    message = refusal(capsys, [str(campaign), scan, scan, scan, *twice])
    assert "given 2 times for 3 scans" in message


def test_a_campaign_without_its_own_phases_is_refused(tmp_path, capsys, scans):
    path = tmp_path / "tio2.yaml"
    path.write_text(yaml.safe_dump(example_campaign()))
    message = refusal(capsys, [str(path), str(scans[0]), "--weights", "anatase=1"])
    assert "analysis.xrd_phases" in message and "names no phases" in message
