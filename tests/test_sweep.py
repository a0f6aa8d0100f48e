"""``sdl sweep``: a grid of simulated campaigns, each validated first, run in parallel
processes (a local pool, or a local Dask cluster), each in its own catalog, and compared."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
import yaml

from sdl.campaign.schema import CampaignConfigError
from sdl.cli import main
from sdl.loop.sweep import load_sweep, run_sweep, summary_table
from sdl.records.catalog import CATALOG_FILE, campaign_runs, open_catalog

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def sweep_file(tmp_path: Path, **changes) -> Path:
    data = {
        "name": "tiny",
        "campaign": str(EXAMPLES / "tio2_bo.yaml"),
        "set": {
            "budget": 3,
            "instruments": ["xrd"],
            "objectives": [{"name": "anatase_fraction", "direction": "maximize"}],
        },
        "grid": {"agent": [{"name": "random"}, {"name": "sobol"}], "seed": [0, 1]},
        "data_dir": str(tmp_path / "sweep-data"),
        "workers": 2,
        **changes,
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_every_cell_is_a_validated_campaign_of_its_own(tmp_path):
    sweep, cells = load_sweep(
        sweep_file(
            tmp_path,
            grid={"agent": [{"name": "random"}], "seed": [0, 1, 2], "devices.speedup": [1000.0]},
        )
    )
    assert [c.config.seed for c in cells] == [0, 1, 2]
    assert {c.config.devices.speedup for c in cells} == {1000.0}
    assert {c.config.budget for c in cells} == {3}
    assert len({c.config.data_dir for c in cells}) == 3  # a catalog each
    assert cells[0].group == ("agent=random", "devices.speedup=1000.0")  # the seed is averaged
    assert "seed=2" in cells[2].config.description


def test_a_bad_cell_is_refused_before_anything_runs_naming_it(tmp_path):
    path = sweep_file(tmp_path, grid={"agent": [{"name": "random"}, {"name": "no-such-agent"}]})
    with pytest.raises(CampaignConfigError, match=r"tiny cell 1 \(agent=no-such-agent\)"):
        load_sweep(path)
    assert not (tmp_path / "sweep-data").exists()
    with pytest.raises(CampaignConfigError, match=r"budget"):
        load_sweep(sweep_file(tmp_path, set={"budget": -1}))


@pytest.mark.slow
def test_sweep_runs_in_parallel_processes_and_prints_the_comparison(tmp_path, capsys):
    grid = {"agent": [{"name": "random"}, {"name": "sobol"}], "seed": [0]}
    assert main(["sweep", str(sweep_file(tmp_path, grid=grid))]) == 0
    out = capsys.readouterr().out
    assert "sweep tiny: 2 campaigns on 2 processes" in out
    assert out.count("] tiny-000") == 2
    table = out[out.index("best measured") :]
    assert "agent=random" in table and "agent=sobol" in table
    results = json.loads((tmp_path / "sweep-data" / "tiny-results.json").read_text())
    assert [c["experiments"] for c in results["cells"]] == [3, 3]
    assert (tmp_path / "sweep-data" / "tiny-convergence.png").stat().st_size > 0
    for cell in results["cells"]:
        runs = campaign_runs(
            open_catalog(tmp_path / "sweep-data" / cell["name"]), cell["name"], "experiment"
        )
        assert len(runs) == 3
        # The best so far never gets worse, and ends at the best measured.
        assert np.all(np.diff(cell["best_so_far"]) >= 0)
        assert cell["best_so_far"][-1] == cell["best_measured"]
        assert 0 <= cell["best_true"] <= 1  # the simulator's own anatase fraction there


@pytest.mark.slow
def test_sweep_on_a_local_dask_cluster_into_one_shared_catalog(tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    from tiled.client import from_uri
    from tiled.server import SimpleTiledServer

    server = SimpleTiledServer(tmp_path / "server")  # on 127.0.0.1, with its own key
    base_uri, _, key = server.uri.partition("?api_key=")
    monkeypatch.setenv("SDL_TILED_API_KEY", unquote(key))
    path = sweep_file(
        tmp_path, grid={"agent": [{"name": "random"}], "seed": [3, 4]}, catalog=base_uri
    )
    sweep, cells = load_sweep(path)
    finished = []
    results = run_sweep(
        sweep, cells, dask="local", on_result=lambda cell, _: finished.append(cell.index)
    )
    assert sorted(finished) == [0, 1]
    assert [r["experiments"] for r in results] == [3, 3]
    assert [r["values"]["seed"] for r in results] == [3, 4]
    assert "agent=random" in summary_table(results, cells)
    catalog = from_uri(server.uri)
    for cell in cells:
        assert len(campaign_runs(catalog, cell.config.name, "experiment")) == 3
        assert not (Path(cell.config.data_dir) / CATALOG_FILE).exists()
