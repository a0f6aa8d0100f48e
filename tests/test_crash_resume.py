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

from sdl.records.audit import audit_campaign
from sdl.records.catalog import CATALOG_FILE, campaign_runs, exit_status, open_catalog
from simulators.tio2 import TIO2_CONDITION_LIMITS

EXAMPLE = Path(__file__).parent.parent / "examples" / "tio2_bo.yaml"
BUDGET = 6


def campaign_file(tmp_path: Path) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text())
    data.update(
        name="crash", data_dir=str(tmp_path / "data"), budget=BUDGET, agent={"name": "random"}
    )
    path = tmp_path / "crash.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def start_campaign(path: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sdl.cli", "run", str(path), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def experiments_done(data_dir: Path) -> int:
    """Finished experiment runs so far, read from the raw files the microscope has written."""
    return len(list((data_dir / "raw").glob("*.h5")))


def kill_after(
    process: subprocess.Popen, data_dir: Path, experiments: int, delay_s: float, sig: int
) -> None:
    """Send ``sig`` ``delay_s`` after the campaign has begun its ``experiments``-th experiment."""
    deadline = time.monotonic() + 120
    while experiments_done(data_dir) < experiments and process.poll() is None:
        assert time.monotonic() < deadline, "the campaign made no progress"
        time.sleep(0.01)
    time.sleep(delay_s)
    os.kill(process.pid, sig)


def check_catalog(data_dir: Path) -> None:
    client = open_catalog(data_dir)
    audit = audit_campaign(client, "crash", TIO2_CONDITION_LIMITS)
    # Every finished experiment kept exactly once, no gaps, the budget honoured.
    assert audit.sound, audit
    assert audit.kept == BUDGET and audit.skipped == 0
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
    kills = 0
    for experiments in (1, 3, 4):
        process = start_campaign(path)
        kill_after(process, data_dir, experiments, float(rng.uniform(0, 0.8)), signal.SIGKILL)
        process.wait(timeout=60)
        kills += process.returncode == -signal.SIGKILL
    assert kills >= 2, "the campaign finished before it could be killed"
    process = start_campaign(path)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert f"{BUDGET} experiments" in out
    check_catalog(data_dir)


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_the_campaign_resumes(tmp_path):
    path = campaign_file(tmp_path)
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
    check_catalog(data_dir)
