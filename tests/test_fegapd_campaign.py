"""The Fe-Ga-Pd spread as a campaign system: composition knobs, phase fractions, magnetisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from ophyd.utils.errors import LimitError

from physics.phases import FEGAPD_PHASES
from sdl.analysis.features import features_for
from sdl.analysis.pipeline import fit_pattern
from sdl.campaign.config import parse_campaign
from sdl.lab.instruments import build_simulated_instruments
from sdl.loop.runner import CampaignRunner
from sdl.records.catalog import campaign_runs, open_catalog
from sdl.views.summary import plot_report
from simulators.fegapd import FeGaPdSpread
from simulators.xrd import PowderDiffractometer

EXAMPLE = Path(__file__).parent.parent / "examples" / "fegapd_bo.yaml"


def _config(tmp_path, **overrides):
    data = yaml.safe_load(EXAMPLE.read_text())
    data.update(data_dir=str(tmp_path / "data"), **overrides)
    return parse_campaign(data)


def test_the_campaign_file_asks_for_features_the_instruments_measure(tmp_path):
    config = _config(tmp_path)
    available = features_for(config.instruments, FEGAPD_PHASES)
    assert "saturation_polarisation_t" in available
    assert {f"{p}_fraction" for p in FEGAPD_PHASES} <= available
    assert "amorphous_fraction" not in available and "photoactive_area_m2_g" not in available


def test_reactor_refuses_a_composition_outside_the_triangle_though_each_setpoint_is_safe(
    tmp_path,
):
    reactor = build_simulated_instruments(_config(tmp_path), tmp_path).reactor
    reactor.x_ga.check_value(0.4)
    reactor.x_pd.check_value(0.4)
    with pytest.raises(LimitError, match="x_fe >= 0.4"):
        reactor.check_conditions({"x_ga": 0.4, "x_pd": 0.4})
    reactor.check_conditions({"x_ga": 0.3, "x_pd": 0.3})


def test_pattern_fit_recovers_the_phase_fractions_of_a_shifted_two_phase_spot():
    rng = np.random.default_rng(3)
    spot = FeGaPdSpread().deposit({"x_ga": 0.2, "x_pd": 0.15}, rng, "spot")
    counts = PowderDiffractometer().measure(spot.state, rng)
    fit = fit_pattern(PowderDiffractometer().two_theta_deg, counts, FEGAPD_PHASES)
    for phase in FEGAPD_PHASES:
        assert fit.phase_fractions[phase] == pytest.approx(
            spot.state.phase_fractions.get(phase, 0.0), abs=0.05
        )


@pytest.mark.slow
def test_short_campaign_records_phase_fractions_and_magnetisation_inside_the_triangle(
    tmp_path,
):
    config = _config(
        tmp_path,
        budget=4,
        agent={"name": "sobol"},
    )
    result = CampaignRunner(config).run()
    assert len(result.records) == 4 and result.refused == 0
    for record in result.records:
        assert record.conditions["x_ga"] + record.conditions["x_pd"] <= 0.6 + 1e-9
        fractions = [record.features[f"{p}_fraction"] for p in FEGAPD_PHASES]
        assert sum(fractions) == pytest.approx(1.0)
        assert 0.0 <= record.features["saturation_polarisation_t"] < 2.5
        assert record.features["saturation_polarisation_t_std"] > 0
    # No microscope: the report's fourth panel is the phase map of the samples.
    report = plot_report(result, open_catalog(config.data_dir), tmp_path / "report.png")
    assert report.stat().st_size > 30_000


@pytest.mark.slow
def test_a_proposal_outside_the_triangle_is_recorded_as_refused_and_never_sent(tmp_path):
    runner = CampaignRunner(
        _config(
            tmp_path,
            budget=1,
            agent={"name": "random"},
        )
    )
    honest_suggest = runner.agent.suggest
    outside = {"_id": "outside", "x_ga": 0.4, "x_pd": 0.4}
    proposals = iter([[outside]])
    runner.agent.suggest = lambda n=1: next(proposals, None) or honest_suggest(n)
    result = runner.run()
    assert result.refused == 1 and len(result.records) == 1
    client = open_catalog(tmp_path / "data")
    (refusal,) = campaign_runs(client, result.config.name, "refused-proposal")
    assert refusal.metadata["start"]["_id"] == "outside"
    assert "x_fe >= 0.4" in refusal.metadata["start"]["reason"]
    assert len(campaign_runs(client, result.config.name, "experiment")) == 1
