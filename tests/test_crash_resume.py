"""Kill the campaign process at random moments; the resumed campaign keeps every result once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from sdl.loop.runner import reported_proposals
from sdl.records.audit import audit_campaign
from sdl.records.catalog import CATALOG_FILE, campaign_runs, exit_status, open_catalog, raw_dir
from simulators.tio2 import TIO2_CONDITION_LIMITS

EXAMPLE = Path(__file__).parent.parent / "examples" / "tio2_bo.yaml"
BUDGET = 6


def campaign_file(tmp_path: Path, budget: int = BUDGET) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text())
    data.update(
        name="crash", data_dir=str(tmp_path / "data"), budget=budget, agent={"name": "random"}
    )
    path = tmp_path / "crash.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def start_campaign(path: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sdl.cli", "-v", "run", str(path), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def experiments_done(data_dir: Path) -> int:
    """Finished experiment runs so far, read from the raw files the microscope has written."""
    return len(list((data_dir / "raw").rglob("*.h5")))


def wait_for_experiments(process: subprocess.Popen, data_dir: Path, experiments: int) -> None:
    """Wait until the campaign has begun its ``experiments``-th experiment."""
    deadline = time.monotonic() + 120
    while experiments_done(data_dir) < experiments and process.poll() is None:
        assert time.monotonic() < deadline, "the campaign made no progress"
        time.sleep(0.01)


def kill_after(
    process: subprocess.Popen, data_dir: Path, experiments: int, delay_s: float, sig: int
) -> None:
    """Send ``sig`` ``delay_s`` after the campaign has begun its ``experiments``-th experiment."""
    wait_for_experiments(process, data_dir, experiments)
    time.sleep(delay_s)
    os.kill(process.pid, sig)


def check_catalog(data_dir: Path, reported: list[str] = (), budget: int = BUDGET) -> None:
    client = open_catalog(data_dir)
    audit = audit_campaign(
        client,
        "crash",
        TIO2_CONDITION_LIMITS,
        reported=reported,
        raw_directory=raw_dir(data_dir, "crash"),
    )
    # Every finished experiment kept exactly once, no gaps, the budget honoured.
    assert audit.sound, audit
    assert audit.kept == budget and audit.skipped == 0
    # An interrupted run is marked as such (a fault record), never silently dropped.
    open_runs = {
        run.metadata["start"]["uid"]
        for run in campaign_runs(client, "crash", "experiment")
        if exit_status(run) is None
    }
    interrupted = {
        run.metadata["start"]["raw_uid"]
        for run in campaign_runs(client, "crash", "fault")
        if run.metadata["start"]["kind"] == "interrupted"
    }
    assert open_runs <= interrupted


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_keeps_every_experiment_once(tmp_path):
    path = campaign_file(tmp_path)
    data_dir = tmp_path / "data"
    rng = np.random.default_rng(2026)
    kills, reported = 0, []
    for experiments in (1, 3, 4):
        process = start_campaign(path)
        kill_after(process, data_dir, experiments, float(rng.uniform(0, 0.8)), signal.SIGKILL)
        _, err = process.communicate(timeout=60)
        kills += process.returncode == -signal.SIGKILL
        reported += reported_proposals(err)
    assert kills >= 2, "the campaign finished before it could be killed"
    assert reported, "no experiment was reported finished before the kills"
    process = start_campaign(path)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert f"{BUDGET} experiments" in out
    # Every experiment shown as finished before a kill is still counted, once.
    check_catalog(data_dir, reported + reported_proposals(err))
    assert "over 2 stations" not in out


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_the_campaign_resumes(tmp_path):
    path = campaign_file(tmp_path, budget=3)
    data_dir = tmp_path / "data"
    process = start_campaign(path)
    kill_after(process, data_dir, 2, 0.2, signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "run the same command again to resume" in err
    client = open_catalog(data_dir)
    # A clean stop leaves no run open: each one has its stop document.
    assert all(exit_status(run) for run in campaign_runs(client, "crash", "experiment"))
    assert (data_dir / CATALOG_FILE).exists()
    process = start_campaign(path)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    check_catalog(data_dir, budget=3)


@pytest.mark.slow
def test_a_second_process_on_the_same_campaign_exits_at_once_naming_the_first(tmp_path, capsys):
    from sdl.cli import main

    path = campaign_file(tmp_path)
    data = yaml.safe_load(path.read_text())
    data["devices"] = {"speedup": 3600.0}  # slow enough to be caught running
    path.write_text(yaml.safe_dump(data))
    process = start_campaign(path)
    try:
        wait_for_experiments(process, tmp_path / "data", 1)
        assert main(["run", str(path), "-q"]) == 2
        error = capsys.readouterr().err
        assert f"already being run by process {process.pid}" in error
        assert process.poll() is None, "the first process must carry on"
    finally:
        process.kill()
        process.wait()


@pytest.mark.slow
def test_instrument_files_no_run_refers_to_are_moved_aside_and_recorded(tmp_path):
    path = campaign_file(tmp_path, budget=2)
    data_dir = tmp_path / "data"
    folder = raw_dir(data_dir, "crash")
    folder.mkdir(parents=True)
    (folder / "left-by-a-crash.h5").write_bytes(b"half a micrograph")
    process = start_campaign(path)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert (folder / "orphaned" / "left-by-a-crash.h5").exists()
    client = open_catalog(data_dir)
    (record,) = campaign_runs(client, "crash", "orphaned-files")
    assert record.metadata["start"]["files"] == ["left-by-a-crash.h5"]
    check_catalog(data_dir, reported_proposals(err), budget=2)


@pytest.mark.slow
def test_two_processes_started_at_once_on_a_fresh_folder_one_runs_one_is_refused(tmp_path):
    path = campaign_file(tmp_path, budget=2)
    processes = [start_campaign(path), start_campaign(path)]
    logs = [process.communicate(timeout=600)[1] for process in processes]
    (ran, ran_log), (refused, refusal) = sorted(
        (process.returncode, log) for process, log in zip(processes, logs, strict=True)
    )
    assert ran == 0, ran_log
    assert refused == 2 and "Traceback" not in refusal, refusal
    (error,) = [line for line in refusal.splitlines() if line.startswith("error:")]
    assert "already being run by process" in error
    check_catalog(tmp_path / "data", reported_proposals(ran_log), budget=2)
