"""Several stations side by side in one campaign: each its own RunEngine, one agent."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sdl.campaign.config import CampaignConfigError, parse_campaign
from sdl.loop.runner import CampaignRunner
from sdl.records.catalog import campaign_runs, open_catalog
from sdl.views.summary import summary_text

EXAMPLE = Path(__file__).parent.parent / "examples" / "tio2_bo.yaml"


def _config(data_dir, **devices):
    data = yaml.safe_load(EXAMPLE.read_text())
    data.update(data_dir=str(data_dir), budget=6, agent={"name": "random"})
    data["devices"] = {**data["devices"], **devices}
    return parse_campaign(data)


@pytest.mark.slow
def test_three_stations_share_the_budget_without_repeating_a_proposal(data_dir):
    config = _config(data_dir, stations=3)
    runner = CampaignRunner(config)
    assert [station.name for station in runner.stations] == ["station-0", "station-1", "station-2"]
    result = runner.run()

    assert len(result.records) == config.budget and result.stopped is None
    assert {record.station for record in result.records} == {"station-0", "station-1", "station-2"}
    assert sorted(record.iteration for record in result.records) == list(range(6))
    assert len({record.proposal_id for record in result.records}) == 6
    per_station = {}
    for record in result.records:
        per_station[record.station] = (
            per_station.get(record.station, 0.0) + record.instrument_time_s / 3600
        )
    assert result.makespan_hours == pytest.approx(max(per_station.values()))
    assert result.makespan_hours < result.instrument_hours
    assert f"over 3 stations: {result.makespan_hours:.1f} h for the busiest" in summary_text(result)

    runs = campaign_runs(open_catalog(config.data_dir), config.name, "experiment")
    assert sorted(run.metadata["start"]["station"] for run in runs) == sorted(
        record.station for record in result.records
    )
    assert all(run.metadata["stop"]["exit_status"] == "success" for run in runs)

    resumed = CampaignRunner(config).run()  # the budget is spent: nothing new runs
    assert len(resumed.records) == 6
    assert len(campaign_runs(open_catalog(config.data_dir), config.name, "experiment")) == 6


def test_several_stations_need_the_simulated_backend(tmp_path):
    with pytest.raises(
        CampaignConfigError,
        match=r"devices.*stations: 2 stations need "
        r"backend: sim",
    ):
        _config(tmp_path, stations=2, backend="epics")


class _RemoteStation:
    """A station whose RunEngine and instruments live in another process (as a queueserver's)."""

    name = "remote-1"
    state = "idle"

    def attempt(self, conditions, md):
        raise AssertionError("not run in this test")

    def pause(self):
        pass

    def settle(self):
        pass


def test_the_instruments_of_a_station_elsewhere_are_not_offered_here(data_dir):
    runner = CampaignRunner(_config(data_dir), stations=lambda runner: [_RemoteStation()])
    with pytest.raises(TypeError, match="'remote-1' runs elsewhere"):
        _ = runner.instruments
