"""The live dashboard: token-protected controls, and a real campaign watched in Chromium."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import pytest
import yaml
from starlette.testclient import TestClient

from sdl.campaign.config import parse_campaign
from sdl.campaign.control import CampaignControl
from sdl.loop.runner import CampaignRunner
from sdl.records.catalog import campaign_runs
from sdl.views.campaign_log import CampaignLog
from sdl.views.dashboard import Dashboard

EXAMPLE = Path(__file__).parent.parent / "examples" / "tio2_bo.yaml"
CHROMIUM = Path("/usr/bin/chromium")
SEARCH_SPACE = {
    "temperature_c": {"low": 250, "high": 950, "unit": "degC"},
    "ph": {"low": 1, "high": 10, "unit": "pH"},
}


def _dashboard(control: CampaignControl, **options) -> Dashboard:
    log = CampaignLog("test")
    log.config = {"budget": 3, "objectives": [{"name": "y", "direction": "maximize"}]}
    return Dashboard(
        log,
        control,
        lambda: {"state": "running"},
        SEARCH_SPACE,
        phases=("anatase",),
        token="right-token",
        **options,
    )


@pytest.fixture
def control():
    return CampaignControl()


@pytest.fixture
def client(control):
    dashboard = _dashboard(control)
    yield TestClient(dashboard.app())
    dashboard.measurement_figures.stop()


@pytest.mark.parametrize("headers, code", [({}, 401), ({"Authorization": "Bearer wrong"}, 403)])
def test_a_control_request_without_the_right_token_is_refused_and_does_nothing(
    client, control, headers, code
):
    for action in ("pause", "abort", "veto", "inject"):
        reply = client.post(
            f"/api/control/{action}",
            headers=headers,
            json={"who": "intruder", "conditions": {"temperature_c": 500, "ph": 4}},
        )
        assert reply.status_code == code
    assert control.paused is None and control.aborted is None
    assert control.take_veto() is None and control.take_injection() is None
    assert control.take_log() == []


@pytest.mark.parametrize("path", ["/", "/api/state", "/api/events"])
def test_the_page_and_its_data_need_the_token(client, path):
    assert client.get(path).status_code == 401
    assert client.get(path, params={"token": "wrong"}).status_code == 403


def test_the_page_loads_with_the_token_and_plotly_is_served_locally(client):
    page = client.get("/", params={"token": "right-token"})
    assert page.status_code == 200 and 'src="static/plotly.min.js"' in page.text
    assert "http" not in page.text.split("<script", 1)[1].split(">", 1)[0]
    assert len(client.get("/static/plotly.min.js").text) > 1_000_000


def test_requests_with_the_token_reach_the_campaign_with_who_and_why(client, control):
    auth = {"Authorization": "Bearer right-token"}
    assert (
        client.post(
            "/api/control/pause", headers=auth, json={"who": "ada", "reason": "refill"}
        ).status_code
        == 200
    )
    assert control.paused.who == "ada" and control.paused.reason == "refill"
    client.post("/api/control/resume", headers=auth, json={"who": "ada"})
    client.post("/api/control/veto", headers=auth, json={"who": "bob", "reason": "too hot"})
    client.post(
        "/api/control/inject",
        headers=auth,
        json={"who": "cy", "conditions": {"temperature_c": 600, "ph": 4.5}},
    )
    assert control.paused is None and control.take_veto().who == "bob"
    assert dict(control.take_injection().conditions) == {"temperature_c": 600.0, "ph": 4.5}
    assert [(a.action, a.who) for a in control.take_log()] == [
        ("pause", "ada"),
        ("resume", "ada"),
        ("veto", "bob"),
        ("inject", "cy"),
    ]


def test_each_request_is_recorded_before_it_is_answered(control):
    recorded: list = []
    dashboard = _dashboard(control, record=lambda: recorded.extend(control.take_log()))
    client = TestClient(dashboard.app())
    auth = {"Authorization": "Bearer right-token"}
    client.post("/api/control/pause", headers=auth, json={"who": "ada"})
    assert [(a.action, a.who) for a in recorded] == [("pause", "ada")]
    client.post(
        "/api/control/inject",
        headers=auth,
        json={"who": "cy", "conditions": {"temperature_c": 600, "ph": 4.5}},
    )
    assert [(a.action, a.who) for a in recorded][-1] == ("inject", "cy")
    dashboard.measurement_figures.stop()


@pytest.mark.parametrize(
    "conditions",
    [
        {"temperature_c": 600},
        {"temperature_c": "hot", "ph": 4},
        {"temperature_c": 600, "ph": 4, "rpm": 3},
    ],
)
def test_an_injection_that_does_not_name_every_condition_as_a_number_is_refused(
    client, control, conditions
):
    reply = client.post(
        "/api/control/inject",
        headers={"Authorization": "Bearer right-token"},
        json={"who": "cy", "conditions": conditions},
    )
    assert reply.status_code == 422 and control.take_injection() is None


def _browser_or_skip():
    playwright = pytest.importorskip(
        "playwright.sync_api",
        reason="the playwright package is not installed "
        "(pip install playwright; no browser download needed)",
    )
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    return playwright


def _points(page, plot: str) -> int:
    return page.evaluate(
        "id => { const p = document.getElementById(id);"
        " return p && p.data ? p.data[0].x.length : 0; }",
        plot,
    )


@contextlib.contextmanager
def _running_page(url: str):
    """Chromium showing the dashboard at ``url`` once it says the campaign runs (or waits for
    approval); confirms dialogs (the abort button asks first)."""
    sync_api = _browser_or_skip()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.on("dialog", lambda dialog: dialog.accept())
        page.goto(url)
        page.wait_for_function(
            "['running', 'waiting for approval']"
            ".includes(document.getElementById('state').textContent)",
            timeout=30_000,
        )
        try:
            yield page
        finally:
            browser.close()


def _watch_and_steer(
    url: str, runner: CampaignRunner, shots: Path, seen: dict, page_open: threading.Event
) -> None:
    """What a person does in the browser, from another thread while the campaign runs."""
    with _running_page(url) as page:
        page_open.set()
        page.wait_for_function(
            "document.getElementById('plot-convergence').data?.[0].x.length >= 1", timeout=60_000
        )
        seen["first_points"] = _points(page, "plot-convergence")
        page.wait_for_function(
            "document.getElementById('plot-micrograph').data?.length >= 1", timeout=30_000
        )
        page.screenshot(path=shots / "dashboard-running.png", full_page=True)

        page.fill("#who", "e2e-test")
        page.fill("#reason", "checking pause")
        page.click("#btn-pause")
        page.wait_for_function(
            "document.getElementById('state').textContent === 'paused'", timeout=10_000
        )
        deadline = time.monotonic() + 15
        while runner.stations[0].state == "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        seen["engine_when_paused"] = runner.stations[0].state
        time.sleep(1.5)  # a pause between runs lets the analysis in flight finish first
        paused_at = len(runner.result.records)
        time.sleep(3.0)  # longer than one experiment at this speed-up
        seen["done_while_paused"] = len(runner.result.records) - paused_at
        seen["engine_after_wait"] = runner.stations[0].state
        page.screenshot(path=shots / "dashboard-paused.png", full_page=True)

        page.click("#btn-resume")
        page.wait_for_function(
            "document.getElementById('state').textContent !== 'paused'", timeout=10_000
        )
        page.wait_for_function(
            f"document.getElementById('plot-convergence').data[0].x.length > "
            f"{max(seen['first_points'], paused_at)}",
            timeout=60_000,
        )
        seen["points_after_resume"] = _points(page, "plot-convergence")
        seen["experiments_text"] = page.text_content("#experiments")
        page.screenshot(path=shots / "dashboard-resumed.png", full_page=True)


def _campaign_steered_in_browser(data_dir, budget: int, steer, on_failure: str, **sections):
    """Run a short campaign (with these campaign-file ``sections``) while
    ``steer(url, runner, page_open)`` drives its dashboard from another thread; the campaign
    starts once the page is up. Returns the runner, the result and the dashboard; the browser
    thread's error, if any, is raised here."""
    _browser_or_skip()
    data = yaml.safe_load(EXAMPLE.read_text())
    data["search_space"]["duration_h"] = {"low": 1.0, "high": 2.0, "unit": "h"}
    data.update(
        data_dir=str(data_dir),
        budget=budget,
        agent={"name": "random"},
        devices={"backend": "sim", "system": "tio2_solgel", "speedup": 5000.0},
        **sections,
    )
    runner = CampaignRunner(parse_campaign(data))
    dashboard = Dashboard.for_runner(runner)
    url = dashboard.start()
    errors: list[BaseException] = []
    page_open = threading.Event()

    def browse() -> None:
        try:
            steer(url, runner, page_open)
        except BaseException as error:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(error)
            page_open.set()
            getattr(runner.control, on_failure)("test", "the browser failed")

    browser = threading.Thread(target=browse, daemon=True)
    browser.start()
    try:
        page_open.wait(timeout=60)
        result = runner.run()
        browser.join(timeout=60)
    finally:
        dashboard.stop()
    if errors:
        raise errors[0]
    return runner, result, dashboard


@pytest.mark.slow
def test_a_campaign_is_watched_paused_and_resumed_from_the_browser(data_dir, tmp_path):
    seen: dict = {}
    runner, result, dashboard = _campaign_steered_in_browser(
        data_dir,
        4,
        lambda url, runner, page_open: _watch_and_steer(url, runner, tmp_path, seen, page_open),
        on_failure="resume",
    )
    assert seen["engine_when_paused"] in ("paused", "idle")
    assert seen["done_while_paused"] == 0 and seen["engine_after_wait"] != "running"
    assert seen["points_after_resume"] > seen["first_points"]
    assert len(result.records) == 4 and result.stopped is None
    assert [(a["action"], a["who"]) for a in dashboard.log.controls] == [
        ("pause", "e2e-test"),
        ("resume", "e2e-test"),
    ]
    assert dashboard.log.controls[0]["reason"] == "checking pause"
    recorded = campaign_runs(runner.client, runner.config.name, "control")
    assert [run.metadata["start"]["who"] for run in recorded] == ["e2e-test", "e2e-test"]
    for name in ("running", "paused", "resumed"):
        assert (tmp_path / f"dashboard-{name}.png").stat().st_size > 20_000


def _veto_inject_abort(
    url: str, runner: CampaignRunner, shots: Path, page_open: threading.Event
) -> None:
    """Pause, queue a veto and an injected experiment, resume, then abort: all by clicks."""
    with _running_page(url) as page:
        page_open.set()
        page.fill("#who", "e2e-steer")
        _click(page, "pause")
        page.wait_for_function(
            "document.getElementById('state').textContent === 'paused'", timeout=10_000
        )
        page.fill("#reason", "not that one")
        _click(page, "veto")
        for name, value in INJECTED.items():
            page.fill(f"#inject-{name}", str(value))
        page.fill("#reason", "my own idea")
        _click(page, "inject")
        queued_at = len(runner.result.records)
        _click(page, "resume")
        deadline = time.monotonic() + 60
        while len(runner.result.records) < queued_at + 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        page.fill("#reason", "enough for today")
        _click(page, "abort")
        page.wait_for_function(
            "['aborting', 'stopped'].includes(document.getElementById('state').textContent)",
            timeout=30_000,
        )
        page.screenshot(path=shots / "dashboard-aborted.png", full_page=True)


def _click(page, action: str) -> None:
    """Press a control button and wait until the server has taken the request."""
    page.click(f"#btn-{action}")
    page.wait_for_function(
        f"document.getElementById('message').textContent === '{action} requested'", timeout=10_000
    )


INJECTED = {"temperature_c": 612.5, "duration_h": 1.5, "ph": 4.25, "h2o_ti_ratio": 22.0}


@pytest.mark.slow
def test_veto_inject_and_abort_from_the_browser_act_on_the_campaign(data_dir, tmp_path):
    runner, result, dashboard = _campaign_steered_in_browser(
        data_dir,
        30,
        lambda url, runner, page_open: _veto_inject_abort(url, runner, tmp_path, page_open),
        on_failure="abort",
    )
    assert result.stopped is not None and "enough for today" in result.stopped
    assert len(result.records) < 30
    actions = [(a["action"], a["who"]) for a in dashboard.log.controls]
    assert actions == [
        ("pause", "e2e-steer"),
        ("veto", "e2e-steer"),
        ("inject", "e2e-steer"),
        ("resume", "e2e-steer"),
        ("abort", "e2e-steer"),
    ]
    injected = [r for r in result.records if r.conditions["temperature_c"] == 612.5]
    assert len(injected) == 1 and injected[0].conditions["ph"] == 4.25
    refused = campaign_runs(runner.client, runner.config.name, "refused-proposal")
    assert len(refused) == 1
    assert refused[0].metadata["start"]["reason"] == "vetoed by e2e-steer: not that one"
    experiments = campaign_runs(runner.client, runner.config.name, "experiment")
    by_person = [run for run in experiments if run.metadata["start"]["proposed_by"] == "e2e-steer"]
    assert [run.metadata["start"]["conditions"]["temperature_c"] for run in by_person] == [612.5]
    assert (tmp_path / "dashboard-aborted.png").stat().st_size > 20_000


def _approve_edit_reject(
    url: str, runner: CampaignRunner, shots: Path, page_open: threading.Event
) -> None:
    """Approve a proposal as it is, approve one with an edit, reject one: all by clicks."""
    with _running_page(url) as page:
        page_open.set()
        page.fill("#who", "e2e-approver")
        for step in ("as proposed", "edited", "rejected", "as proposed", "as proposed"):
            card = page.locator("#waiting .proposal").first
            card.wait_for(timeout=60_000)
            proposal = card.get_attribute("id")
            if step == "as proposed" and not (shots / "dashboard-approval.png").exists():
                page.screenshot(path=shots / "dashboard-approval.png", full_page=True)
            if step == "edited":
                card.locator("input[data-condition=temperature_c]").fill("444")
            page.fill("#reason", step)
            card.locator("button.reject" if step == "rejected" else "button.approve").click()
            action = "reject" if step == "rejected" else "approve"
            page.wait_for_function(
                f"document.getElementById('message').textContent === '{action} requested'"
                f" && !document.getElementById('{proposal}')",
                timeout=10_000,
            )
            page.evaluate("document.getElementById('message').textContent = ''")
            if len(runner.result.records) >= 4:
                return


@pytest.mark.slow
def test_proposals_are_approved_edited_and_rejected_by_clicks(data_dir, tmp_path):
    runner, result, dashboard = _campaign_steered_in_browser(
        data_dir,
        4,
        lambda url, runner, page_open: _approve_edit_reject(url, runner, tmp_path, page_open),
        on_failure="abort",
        approval={"mode": "all"},
    )
    assert result.stopped is None and len(result.records) == 4
    decisions = [(a["action"], a["who"], a["reason"]) for a in dashboard.log.controls]
    assert decisions == [
        ("approve", "e2e-approver", "as proposed"),
        ("approve", "e2e-approver", "edited"),
        ("reject", "e2e-approver", "rejected"),
        ("approve", "e2e-approver", "as proposed"),
        ("approve", "e2e-approver", "as proposed"),
    ]
    assert result.records[1].conditions["temperature_c"] == 444.0
    (refused,) = campaign_runs(runner.client, runner.config.name, "refused-proposal")
    assert refused.metadata["start"]["reason"] == "rejected by e2e-approver: rejected"
    assert (tmp_path / "dashboard-approval.png").stat().st_size > 20_000
