"""Campaigns with several objectives: the Pareto set, its hypervolume, the reports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from botorch.utils.multi_objective.hypervolume import Hypervolume

from sdl.campaign.config import CampaignConfigError, parse_campaign
from sdl.campaign.results import CampaignResult, ExperimentRecord, dominated_outline, pareto_mask
from sdl.loop.runner import CampaignRunner
from sdl.records.catalog import campaign_runs, open_catalog
from sdl.views.report_html import write_report
from sdl.views.summary import plot_report, summary_text

EXAMPLE = Path(__file__).parent.parent / "examples" / "tio2_multiobjective.yaml"
OBJECTIVES = ("anatase_fraction", "grain_size_nm")  # maximise, minimise


def _data(**overrides):
    data = yaml.safe_load(EXAMPLE.read_text())
    data.update(overrides)
    return data


def _record(iteration, anatase=None, grain=None, **features):
    measured = {
        name: value
        for name, value in zip(OBJECTIVES, (anatase, grain), strict=True)
        if value is not None
    }
    return ExperimentRecord(
        iteration,
        f"p{iteration}",
        {"temperature_c": 400.0 + iteration},
        {**measured, **features},
        f"uid-{iteration}",
        60.0,
    )


def _result(records, reference_point=None, outcome_constraints=()):
    data = _data(
        reference_point=reference_point, constraints={"outcomes": list(outcome_constraints)}
    )
    return CampaignResult(parse_campaign(data), list(records))


#: Anatase up, grain down: 0, 1 and 3 trade off; 2 is beaten by 0; 4 failed.
TRADE_OFF = [
    _record(0, 0.9, 30.0),
    _record(1, 0.6, 15.0),
    _record(2, 0.7, 40.0),
    _record(3, 0.95, 45.0),
    ExperimentRecord(4, "p4", {}, {}, "uid-4", 1.0),
]


def test_the_pareto_set_is_every_experiment_no_other_beats_in_both_objectives():
    result = _result(TRADE_OFF)
    assert [r.iteration for r in result.pareto] == [0, 1, 3]
    assert result.pareto_mask().tolist() == [True, True, False, True, False]


def test_the_first_objective_still_ranks_best_as_with_one_objective():
    result = _result(TRADE_OFF)
    assert result.objective == "anatase_fraction" and result.maximize
    assert result.best.iteration == 3
    np.testing.assert_array_equal(result.objective_values(), [0.9, 0.6, 0.7, 0.95, np.nan])


def test_hypervolume_above_a_given_reference_point_is_the_staircase_area():
    result = _result(TRADE_OFF, reference_point={"anatase_fraction": 0.5, "grain_size_nm": 50})
    # (0.6-0.5)*(50-15) + (0.9-0.6)*(50-30) + (0.95-0.9)*(50-45)
    assert result.hypervolume() == pytest.approx(9.75)
    assert [result.hypervolume(experiments=k) for k in range(6)] == pytest.approx(
        [0.0, 8.0, 9.5, 9.5, 9.75, 9.75]
    )
    assert result.hypervolume({"anatase_fraction": 0.0, "grain_size_nm": 100.0}) == pytest.approx(
        0.6 * 85 + 0.3 * 70 + 0.05 * 55
    )


def test_without_a_reference_point_it_is_inferred_from_the_front_as_the_agent_does():
    result = _result(TRADE_OFF)
    # nadir of the front (0.6, 45) less 10 % of its range (0.35, 30), in the worse direction
    assert result.reference_point == pytest.approx(
        {"anatase_fraction": 0.565, "grain_size_nm": 48.0}
    )
    front = torch.tensor([[0.9, -30.0], [0.6, -15.0], [0.95, -45.0]], dtype=torch.float64)
    expected = Hypervolume(torch.tensor([0.565, -48.0], dtype=torch.float64)).compute(front)
    assert result.hypervolume() == pytest.approx(expected)


def test_a_broken_outcome_constraint_or_a_missing_objective_keeps_an_experiment_off_the_front():
    records = [
        _record(0, 0.9, 30.0, rutile_fraction=0.2),
        _record(1, 0.6, 15.0, rutile_fraction=0.0),
        _record(2, 0.8, 35.0, rutile_fraction=0.01),
        _record(3, 0.99, None, rutile_fraction=0.0),
    ]
    result = _result(records, outcome_constraints=["rutile_fraction <= 0.05"])
    assert result.feasible().tolist() == [False, True, True, False]
    assert [r.iteration for r in result.pareto] == [1, 2]


def test_best_and_the_best_so_far_curve_skip_experiments_that_break_an_outcome_constraint():
    records = [
        _record(0, 0.7, 30.0, rutile_fraction=0.0),
        _record(1, 0.99, 20.0, rutile_fraction=0.3),
        _record(2, 0.8, 35.0, rutile_fraction=0.01),
    ]
    result = _result(records, outcome_constraints=["rutile_fraction <= 0.05"])
    assert result.best.iteration == 2
    np.testing.assert_array_equal(result.feasible_objective_values(), [0.7, np.nan, 0.8])
    assert _result(records[1:2], outcome_constraints=["rutile_fraction <= 0.05"]).best is None


def test_equal_experiments_are_both_on_the_front_and_an_empty_campaign_has_none():
    result = _result([_record(0, 0.8, 20.0), _record(1, 0.8, 20.0), _record(2, 0.7, 25.0)])
    assert [r.iteration for r in result.pareto] == [0, 1]
    empty = _result([])
    assert empty.pareto == [] and empty.reference_point is None and empty.hypervolume() == 0.0
    assert pareto_mask(np.empty((0, 2)), [True, False]).shape == (0,)


def test_the_dominated_outline_is_a_staircase_from_the_reference_point():
    outline = dominated_outline(
        np.array([[0.9, 30.0], [0.6, 15.0], [0.4, 10.0]]), [True, False], [0.5, 50.0]
    )
    np.testing.assert_allclose(
        outline, [[0.5, 50], [0.5, 15], [0.6, 15], [0.6, 30], [0.9, 30], [0.9, 50]]
    )


def test_with_one_objective_the_pareto_set_is_the_best_experiment():
    data = _data(objectives=[{"name": "grain_size_nm", "direction": "minimize"}])
    data.pop("reference_point")
    result = CampaignResult(parse_campaign(data), TRADE_OFF)
    assert [r.iteration for r in result.pareto] == [result.best.iteration] == [1]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["objectives"].append(dict(d["objectives"][0])),
            r"objectives\.2\.name: 'anatase_fraction' is listed twice",
        ),
        (
            lambda d: d.update(reference_point={"anatase_fraction": 0.5}),
            r"reference_point: give one value for each objective",
        ),
        (
            lambda d: d["reference_point"].update(grain_size_nm="big"),
            r"reference_point\.grain_size_nm: Input should be a valid number",
        ),
        (
            lambda d: d.update(agent={"name": "rl", "options": {"weights": __file__}}),
            r"agent: the rl agent optimises one objective",
        ),
    ],
)
def test_a_bad_multi_objective_campaign_is_refused_naming_the_field(change, message):
    data = _data()
    change(data)
    with pytest.raises(CampaignConfigError, match=message):
        parse_campaign(data)


@pytest.mark.slow
def test_a_two_objective_campaign_runs_records_and_reports_its_pareto_front(tmp_path):
    data = _data(
        budget=5,
        data_dir=str(tmp_path / "data"),
        agent={"name": "bayesian", "options": {"n_initial": 3}},
    )
    config = parse_campaign(data)
    runner = CampaignRunner(config)
    result = runner.run()
    assert len(result.records) == 5 and result.stopped is None

    pareto = result.pareto
    assert pareto
    signs = np.array([1.0, -1.0])
    front = np.array([[r.features[n] for n in OBJECTIVES] for r in pareto]) * signs
    measured = result.objective_matrix()[result.feasible()] * signs
    for point in front:  # nothing measured beats a front point in both objectives
        assert not np.any(np.all(measured >= point, axis=1) & np.any(measured > point, axis=1))
    assert result.hypervolume() > 0
    assert {point_id for point_id, _, _ in runner.agent.get_best_points()} == {
        r.proposal_id for r in pareto
    }

    client = open_catalog(config.data_dir)
    analyses = {
        run.metadata["start"]["raw_uid"]: run
        for run in campaign_runs(client, config.name, "analysis")
    }
    for record in pareto:
        features = analyses[record.raw_uid]["features"].read()
        for name in OBJECTIVES:
            assert float(features[name][0]) == pytest.approx(record.features[name])

    text = summary_text(result)
    assert (
        f"Pareto front of anatase_fraction (maximize), grain_size_nm (minimize): "
        f"{len(pareto)} non-dominated" in text
    )
    assert "hypervolume" in text and f"experiment {pareto[0].iteration + 1}" in text
    png = plot_report(result, client, tmp_path / "report.png")
    assert png.stat().st_size > 10_000
    page = write_report(client, config.name, str(config.data_dir), tmp_path / "report.html")
    html = page.read_text()
    assert f"<h2>Pareto front ({len(pareto)} experiments)</h2>" in html
    assert 'id="pareto"' in html and html.count(pareto[0].raw_uid) >= 2
