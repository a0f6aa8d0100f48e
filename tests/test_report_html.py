"""The self-contained HTML report of a campaign, written from its catalog alone."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from urllib.parse import unquote

import pytest
import yaml

from sdl.campaign.config import parse_campaign
from sdl.cli import main
from sdl.loop.recording import software_versions
from sdl.loop.runner import CampaignRunner
from sdl.records.catalog import CATALOG_FILE, TABLES_FILE, campaign_runs
from sdl.views.campaign_log import CampaignLog
from sdl.views.figures import conditions_figure, convergence_figure
from tests.test_dashboard import CHROMIUM, _browser_or_skip

EXAMPLE = Path(__file__).parent.parent / "examples" / "tio2_bo.yaml"
INJECTED = {"temperature_c": 600.0, "duration_h": 2.0, "ph": 4.0, "h2o_ti_ratio": 20.0}
LAPTOP = {"width": 1366, "height": 800}


def _headers(table: str) -> list[str]:
    """A table's column headers as a reader sees them."""
    return [h.replace("<wbr>", "") for h in re.findall(r"<th>(.*?)</th>", table)]


def _launch(playwright):
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
    )  # Debian's Chromium, as the dashboard's browser tests drive it


@pytest.fixture(scope="module")
def campaign(tmp_path_factory, _empty_catalog):
    """A finished 2-experiment campaign with an injected point, a veto and a retried fault,
    and its report written by ``sdl report``."""
    root = tmp_path_factory.mktemp("report")
    data_dir = root / "data"
    data_dir.mkdir()
    for name in (CATALOG_FILE, TABLES_FILE):
        if (_empty_catalog / name).exists():
            shutil.copy(_empty_catalog / name, data_dir / name)
    data = yaml.safe_load(EXAMPLE.read_text())
    data.update(
        data_dir=str(data_dir),
        budget=2,
        agent={"name": "random"},
        devices={"backend": "sim", "system": "tio2_solgel", "faults": {"nan_data": {"at": [1]}}},
    )
    campaign_file = root / "campaign.yaml"
    campaign_file.write_text(yaml.safe_dump(data))
    runner = CampaignRunner(parse_campaign(data))
    runner.control.inject(INJECTED, "ada", "a point from the literature")
    runner.control.veto_next("bob", "too close to the last sample")
    result = runner.run()
    out = root / "report.html"
    assert main(["report", str(campaign_file), "--out", str(out)]) == 0
    return {
        "result": result,
        "report": out,
        "client": runner.client,
        "name": runner.config.name,
        "root": root,
    }


@pytest.mark.slow
def test_the_report_holds_every_experiment_fault_request_and_version(campaign):
    text = campaign["report"].read_text()
    experiments = campaign_runs(campaign["client"], campaign["name"], "experiment")
    assert len(experiments) == 3  # two experiments, the second retried after a fault
    table = re.search(r'<table id="experiments">.*?</table>', text, re.S).group(0)
    details = re.search(r'<table id="experiment-details">.*?</table>', text, re.S).group(0)
    assert table.count("<tr class=") == details.count("<tr class=") == len(experiments)
    for run in experiments:
        uid = run.metadata["start"]["uid"]
        assert f'href="#run-{uid}"' in table  # each experiment links to its details
        assert f'id="run-{uid}"' in details and f"[{uid}]/primary" in details
    assert {"temperature_c (degC)", "h2o_ti_ratio (mol/mol)", "photoactive_area_m2_g"} <= set(
        _headers(table)
    )
    assert {"anatase_fraction", "grain_size_nm", "rwp", "raw run uid", "raw data"} <= set(
        _headers(details)
    )
    faults = re.search(r'<table id="faults">.*?</table>', text, re.S).group(0)
    assert "corrupt_data" in faults and "retry" in faults
    controls = re.search(r'<table id="controls">.*?</table>', text, re.S).group(0)
    assert "ada" in controls and "inject" in controls and "bob" in controls
    assert "temperature_c=600" in controls
    refused = re.search(r'<table id="refused">.*?</table>', text, re.S).group(0)
    assert "vetoed by bob" in refused
    assert "<td>ada</td>" in table  # the injected experiment, proposed by a person
    versions = re.search(r'<table id="versions">.*?</table>', text, re.S).group(0)
    assert f"<td>{software_versions()['bluesky']}</td>" in versions
    assert "name: random" in text and "budget: 2" in text


@pytest.mark.slow
def test_the_report_needs_nothing_from_the_network(campaign):
    text = campaign["report"].read_text()
    assert not re.search(r"<script[^>]+src=", text)
    # plotly.js, inlined, names web sites in its own code; the page itself refers to none.
    page = re.sub(r"<script[^>]*>.*?</script>", "", text, flags=re.S)
    assert not re.search(r"(src|href)=[\"']?https?://", page)
    assert text.count("data:image/png;base64,") >= 1  # the best micrograph, embedded


@pytest.mark.slow
def test_the_report_opens_offline_in_a_browser_with_every_plot_drawn(campaign):
    sync_api = _browser_or_skip()
    asked: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = _launch(playwright)
        context = browser.new_context(offline=True, viewport={"width": 1300, "height": 1000})

        def only_the_file(route):
            asked.append(route.request.url)
            if route.request.url.startswith(("file:", "data:")):
                route.continue_()
            else:
                route.abort()

        context.route("**/*", only_the_file)
        page = context.new_page()
        page.goto(campaign["report"].resolve().as_uri())
        page.wait_for_function("window.Plotly !== undefined", timeout=30_000)
        page.wait_for_function(
            "document.querySelectorAll('.js-plotly-plot .main-svg').length >= 4", timeout=30_000
        )
        rows = page.locator("#experiments tbody tr").count()
        drawn = page.evaluate(
            "Array.from(document.querySelectorAll('.js-plotly-plot')).map(p => p.data.length)"
        )
        page.screenshot(path=campaign["root"] / "report.png", full_page=True)
        browser.close()
    assert rows == len(campaign_runs(campaign["client"], campaign["name"], "experiment"))
    assert len(drawn) >= 4 and all(traces >= 1 for traces in drawn)
    assert [url for url in asked if not url.startswith(("file:", "data:"))] == []
    assert (campaign["root"] / "report.png").stat().st_size > 50_000


@pytest.mark.slow
def test_a_report_with_many_features_fits_a_laptop_screen_without_scrolling_sideways(campaign):
    text = campaign["report"].read_text()
    details = re.search(r'<table id="experiment-details">.*?</table>', text, re.S).group(0)
    assert len(_headers(details)) > 20  # many features: one column each, as before
    sync_api = _browser_or_skip()
    with sync_api.sync_playwright() as playwright:
        browser = _launch(playwright)
        page = browser.new_page(viewport=LAPTOP)
        page.goto(campaign["report"].resolve().as_uri())
        page.wait_for_function(
            "document.querySelectorAll('.js-plotly-plot .main-svg').length >= 4", timeout=30_000
        )
        folded_width = page.evaluate("document.documentElement.scrollWidth")
        page.click("details > summary")
        unfolded_width = page.evaluate("document.documentElement.scrollWidth")
        table_width, box_width = page.evaluate(
            "[document.getElementById('experiment-details').scrollWidth,"
            " document.getElementById('experiment-details').parentElement.clientWidth]"
        )
        page.screenshot(path=campaign["root"] / "report-laptop.png", full_page=True)
        browser.close()
    assert folded_width <= LAPTOP["width"] and unfolded_width <= LAPTOP["width"]
    assert table_width > box_width  # the wide table scrolls inside its own box


def test_a_report_of_a_campaign_the_catalog_does_not_hold_says_so(data_dir, capsys):
    campaign_file = Path(data_dir) / "campaign.yaml"
    campaign_file.write_text(EXAMPLE.read_text())
    assert main(["report", str(campaign_file), "--data-dir", str(data_dir)]) == 1
    assert "no campaign named 'tio2-photoactive-bo'" in capsys.readouterr().err


@pytest.mark.slow
def test_sdl_report_reads_a_campaign_from_a_tiled_server(tmp_path, monkeypatch):
    from tiled.client import from_uri
    from tiled.server import SimpleTiledServer

    (tmp_path / "data").mkdir()  # the campaign's lock and raw files; the catalog is the server
    # On 127.0.0.1, with its own key; it reads the micrographs the campaign writes as files.
    server = SimpleTiledServer(tmp_path / "server", readable_storage=[tmp_path / "data"])
    data = yaml.safe_load(EXAMPLE.read_text())
    data.update(data_dir=str(tmp_path / "data"), budget=1, agent={"name": "random"})
    CampaignRunner(parse_campaign(data), client=from_uri(server.uri)).run()
    campaign_file = tmp_path / "campaign.yaml"
    campaign_file.write_text(yaml.safe_dump(data))
    base_uri, _, key = server.uri.partition("?api_key=")
    monkeypatch.setenv("SDL_TILED_API_KEY", unquote(key))
    out = tmp_path / "report.html"
    args = ["report", str(campaign_file), "--tiled", base_uri, "--out", str(out)]
    assert main(args) == 0
    page = out.read_text()
    assert base_uri in page and "tio2-photoactive-bo" in page
    assert not (tmp_path / "data" / CATALOG_FILE).exists()  # nothing read from a file


def _start(uid, iteration, time, belief=None, **extra):
    return {
        "uid": uid,
        "time": time,
        "purpose": "experiment",
        "campaign_id": "c",
        "iteration": iteration,
        "_id": f"p{iteration}",
        "conditions": {"ph": 4.0},
        "agent_belief": belief or {},
        **extra,
    }


def test_the_convergence_plot_shows_the_agents_prediction_where_it_made_one():
    log = CampaignLog("c")
    log.config = {"budget": 3, "objectives": [{"name": "y", "direction": "minimize"}]}
    log.add_start(_start("a", 0, 1.0))
    log.add_start(
        _start(
            "b", 1, 2.0, {"y_predicted_mean": 2.5, "y_predicted_std": 0.5, "acquisition_value": 0.1}
        )
    )
    log.add_features("a", {"y": 3.0, "y_std": 0.1})
    log.add_features("b", {"y": 2.0, "y_std": 0.2})
    measured, best, predicted = convergence_figure(log).data
    assert list(measured.x) == [1, 2] and list(measured.error_y.array) == [0.1, 0.2]
    assert list(best.y) == [3.0, 2.0]  # minimising: the best so far falls
    assert list(predicted.x) == [2] and list(predicted.y) == [2.5]
    assert list(predicted.error_y.array) == [1.0]  # ±2σ
    assert [e.raw_uid for e in log.best(2)] == ["b", "a"]


def test_best_and_the_best_so_far_line_leave_out_results_that_break_an_outcome_constraint():
    log = CampaignLog("c")
    log.config = {
        "budget": 3,
        "objectives": [{"name": "y", "direction": "maximize"}],
        "constraints": {"outcomes": ["impurity <= 0.1"]},
    }
    for uid, iteration, y, impurity in (
        ("a", 0, 1.0, 0.0),
        ("b", 1, 5.0, 0.5),
        ("c", 2, 2.0, 0.05),
    ):
        log.add_start(_start(uid, iteration, float(iteration)))
        log.add_features(uid, {"y": y, "impurity": impurity})
    _, best, *_ = convergence_figure(log).data
    assert list(best.y) == [1.0, 1.0, 2.0]
    assert [e.raw_uid for e in log.best(3)] == ["c", "a"]


def test_a_skipped_experiment_counts_against_the_budget_and_a_retry_does_not():
    log = CampaignLog("c")
    log.config = {"budget": 3, "objectives": [{"name": "y", "direction": "maximize"}]}
    log.add_start(_start("a1", 0, 1.0, attempt=1))
    log.add_start(
        {
            "uid": "f1",
            "time": 1.5,
            "purpose": "fault",
            "campaign_id": "c",
            "iteration": 0,
            "kind": "corrupt_data",
            "action": "retry",
            "raw_uid": "a1",
        }
    )
    log.add_start(_start("a2", 0, 2.0, attempt=2))
    log.add_features("a2", {"y": 1.0})
    log.add_start(_start("b1", 1, 3.0))
    log.add_start(
        {
            "uid": "f2",
            "time": 3.5,
            "purpose": "fault",
            "campaign_id": "c",
            "iteration": 1,
            "kind": "timeout",
            "action": "skip",
            "raw_uid": "b1",
        }
    )
    assert log.experiments_done() == 2 and len(log.experiments) == 3
    assert [f["action"] for f in log.faults] == ["retry", "skip"]


def test_the_conditions_plot_has_a_colour_bar_in_the_objectives_measured_values():
    log = CampaignLog("c")
    log.config = {"budget": 4, "objectives": [{"name": "y", "direction": "maximize"}]}
    for uid, iteration in (("a", 0), ("b", 1), ("c", 2), ("d", 3)):
        log.add_start(_start(uid, iteration, float(iteration)))
    for uid in ("a", "b", "c"):  # d is still running
        log.add_stop({"run_start": uid, "exit_status": "success"})
    log.add_features("a", {"y": 12.5})
    log.add_features("b", {"y": 80.25})  # c failed: no features
    line = conditions_figure(log, {"ph": {"low": 1, "high": 10, "unit": "pH"}}).data[0].line
    assert line.showscale and line.colorbar.title.text == "y"
    assert line.colorbar.ticktext[0] == "12.5" and line.colorbar.ticktext[-1] == "80.25"
    # the ticks sit where those values are drawn, above the in-progress and failed bands
    assert list(line.color) == pytest.approx([0.1, 1.0, 0.075, 0.0])
    assert line.colorbar.tickvals[0] == pytest.approx(0.1)
    assert line.colorbar.tickvals[-1] == pytest.approx(1.0)


def test_names_read_as_words_with_their_units():
    from sdl.views.figures import words

    assert words("photoactive_area_m2_g") == "photoactive area (m²/g)"
    assert words("temperature_c", "degC") == "temperature (degC)"
    assert words("ph", "pH") == "ph (pH)"
    assert words("anatase_fraction") == "anatase fraction"
    assert words("urbach_energy_mev") == "urbach energy (meV)"
