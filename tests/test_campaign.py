"""Whole campaigns on the simulated instruments, read back from the catalog."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from sdl.campaign.config import CampaignConfigError, parse_campaign
from sdl.cli import main
from sdl.loop.runner import CampaignRunner
from sdl.records.catalog import CATALOG_FILE, CatalogError, campaign_runs, open_catalog

EXAMPLE = Path(__file__).parent.parent / "examples" / "tio2_bo.yaml"


def _config(tmp_path, **overrides):
    data = yaml.safe_load(EXAMPLE.read_text())
    data.update(data_dir=str(tmp_path / "data"), **overrides)
    return parse_campaign(data)


@pytest.mark.slow
def test_short_campaign_is_recorded_run_by_run_and_reads_back(tmp_path):
    config = _config(tmp_path, budget=4, agent={"name": "random"})
    result = CampaignRunner(config).run()
    assert len(result.records) == 4 and not any(r.failed for r in result.records)

    client = open_catalog(config.data_dir)
    experiments = campaign_runs(client, config.name, "experiment")
    analyses = campaign_runs(client, config.name, "analysis")
    assert [run.metadata["start"]["iteration"] for run in experiments] == [0, 1, 2, 3]
    assert len({run.metadata["start"]["_id"] for run in experiments}) == 4
    for run, record in zip(experiments, result.records, strict=True):
        start = run.metadata["start"]
        assert start["_id"] == record.proposal_id and start["agent"] == "random"
        primary = run["primary"]
        assert np.asarray(primary["xrd_counts"].read()).shape == (1, 2048)
        image = np.asarray(primary["microscope_image"].read())
        assert image.shape[-2:] == (256, 256) and image.std() > 0
    for run, record in zip(analyses, result.records, strict=True):
        assert run.metadata["start"]["raw_uid"] == record.raw_uid
        features = run["features"].read()
        assert float(features["photoactive_area_m2_g"][0]) == pytest.approx(
            record.features["photoactive_area_m2_g"]
        )
    assert result.instrument_hours > 4 * 0.25


@pytest.mark.slow
def test_the_agent_proposes_batch_size_points_at_once_and_each_run_keeps_its_belief(
    tmp_path, caplog
):
    agent = {
        "name": "bayesian",
        "batch_size": 3,
        "options": {"n_initial": 3, "num_restarts": 2, "raw_samples": 64},
    }
    config = _config(tmp_path, budget=5, agent=agent)
    with caplog.at_level("INFO", logger="sdl.loop.runner"):
        result = CampaignRunner(config).run()
    assert len(result.records) == 5 and not any(r.failed for r in result.records)
    # Three Sobol points, then a model-based batch cut to the two the budget has room for.
    batches = [m for m in caplog.messages if m.startswith("agent proposed a batch")]
    assert batches == ["agent proposed a batch of 3", "agent proposed a batch of 2"]
    starts = [
        run.metadata["start"]
        for run in campaign_runs(open_catalog(config.data_dir), config.name, "experiment")
    ]
    beliefs = [start["agent_belief"] for start in starts]
    assert all("photoactive_area_m2_g_predicted_mean" in belief for belief in beliefs[3:])
    points = {tuple(r.conditions.values()) for r in result.records}
    assert len(points) == 5


@pytest.mark.slow
def test_rerunning_a_campaign_resumes_it_from_the_catalog(tmp_path):
    first = CampaignRunner(_config(tmp_path, budget=3, agent={"name": "sobol"})).run()
    resumed = CampaignRunner(_config(tmp_path, budget=5, agent={"name": "sobol"})).run()
    assert len(resumed.records) == 5
    assert [r.raw_uid for r in resumed.records[:3]] == [r.raw_uid for r in first.records]
    assert len({r.proposal_id for r in resumed.records}) == 5
    client = open_catalog(tmp_path / "data")
    assert len(campaign_runs(client, "tio2-photoactive-bo", "experiment")) == 5


def test_search_space_beyond_the_reactors_limits_is_refused_before_anything_runs(tmp_path):
    config = _config(tmp_path, budget=2)
    data = config.model_dump(mode="json")
    data["search_space"]["temperature_c"]["high"] = 1500
    with pytest.raises(CampaignConfigError, match=r"search_space\.temperature_c: .*safe range"):
        CampaignRunner(parse_campaign(data))


@pytest.mark.slow
def test_sdl_run_prints_a_summary_and_writes_a_report(tmp_path, capsys):
    code = main(
        [
            "run",
            str(EXAMPLE),
            "--data-dir",
            str(tmp_path / "cli"),
            "--budget",
            "3",
            "--agent",
            "random",
            "--quiet",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "3 experiments" in out and "best photoactive_area_m2_g" in out
    assert (tmp_path / "cli" / "tio2-photoactive-bo-report.png").stat().st_size > 10_000


def test_sdl_run_with_a_bad_file_exits_2_naming_the_field(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    data = yaml.safe_load(EXAMPLE.read_text())
    data["search_space"]["ph"]["low"] = 20
    bad.write_text(yaml.safe_dump(data))
    assert main(["run", str(bad)]) == 2
    assert "search_space.ph" in capsys.readouterr().err


@pytest.mark.slow
def test_a_proposal_outside_the_safe_limits_is_recorded_and_never_sent(tmp_path):
    runner = CampaignRunner(_config(tmp_path, budget=1, agent={"name": "random"}))
    honest_suggest = runner.agent.suggest
    unsafe = {
        "_id": "unsafe",
        "temperature_c": 1500.0,
        "duration_h": 1.0,
        "ph": 4.0,
        "h2o_ti_ratio": 10.0,
    }
    proposals = iter([[unsafe]])
    runner.agent.suggest = lambda n=1: next(proposals, None) or honest_suggest(n)
    result = runner.run()
    assert result.refused == 1 and len(result.records) == 1
    assert result.records[0].conditions["temperature_c"] != 1500.0
    client = open_catalog(tmp_path / "data")
    (refusal,) = campaign_runs(client, result.config.name, "refused-proposal")
    assert refusal.metadata["start"]["_id"] == "unsafe"
    assert "temperature_c=1500" in refusal.metadata["start"]["reason"]
    assert len(campaign_runs(client, result.config.name, "experiment")) == 1


def test_a_corrupted_catalog_is_reported_by_file_and_left_untouched(tmp_path, capsys):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    garbage = b"this is not a database" * 100
    (data_dir / CATALOG_FILE).write_bytes(garbage)
    assert main(["run", str(EXAMPLE), "--data-dir", str(data_dir), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert str(data_dir / CATALOG_FILE) in err and "not a readable tiled catalog" in err
    assert (data_dir / CATALOG_FILE).read_bytes() == garbage
    with pytest.raises(CatalogError, match="no catalog in"):
        open_catalog(tmp_path / "nowhere")


@pytest.mark.slow
def test_a_campaign_uses_the_trained_unet_and_xrd_classifier(tmp_path):
    """The learned models are wired in: trained by the project's own code, named in the
    campaign file, their features recorded in the catalog for every sample."""
    from sdl.analysis.microscopy.unet import save_model
    from sdl.training.unet import train_unet
    from sdl.training.xrd_classifier import train_classifier

    unet, _ = train_unet(
        steps=40, batch_size=4, images=16, crop_px=48, width=4, depth=2, learning_rate=1e-2
    )
    save_model(unet, tmp_path / "unet.pt")
    train_classifier(n_patterns=64, epochs=1, batch_size=32).save(tmp_path / "xrd.pt")
    config = _config(
        tmp_path,
        budget=2,
        agent={"name": "random"},
        analysis={
            "segmenter": "unet",
            "unet_model": str(tmp_path / "unet.pt"),
            "xrd_classifier": str(tmp_path / "xrd.pt"),
        },
    )
    result = CampaignRunner(config).run()
    assert len(result.records) == 2
    client = open_catalog(config.data_dir)
    for run in campaign_runs(client, config.name, "analysis"):
        features = run["features"].read()
        for phase in ("amorphous", "anatase", "brookite", "rutile"):
            assert 0 <= float(features[f"{phase}_probability"][0]) <= 1
        assert float(features["grain_size_nm"][0]) > 0


def test_a_missing_model_file_is_a_config_error_naming_the_field(tmp_path):
    with pytest.raises(CampaignConfigError, match=r"analysis: .*unet_model: no such file"):
        _config(tmp_path, analysis={"segmenter": "unet", "unet_model": str(tmp_path / "x.pt")})
    with pytest.raises(CampaignConfigError, match=r"unet_model: segmenter unet needs"):
        _config(tmp_path, analysis={"segmenter": "unet"})
