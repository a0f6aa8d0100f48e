"""Hang detection: a plan that runs far longer than experiments take is aborted and handled."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import yaml

from sdl.campaign.config import WatchdogConfig, parse_campaign
from sdl.lab.watchdog import ExpectedDuration, Watchdog
from sdl.loop.runner import CampaignRunner
from sdl.records.catalog import campaign_runs, open_catalog

EXAMPLE = Path(__file__).parent.parent / "examples" / "tio2_bo.yaml"

#: Campaign settings under which the first XRD scan never ends and the instrument's own
#: timeout is off, so only the watchdog can see it; its 10 s are far beyond a healthy
#: experiment at speedup inf.
FIRST_SCAN_HANGS = {
    "agent": {"name": "random"},
    "instruments": ["xrd"],
    "objectives": [{"name": "anatase_fraction", "direction": "maximize"}],
    "devices": {"faults": {"timeout": {"at": [0], "devices": ["xrd"]}}, "action_timeout_s": None},
    "watchdog": {"expected_s": 1.0, "factor": 2, "min_s": 10},
}


def test_the_limit_is_a_multiple_of_the_expected_duration_with_a_floor():
    expected = ExpectedDuration(WatchdogConfig(factor=4, min_s=10))
    assert expected.limit_s({}) is None  # nothing known: nothing flagged
    expected = ExpectedDuration(WatchdogConfig(factor=4, min_s=10, expected_s=100))
    assert expected.limit_s({}) == 400
    for seconds in (1.0, 2.0, 30.0):
        expected.record(seconds, {})
    assert expected.limit_s({}) == 10  # 4 x the median (2 s) is under the floor
    for seconds in (40.0, 50.0):
        expected.record(seconds, {})
    assert expected.limit_s({}) == 4 * 30
    assert ExpectedDuration(WatchdogConfig(enabled=False, expected_s=1)).limit_s({}) is None


def test_a_long_synthesis_after_short_ones_is_not_a_hang():
    # Real pace: an experiment is its synthesis plus ten minutes of measuring.
    expected = ExpectedDuration(
        WatchdogConfig(factor=3, min_s=60),
        synthesis_s=lambda conditions: 3600.0 * conditions["duration_h"],
        wall_per_instrument_s=1.0,
    )
    for _ in range(5):
        expected.record(3600.0 + 600.0, {"duration_h": 1.0})
    assert expected.limit_s({"duration_h": 1.0}) == 3 * 4200
    assert expected.limit_s({"duration_h": 12.0}) == 3 * (12 * 3600 + 600)
    # At a simulated clock 3600 times faster, an hour of synthesis is one wall second.
    fast = ExpectedDuration(WatchdogConfig(expected_s=2.0), lambda c: 3600.0, 1 / 3600)
    assert fast.limit_s({}) == 300  # the floor


def test_only_running_time_counts_and_the_hang_is_called_once():
    expected = ExpectedDuration(WatchdogConfig(factor=2, min_s=0.5, expected_s=0.1))
    running = threading.Event()
    hangs: list[str] = []
    called = threading.Event()

    def on_hang(reason: str) -> None:
        hangs.append(reason)
        called.set()

    with Watchdog(expected, {}, running.is_set, on_hang, "station-0") as watchdog:
        time.sleep(1.0)  # paused: twice the limit passes, and is not counted
        assert not hangs and watchdog.running_s == 0
        running.set()
        assert called.wait(60)
    assert len(hangs) == 1 and "station-0 hung" in hangs[0]
    assert watchdog.running_s > 0.5 and watchdog.hung == hangs[0]


@pytest.mark.slow
def test_a_hung_instrument_is_aborted_handled_by_the_hang_policy_and_alerted(tmp_path, caplog):
    data = yaml.safe_load(EXAMPLE.read_text())
    data.update(
        data_dir=str(tmp_path / "data"),
        budget=1,
        **FIRST_SCAN_HANGS,
        on_fault={"hang": {"action": "retry", "retries": 1, "then": "skip"}},
        alerts={"notifiers": [{"kind": "log", "events": ["hang"]}]},
    )
    config = parse_campaign(data)
    with caplog.at_level("WARNING", logger="sdl.loop.alerts"):
        result = CampaignRunner(config).run()
    alerts = [m for m in caplog.messages if m.startswith("ALERT")]
    assert len(alerts) == 1 and "hang in experiment 1 (attempt 1)" in alerts[0]

    hang = result.faults[0]
    assert (hang.kind, hang.action, hang.iteration, hang.attempt) == ("hang", "retry", 0, 1)
    assert "hung" in hang.reason and "watchdog" in hang.reason
    assert result.stopped is None and len(result.records) == 1
    client = open_catalog(config.data_dir)
    faults = [run.metadata["start"] for run in campaign_runs(client, config.name, "fault")]
    assert faults[0]["kind"] == "hang" and "hung" in faults[0]["reason"]
    # The hung attempt's raw run is closed, as aborted; the retry's succeeded.
    raws = campaign_runs(client, config.name, "experiment")
    assert [run.metadata["stop"]["exit_status"] for run in raws] == ["abort", "success"]
