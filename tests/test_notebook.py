"""Stepping through a campaign from Python: the notebook example runs, and the command line
resumes what the notebook began."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sdl.loop.notebook import NotebookCampaign
from sdl.loop.runner import CampaignRunner
from sdl.records.catalog import campaign_runs, open_catalog
from tests.test_control import quick_campaign

ROOT = Path(__file__).parent.parent


def test_an_edit_past_a_limit_is_refused_and_the_proposal_keeps_waiting(data_dir):
    with NotebookCampaign(quick_campaign(data_dir, 1), who="ann") as campaign:
        (proposal,) = campaign.proposals()
        with pytest.raises(
            ValueError, match=r"temperature_c = 2000 is outside .*\[250, 950\] degC"
        ):
            campaign.approve(proposal, temperature_c=2000.0)
        assert campaign.proposals() == [proposal]
        campaign.approve(proposal, "fine", ph=3.0)
        (record,) = campaign.wait(experiments=1)
        assert record.conditions["ph"] == 3.0 and campaign.proposals() == []
    assert not campaign.running
    (decision,) = campaign_runs(open_catalog(data_dir), campaign.config.name, "control")
    assert (decision.metadata["start"]["who"], decision.metadata["start"]["reason"]) == (
        "ann",
        "fine",
    )


@pytest.mark.slow
def test_the_notebook_example_runs_and_sdl_run_resumes_it(tmp_path):
    data_dir = tmp_path / "data"
    completed = subprocess.run(
        [sys.executable, "examples/notebook_campaign.py"],
        cwd=ROOT,
        env={**os.environ, "SDL_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.count("proposed:") >= 4 and "best:" in completed.stdout
    client = open_catalog(data_dir)
    name = "tio2-photoactive-bo"
    decisions = [run.metadata["start"] for run in campaign_runs(client, name, "control")]
    approved = [d for d in decisions if d["action"] == "approve"]
    assert len(approved) == 4 and {d["who"] for d in decisions} == {"notebook user"}
    assert [d["action"] for d in decisions][-1] == "abort"
    assert all(d["conditions"]["temperature_c"] <= 800 for d in approved[2:])

    config = NotebookCampaign.open(
        ROOT / "examples" / "tio2_bo.yaml",
        data_dir=str(data_dir),
        budget=6,
        agent={"name": "random"},
    ).config.model_copy(update={"approval": quick_campaign(data_dir, 1).approval})
    result = CampaignRunner(config).run()  # as sdl run would
    assert len(result.records) == 6
    kept = [r.proposal_id for r in result.records[:4]]
    assert kept == [d["_id"] for d in approved]
