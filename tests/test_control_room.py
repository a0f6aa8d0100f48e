"""The control room: every campaign of a catalog, finished or running, viewed and steered."""

from __future__ import annotations

import threading
import time

import pytest
from starlette.testclient import TestClient

from sdl.facility.control_room import ControlRoom
from sdl.loop.runner import CampaignRunner
from sdl.records.catalog import campaign_runs, open_catalog
from tests.test_approval import gated
from tests.test_control import quick_campaign

TOKEN = "room-token"


def _room(data_dir) -> tuple[ControlRoom, TestClient]:
    room = ControlRoom(open_catalog(data_dir), data_dir, "the test catalog", token=TOKEN)
    return room, TestClient(room.app)


def _get(client: TestClient, path: str):
    return client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})


@pytest.mark.slow
def test_finished_and_stopped_campaigns_stay_viewable_and_are_listed_on_one_page(data_dir):
    CampaignRunner(quick_campaign(data_dir, 2)).run()
    stopped = quick_campaign(data_dir, 3).model_copy(update={"name": "stopped-early"})
    runner = CampaignRunner(stopped, on_experiment=lambda result: runner.control.abort("ann"))
    runner.run()
    room, client = _room(data_dir)
    try:
        assert client.get("/").status_code == 401
        assert client.get("/campaign/stopped-early/api/state").status_code == 401
        rows = {row["campaign"]: row for row in _get(client, "/api/campaigns").json()}
        assert set(rows) == {"tio2-photoactive-bo", "stopped-early"}
        assert (
            rows["tio2-photoactive-bo"]["state"],
            rows["tio2-photoactive-bo"]["experiments"],
        ) == (
            "finished",
            2,
        )
        assert (rows["stopped-early"]["state"], rows["stopped-early"]["experiments"]) == (
            "stopped",
            1,
        )
        assert rows["stopped-early"]["best"] is not None
        index = _get(client, "/").text
        assert "the test catalog" in index and "1 / 3" in index and "UTC" in index
        assert 'href="campaign/stopped-early/?token=room-token"' in index

        state = _get(client, "/campaign/stopped-early/api/state").json()
        assert state["status"]["state"] == "stopped" and state["status"]["controllable"] is False
        assert state["summary"]["experiments"] == 1
        assert [c["action"] for c in state["controls"]] == ["abort"]
        assert len(state["figures"]["convergence"]["data"][0]["x"]) == 1
        refused = client.post(
            "/campaign/stopped-early/api/control/resume",
            json={"who": "ann"},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert refused.status_code == 422 and "not running" in refused.json()["error"]
        page = _get(client, "/campaign/stopped-early")  # relative links need the slash
        assert page.url.path == "/campaign/stopped-early/" and "Steer the campaign" in page.text
        assert _get(client, "/campaign/nothing-here/").status_code == 404
    finally:
        room.stop()


@pytest.mark.slow
def test_a_campaign_running_elsewhere_is_followed_and_its_waiting_proposal_approved(data_dir):
    config = gated(data_dir, 2, {"mode": "all"})
    runner = CampaignRunner(config, serve_control=True)
    done = threading.Event()
    threading.Thread(target=lambda: (runner.run(), done.set()), daemon=True).start()
    room, client = _room(data_dir)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status = _get(client, f"/campaign/{config.name}/api/state").json()["status"]
            if status["awaiting_approval"]:
                break
            time.sleep(0.2)
        assert status["state"] == "waiting for approval" and status["controllable"] is True
        for _ in range(2):
            while not (waiting := runner.control.waiting):
                assert not done.wait(0.05), "the campaign ended before its proposals were decided"
            reply = client.post(
                f"/campaign/{config.name}/api/control/approve",
                json={"who": "control room", "proposal_id": waiting[0].proposal_id},
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
            assert reply.status_code == 200, reply.text
        assert done.wait(120)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = _get(client, f"/campaign/{config.name}/api/state").json()
            if state["summary"]["experiments"] == 2 and state["status"]["state"] == "finished":
                break
            time.sleep(0.2)
        assert (state["summary"]["experiments"], state["status"]["state"]) == (2, "finished")
    finally:
        room.stop()
    decisions = campaign_runs(open_catalog(data_dir), config.name, "control")
    assert [run.metadata["start"]["who"] for run in decisions] == ["control room"] * 2


@pytest.mark.slow
def test_the_control_room_reads_a_catalog_served_by_tiled(tmp_path):
    from tiled.client import from_uri
    from tiled.server import SimpleTiledServer

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    server = SimpleTiledServer(tmp_path / "server", readable_storage=[data_dir])
    config = quick_campaign(data_dir, 1)
    CampaignRunner(config, client=from_uri(server.uri)).run()
    room = ControlRoom(from_uri(server.uri), data_dir, "the facility catalog", token=TOKEN)
    try:
        (row,) = _get(TestClient(room.app), "/api/campaigns").json()
    finally:
        room.stop()
    assert (row["campaign"], row["state"], row["experiments"]) == (config.name, "finished", 1)


def test_without_the_token_the_control_room_opens_nothing_but_serves_plotly(data_dir):
    room, client = _room(data_dir)
    try:
        assert client.get("/campaign/anything/api/state").status_code == 401
        assert client.get("/campaign/anything/static/plotly.min.js").status_code == 200
        assert room._views == {}  # no view made, no catalog read, for a request without token
    finally:
        room.stop()
