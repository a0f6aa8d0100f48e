"""People steer a running campaign: pause, resume, abort, veto, inject; each act recorded."""

from __future__ import annotations

import json
import pickle
import threading
import time
from pathlib import Path

import pytest
import yaml
import zmq

from sdl.campaign.config import parse_campaign
from sdl.campaign.control import CampaignControl
from sdl.loop.control_server import ControlServer, connection_file, send_request
from sdl.loop.runner import CampaignRunner
from sdl.records.catalog import campaign_runs, open_catalog

EXAMPLE = Path(__file__).parent.parent / "examples" / "tio2_bo.yaml"


def quick_campaign(data_dir: Path, budget: int, **devices):
    data = yaml.safe_load(EXAMPLE.read_text())
    data.update(
        data_dir=str(data_dir),
        budget=budget,
        agent={"name": "random"},
        instruments=["xrd"],
        devices=devices,
        objectives=[{"name": "anatase_fraction", "direction": "maximize"}],
    )
    return parse_campaign(data)


def when(condition, then, timeout_s: float = 60.0) -> threading.Thread:
    """Run ``then()`` on a thread as soon as ``condition()`` holds."""

    def watch() -> None:
        deadline = time.monotonic() + timeout_s
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.005)
        then()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def controls(client, name: str) -> list[tuple[str, str]]:
    return [
        (run.metadata["start"]["action"], run.metadata["start"]["who"])
        for run in campaign_runs(client, name, "control")
    ]


@pytest.mark.slow
def test_pause_pauses_the_run_engine_mid_experiment_and_resume_finishes_it(data_dir):
    # 3 simulated hours of synthesis last 1.5 s of wall time: long enough to pause in.
    runner = CampaignRunner(quick_campaign(data_dir, 2, speedup=7200.0))
    seen_paused = []

    def pause() -> None:
        runner.control.pause("alice", "check the furnace")

    def resume() -> None:
        seen_paused.append(runner.stations[0].state)
        runner.control.resume("alice")

    when(lambda: runner.stations[0].state == "running", pause)
    when(lambda: runner.stations[0].state == "paused", resume)
    result = runner.run()
    assert seen_paused == ["paused"]
    assert result.stopped is None and len(result.records) == 2
    client = open_catalog(data_dir)
    assert controls(client, runner.config.name) == [("pause", "alice"), ("resume", "alice")]
    finished = [
        r
        for r in campaign_runs(client, runner.config.name, "experiment")
        if r.metadata["stop"]["exit_status"] == "success"
    ]
    assert [r.metadata["start"]["iteration"] for r in finished] == [0, 1]


@pytest.mark.slow
def test_veto_refuses_the_next_proposal_and_inject_runs_a_persons_point(data_dir):
    runner = CampaignRunner(quick_campaign(data_dir, 2))
    runner.control.veto_next("bob", "too close to the last one")
    mine = {"temperature_c": 612.0, "duration_h": 3.0, "ph": 5.0, "h2o_ti_ratio": 30.0}
    runner.control.inject(mine, "carol", "my hunch")
    result = runner.run()
    # The injection goes first (a person's point is never vetoed); the agent's next is vetoed.
    assert result.records[0].conditions == pytest.approx(mine)
    assert result.refused == 1 and len(result.records) == 2
    client = open_catalog(data_dir)
    (vetoed,) = campaign_runs(client, runner.config.name, "refused-proposal")
    assert vetoed.metadata["start"]["reason"] == "vetoed by bob: too close to the last one"
    (first, _) = campaign_runs(client, runner.config.name, "experiment")
    assert first.metadata["start"]["proposed_by"] == "carol"
    assert controls(client, runner.config.name) == [("veto", "bob"), ("inject", "carol")]


@pytest.mark.slow
def test_abort_stops_cleanly_and_the_campaign_resumes_later(data_dir):
    config = quick_campaign(data_dir, 3)
    runner = CampaignRunner(config)
    runner.on_experiment = lambda result: runner.control.abort("dave", "end of shift")
    result = runner.run()
    assert result.stopped == "aborted by dave: end of shift" and len(result.records) == 1
    resumed = CampaignRunner(config).run()
    assert resumed.stopped is None and len(resumed.records) == 3
    assert resumed.records[0].raw_uid == result.records[0].raw_uid


def test_control_socket_needs_the_token_and_refuses_malformed_or_pickled_requests(tmp_path):
    control = CampaignControl()
    server = ControlServer(control, lambda: {"state": "running"})
    path = connection_file(tmp_path, "c")
    server.start(path)
    try:
        assert path.stat().st_mode & 0o777 == 0o600
        token = json.loads(path.read_text())["token"].encode()
        pause = json.dumps({"action": "pause"}).encode()
        assert "two frames" in server.handle([pause])["error"]
        assert "token" in server.handle([b"x", pause])["error"]
        assert "malformed" in server.handle([token, pickle.dumps({"action": "abort"})])["error"]
        assert "malformed" in server.handle([token, b"[1, 2"])["error"]
        bad = server.handle(
            [token, json.dumps({"action": "inject", "conditions": {"ph": "acid"}}).encode()]
        )
        assert bad["ok"] is False and "inject" in bad["error"]
        assert control.paused is None and control.aborted is None
        # Over the real socket: a good request acts, and the server is still up after the bad.
        reply = send_request(path, "pause", who="erin", reason="coffee")
        assert reply == {"ok": True, "state": "running"}
        assert control.paused.who == "erin" and control.paused.reason == "coffee"
    finally:
        server.stop()
    assert not path.exists()


def _raw_request(path, frames):
    """Send raw frames to a control socket, as an attacker on the host could; the reply."""
    address = json.loads(path.read_text())["address"]
    socket = zmq.Context.instance().socket(zmq.REQ)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.RCVTIMEO, 60_000)
    try:
        socket.connect(address)
        socket.send_multipart(frames)
        return json.loads(socket.recv())
    finally:
        socket.close()


def test_control_socket_checks_the_token_before_parsing_and_outlives_hostile_requests(tmp_path):
    control = CampaignControl()
    server = ControlServer(control, lambda: {"state": "running"})
    path = connection_file(tmp_path, "c")
    server.start(path)
    token = json.loads(path.read_text())["token"].encode()
    try:
        deep = b"[" * 100_000
        assert "token" in _raw_request(path, [deep])["error"]
        assert "token" in _raw_request(path, [b"wrong", deep])["error"]
        nested = b"[" * 10_000 + b"]" * 10_000
        assert "nested too deeply" in _raw_request(path, [token, nested])["error"]
        big = json.dumps({"action": "status", "reason": "x" * 100_000}).encode()
        assert "at most" in _raw_request(path, [token, big])["error"]
        odd = json.dumps({"action": "pause", "who": {"name": "eve"}}).encode()
        assert "'who'" in _raw_request(path, [token, odd])["error"]
        assert control.paused is None
        assert send_request(path, "status")["ok"] is True
    finally:
        server.stop()


def test_the_control_file_is_owner_only_and_never_written_through_a_symlink(tmp_path):
    target = tmp_path / "victim.txt"
    target.write_text("keep me")
    path = connection_file(tmp_path, "c")
    path.symlink_to(target)
    server = ControlServer(CampaignControl(), lambda: {"state": "running"}).start(path)
    try:
        assert target.read_text() == "keep me"
        assert not path.is_symlink() and path.stat().st_mode & 0o777 == 0o600
    finally:
        server.stop()
    path.write_text("{}")
    path.chmod(0o644)
    server = ControlServer(CampaignControl(), lambda: {"state": "running"}).start(path)
    try:
        assert path.stat().st_mode & 0o777 == 0o600 and "token" in path.read_text()
    finally:
        server.stop()


@pytest.mark.slow
def test_sdl_control_pauses_and_aborts_a_campaign_running_in_another_process(tmp_path, capsys):
    import subprocess
    import sys

    from sdl.cli import main

    config = quick_campaign(tmp_path / "data", 20, speedup=3600.0)
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    process = subprocess.Popen(
        [sys.executable, "-m", "sdl.cli", "run", str(path), "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not connection_file(config.data_dir, config.name).exists():
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        assert main(["control", str(path), "pause", "--who", "frank"]) == 0
        assert "state: paused" in capsys.readouterr().out
        assert main(["control", str(path), "abort", "--who", "frank", "--reason", "done"]) == 0
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 3 and "aborted by frank: done" in err
    assert main(["control", str(path), "status"]) == 1
    assert "no running campaign" in capsys.readouterr().err


@pytest.mark.slow
def test_an_injected_point_that_breaks_a_linear_constraint_is_refused_not_fatal(data_dir):
    data = yaml.safe_load(EXAMPLE.read_text())
    data.update(
        data_dir=str(data_dir),
        budget=1,
        agent={"name": "random"},
        constraints={"linear": ["temperature_c + 10*ph <= 900"]},
    )
    runner = CampaignRunner(parse_campaign(data))
    runner.control.inject(
        {"temperature_c": 900.0, "duration_h": 2.0, "ph": 9.0, "h2o_ti_ratio": 20.0},
        "cy",
        "too hot and too basic",
    )
    result = runner.run()
    assert result.stopped is None and len(result.records) == 1 and result.refused == 1
    assert (
        result.records[0].conditions["temperature_c"] + 10 * result.records[0].conditions["ph"]
        <= 900 + 1e-9
    )
    (refusal,) = campaign_runs(runner.client, runner.config.name, "refused-proposal")
    assert refusal.metadata["start"]["reason"].startswith(
        "injected by cy, refused by the search space"
    )


@pytest.mark.slow
def test_an_injection_the_budget_left_no_room_for_runs_first_when_the_campaign_resumes(data_dir):
    first, second = (
        {"temperature_c": 450.0 + 100 * i, "duration_h": 2.0, "ph": 4.0, "h2o_ti_ratio": 20.0}
        for i in range(2)
    )
    runner = CampaignRunner(quick_campaign(data_dir, budget=1))
    runner.control.inject(first, "ada", "first")
    runner.control.inject(second, "bob", "second")
    result = runner.run()
    assert [r.conditions["temperature_c"] for r in result.records] == [450.0]
    assert runner.status()["pending_injections"] == 1

    resumed = CampaignRunner(quick_campaign(data_dir, budget=2))
    assert resumed.status()["pending_injections"] == 0  # read from the catalog on running
    result = resumed.run()
    assert [r.conditions["temperature_c"] for r in result.records] == [450.0, 550.0]
    assert resumed.status()["pending_injections"] == 0
    # The experiment names the request it carried out; the control run was recorded once.
    (bobs,) = [
        run.metadata["start"]
        for run in campaign_runs(resumed.client, resumed.config.name, "control")
        if run.metadata["start"]["who"] == "bob"
    ]
    (carried,) = [
        run.metadata["start"]
        for run in campaign_runs(resumed.client, resumed.config.name, "experiment")
        if run.metadata["start"].get("request_id") == bobs["request_id"]
    ]
    assert carried["proposed_by"] == "bob"

    # Carried out once: a further resume runs the agent's own proposals.
    again = CampaignRunner(quick_campaign(data_dir, budget=3)).run()
    assert [r.conditions["temperature_c"] for r in again.records][:2] == [450.0, 550.0]
    assert sum(r.conditions["temperature_c"] == 550.0 for r in again.records) == 1


@pytest.mark.slow
def test_a_request_is_in_the_catalog_before_it_is_answered(data_dir):
    runner = CampaignRunner(quick_campaign(data_dir, budget=1), serve_control=True)
    runner.control.pause("ada", "hold on")
    campaign = threading.Thread(target=runner.run, daemon=True)
    campaign.start()
    path = connection_file(data_dir, runner.config.name)
    while not path.exists():
        time.sleep(0.01)
    reply = send_request(
        path,
        "inject",
        who="cy",
        reason="before any crash",
        conditions={"temperature_c": 500.0, "duration_h": 2.0, "ph": 4.0, "h2o_ti_ratio": 9.0},
    )
    assert reply["ok"] and reply["pending_injections"] == 1
    assert ("inject", "cy") in controls(open_catalog(data_dir), runner.config.name)
    runner.control.abort("ada", "done")
    campaign.join()
