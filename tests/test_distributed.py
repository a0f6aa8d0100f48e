"""The facility deployment for real: tiled on PostgreSQL, the stream, queueservers on Redis,
analysis and agent services in their own processes; read back from the server run by run."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from bluesky_queueserver_api.zmq import REManagerAPI
from event_model import compose_run
from test_watchdog import FIRST_SCAN_HANGS
from tiled.client import from_uri

from sdl.campaign.config import parse_campaign
from sdl.facility.queue_station import StreamOutcomes
from sdl.facility.stack import Stack, StackError, StackSettings, drop_database, preflight
from sdl.lab.stations import Failed, Measured, fault_kind_of_reason
from sdl.loop.control_server import connection_file, send_request
from sdl.records.catalog import campaign_runs

POSTGRES = "postgresql://postgres@127.0.0.1:5432"


def _campaign(tmp_path, **changes):
    return parse_campaign(
        {
            "name": "distributed-test",
            "seed": 5,
            "data_dir": str(tmp_path / "data"),
            "search_space": {
                "temperature_c": {"low": 250, "high": 950, "unit": "degC"},
                "duration_h": {"low": 0.25, "high": 12, "unit": "h"},
                "ph": {"low": 1, "high": 10, "unit": "pH"},
                "h2o_ti_ratio": {"low": 2, "high": 60, "unit": "mol/mol"},
            },
            "objectives": [{"name": "photoactive_area_m2_g", "direction": "maximize"}],
            "instruments": ["xrd", "microscope"],
            "agent": {"name": "bayesian", "options": {"n_initial": 2}},
            "budget": 5,
            **changes,
        }
    )


def test_missing_services_are_named_with_the_option_that_points_elsewhere():
    problems = preflight(StackSettings(redis="127.0.0.1:1", postgres=f"{POSTGRES[:-4]}1/x"))
    assert len(problems) == 2
    assert "Redis is not answering at 127.0.0.1:1" in problems[0] and "--redis" in problems[0]
    assert "PostgreSQL is not usable" in problems[1] and "--postgres" in problems[1]


@pytest.mark.services
def test_a_start_refused_for_a_missing_redis_creates_nothing(tmp_path):
    if preflight(StackSettings(postgres=f"{POSTGRES}/test")):
        pytest.skip("needs PostgreSQL on 127.0.0.1:5432 to see that nothing is created there")
    uri = f"{POSTGRES}/sdl_test_{uuid.uuid4().hex[:12]}"
    settings = StackSettings(redis="127.0.0.1:1", postgres=uri)
    with pytest.raises(StackError, match="Redis is not answering"):
        Stack(_campaign(tmp_path), settings).__enter__()
    assert not (tmp_path / "data").exists()

    async def exists() -> bool:
        admin = await asyncpg.connect(f"{POSTGRES}/postgres")
        try:
            name = uri.rsplit("/", 1)[1]
            return bool(await admin.fetchval("SELECT 1 FROM pg_database WHERE datname=$1", name))
        finally:
            await admin.close()

    assert not asyncio.run(exists())


def _raw_run(outcomes, proposal_id, attempt, *, exit_status="success", reason="", campaign="c"):
    bundle = compose_run(
        metadata={
            "purpose": "experiment",
            "_id": proposal_id,
            "campaign_id": campaign,
            "attempt": attempt,
        }
    )
    outcomes("start", bundle.start_doc)
    descriptor = bundle.compose_descriptor(
        name="primary",
        data_keys={"reactor_synthesis_time_s": {"source": "sim", "dtype": "number", "shape": []}},
    )
    outcomes("descriptor", descriptor.descriptor_doc)
    outcomes(
        "event",
        descriptor.compose_event(
            data={"reactor_synthesis_time_s": 7200.0}, timestamps={"reactor_synthesis_time_s": 0}
        ),
    )
    outcomes("stop", bundle.compose_stop(exit_status=exit_status, reason=reason))
    return bundle.start_doc["uid"]


def _analysis_run(outcomes, raw_uid, features=None, problem=None):
    md = {
        "purpose": "analysis",
        "raw_uid": raw_uid,
        "campaign_id": "c",
        **({"problem_kind": problem[0]} if problem else {}),
    }
    bundle = compose_run(metadata=md)
    outcomes("start", bundle.start_doc)
    if features:
        descriptor = bundle.compose_descriptor(
            name="features",
            data_keys={
                name: {"source": "sdl", "dtype": "number", "shape": []} for name in features
            },
        )
        outcomes("descriptor", descriptor.descriptor_doc)
        outcomes(
            "event", descriptor.compose_event(data=features, timestamps={n: 0 for n in features})
        )
    outcomes(
        "stop",
        bundle.compose_stop(
            exit_status="fail" if problem else "success", reason=problem[1] if problem else ""
        ),
    )


def test_stream_outcomes_join_raw_and_analysis_runs_per_attempt():
    outcomes = StreamOutcomes("c")
    measured = _raw_run(outcomes, "p1", 1)
    failed_raw = _raw_run(
        outcomes, "p2", 1, exit_status="fail", reason="SetpointMissed: reactor stayed at 20 degC"
    )
    corrupt = _raw_run(outcomes, "p3", 2)
    _analysis_run(outcomes, corrupt, problem=("corrupt_data", "NaN in the pattern"))
    assert outcomes.wait(("p1", 1), timeout_s=0) is None  # its analysis has not come yet
    _analysis_run(outcomes, measured, features={"y": 3.5})

    assert outcomes.wait(("p1", 1), timeout_s=1) == Measured(measured, {"y": 3.5}, 7200.0)
    assert outcomes.wait(("p2", 1), timeout_s=1) == Failed(
        "setpoint_miss", "SetpointMissed: reactor stayed at 20 degC", failed_raw
    )
    assert outcomes.wait(("p3", 2), timeout_s=1) == Failed(
        "corrupt_data", "NaN in the pattern", corrupt
    )


def test_stream_outcomes_ignore_other_campaigns_on_the_same_stream():
    outcomes = StreamOutcomes("c")
    _raw_run(outcomes, "p1", 1, exit_status="fail", reason="InstrumentFault: x", campaign="d")
    assert outcomes.wait(("p1", 1), timeout_s=0) is None


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("InstrumentFault: xrd detector error", "instrument_error"),
        ("TimeoutError: reactor went silent", "timeout"),
        ("EpicsError: PV SDL:T lost", "disconnect"),
        ("LimitError: temperature_c=2000", "instrument_error"),
    ],
)
def test_a_failed_run_s_stop_reason_gives_its_fault_kind(reason, kind):
    assert fault_kind_of_reason(reason) == kind


def _follow_dashboard(url: str, agent) -> dict:
    """Poll the agent service's dashboard while the campaign runs: what a browser would get."""
    base, _, token = url.partition("/?token=")
    seen = {"without_token": httpx.get(f"{base}/api/state").status_code, "experiments": 0}
    while agent.poll() is None:
        try:
            state = httpx.get(f"{base}/api/state", params={"token": token}, timeout=30).json()
        except httpx.HTTPError:  # the page stops with the campaign
            break
        seen["run_engine"] = state["status"]["run_engine"]
        summary = state["summary"]
        if summary["best"] and summary["experiments"] > seen["experiments"]:
            seen.update(experiments=summary["experiments"], best=summary["best"]["value"])
        time.sleep(0.5)
    return seen


@pytest.fixture
def database():
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    problems = preflight(StackSettings(postgres=f"{POSTGRES}/test"))
    if problems:
        pytest.skip("the facility stack needs Redis and PostgreSQL: " + "; ".join(problems))
    uri = f"{POSTGRES}/sdl_test_{uuid.uuid4().hex[:12]}"  # the stack creates it
    yield uri
    drop_database(uri)


@pytest.mark.slow
@pytest.mark.services
def test_a_campaign_runs_through_queueservers_stream_services_and_tiled_on_postgres(
    tmp_path, database
):
    config = _campaign(tmp_path)
    with Stack(config, StackSettings(stations=2, postgres=database)) as stack:
        assert urlsplit(stack.tiled_uri).hostname == "127.0.0.1"
        assert stack.connection_file.stat().st_mode & 0o077 == 0  # holds the API key
        agent = stack.start_services(dashboard=True)
        url = stack.dashboard_address(agent).split(": ", 1)[1]
        seen = _follow_dashboard(url, agent)
        assert agent.wait(timeout=400) == 0, agent.log_path.read_text()[-3000:]
        assert seen["without_token"] == 401
        assert "station-0" in seen["run_engine"] and "station-1" in seen["run_engine"]
        assert seen["experiments"] >= 1 and seen["best"] > 0  # fed by the stream
        client = from_uri(stack.tiled_uri, api_key=stack.api_key)
        experiments = campaign_runs(client, config.name, "experiment")
        analyses = {
            run.metadata["start"]["raw_uid"]: run
            for run in campaign_runs(client, config.name, "analysis")
        }
        campaign = campaign_runs(client, config.name, "campaign")
        assert len(campaign) == 1 and campaign[0].metadata["start"]["config"]["budget"] == 5

        assert len(experiments) == config.budget
        assert {run.metadata["start"]["station"] for run in experiments} == {
            "station-0",
            "station-1",
        }
        proposals = [run.metadata["start"]["_id"] for run in experiments]
        assert len(set(proposals)) == len(proposals)
        conditions = {
            tuple(sorted(run.metadata["start"]["conditions"].items())) for run in experiments
        }
        assert len(conditions) == len(experiments)  # no two stations got the same point
        for run in experiments:
            start = run.metadata["start"]
            assert run.metadata["stop"]["exit_status"] == "success"
            primary = run["primary"].read()
            assert primary["xrd_counts"].shape[-1] > 1000
            assert min(primary["microscope_image"].shape[-2:]) >= 128  # the HDF5 frame, read back
            analysis = analyses[start["uid"]]
            assert analysis.metadata["start"]["_id"] == start["_id"]
            features = analysis["features"].read()
            assert float(features["photoactive_area_m2_g"][0]) >= 0  # 0: amorphous
            for name, value in start["conditions"].items():
                assert config.search_space[name].low <= value <= config.search_space[name].high
    assert not stack.connection_file.exists()


def _wait(condition, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.services
def test_a_plan_hung_in_a_queueserver_is_aborted_and_retried(tmp_path, database):
    config = _campaign(tmp_path, budget=2, **FIRST_SCAN_HANGS)
    with Stack(config, StackSettings(stations=1, postgres=database)) as stack:
        agent = stack.start_services()
        assert agent.wait(timeout=400) == 0, agent.log_path.read_text()[-3000:]
        client = from_uri(stack.tiled_uri, api_key=stack.api_key)
        faults = [run.metadata["start"] for run in campaign_runs(client, config.name, "fault")]
        assert [(f["kind"], f["action"]) for f in faults] == [("hang", "retry")]
        assert "watchdog" in faults[0]["reason"]
        experiments = campaign_runs(client, config.name, "experiment")
        assert [run.metadata["stop"]["exit_status"] for run in experiments] == [
            "abort",
            "success",
            "success",
        ]


@pytest.mark.slow
@pytest.mark.services
def test_the_agent_service_sends_a_plan_only_once_a_person_approved_it(tmp_path, database):
    config = _campaign(
        tmp_path,
        budget=1,
        agent={"name": "random"},
        devices={"backend": "sim", "system": "tio2_solgel", "speedup": 5000.0},
        approval={"mode": "all"},
    )
    with Stack(config, StackSettings(stations=1, postgres=database)) as stack:
        agent = stack.start_services()
        station = REManagerAPI(zmq_control_addr=stack.stations["station-0"])
        control_file = connection_file(stack.data_dir, config.name)
        try:
            _wait(lambda: control_file.exists(), "the agent service's control socket")
            _wait(
                lambda: send_request(control_file, "status")["awaiting_approval"],
                "a proposal waiting for approval",
            )
            first = send_request(control_file, "status")["awaiting_approval"][0]
            time.sleep(1.0)  # had the plan been sent, the queueserver would have it by now
            assert station.queue_get()["items"] == [] and station.history_get()["items"] == []
            assert send_request(
                control_file, "reject", who="night-shift", proposal_id=first["proposal_id"]
            )["ok"]
            _wait(
                lambda: any(
                    w["proposal_id"] != first["proposal_id"]
                    for w in send_request(control_file, "status")["awaiting_approval"]
                ),
                "the next proposal",
            )
            (second,) = send_request(control_file, "status")["awaiting_approval"]
            assert send_request(
                control_file,
                "approve",
                who="night-shift",
                proposal_id=second["proposal_id"],
                conditions={"temperature_c": 555.0},
            )["ok"]
            assert agent.wait(timeout=300) == 0, agent.log_path.read_text()[-3000:]
            (plan,) = station.history_get()["items"]
        finally:
            station.close()
        assert plan["args"][0]["temperature_c"] == 555.0
        client = from_uri(stack.tiled_uri, api_key=stack.api_key)
        decisions = [run.metadata["start"] for run in campaign_runs(client, config.name, "control")]
        assert [(d["action"], d["_id"]) for d in decisions] == [
            ("reject", first["proposal_id"]),
            ("approve", second["proposal_id"]),
        ]
        (experiment,) = campaign_runs(client, config.name, "experiment")
        assert experiment.metadata["start"]["request_id"] == decisions[1]["request_id"]


@pytest.mark.slow
@pytest.mark.services
def test_a_plan_that_fails_in_a_queueserver_never_stalls_its_queue(tmp_path, database):
    config = _campaign(
        tmp_path,
        budget=2,
        agent={"name": "random"},
        instruments=["xrd"],
        objectives=[{"name": "anatase_fraction", "direction": "maximize"}],
        devices={
            "backend": "sim",
            "system": "tio2_solgel",
            "speedup": 5000.0,
            "faults": {"instrument_error": {"at": [0], "devices": ["xrd"]}},
        },
        on_fault={"instrument_error": {"action": "skip"}},
    )
    with Stack(config, StackSettings(stations=1, postgres=database)) as stack:
        agent = stack.start_services()
        assert agent.wait(timeout=300) == 0, agent.log_path.read_text()[-3000:]
        station = REManagerAPI(zmq_control_addr=stack.stations["station-0"])
        try:
            history = [item["result"]["exit_status"] for item in station.history_get()["items"]]
            queue, status = station.queue_get()["items"], station.status()
        finally:
            station.close()
        assert history == ["failed", "completed", "completed"]
        assert queue == [] and status["manager_state"] == "idle"  # the failed plan is not rerun
        client = from_uri(stack.tiled_uri, api_key=stack.api_key)
        faults = [run.metadata["start"] for run in campaign_runs(client, config.name, "fault")]
        assert [(f["kind"], f["action"]) for f in faults] == [("instrument_error", "skip")]
        experiments = campaign_runs(client, config.name, "experiment")
        assert [run.metadata["stop"]["exit_status"] for run in experiments] == [
            "fail",
            "success",
            "success",
        ]


@pytest.mark.slow
@pytest.mark.services
def test_a_paused_queueserver_resumes_and_services_killed_mid_campaign_lose_nothing(
    tmp_path, database
):
    """One night: someone pauses a station's RunEngine and resumes it; later the analysis
    service and the station's queueserver die (SIGKILL); the stack starts them again."""
    config = _campaign(
        tmp_path,
        budget=4,
        agent={"name": "random"},
        devices={"backend": "sim", "system": "tio2_solgel", "speedup": 2000.0},
    )
    with Stack(config, StackSettings(stations=1, postgres=database)) as stack:
        agent = stack.start_services()
        station = REManagerAPI(zmq_control_addr=stack.stations["station-0"])
        control_file = connection_file(stack.data_dir, config.name)
        client = from_uri(stack.tiled_uri, api_key=stack.api_key)
        try:
            _wait(lambda: station.status()["re_state"] == "running", "a running plan", 300)
            assert send_request(
                control_file, "pause", who="night-shift", reason="checking the furnace"
            )["ok"]
            _wait(lambda: station.status()["re_state"] == "paused", "the RunEngine to pause")
            time.sleep(2.0)
            assert station.status()["re_state"] == "paused"  # the campaign keeps it paused
            assert send_request(control_file, "resume", who="night-shift")["ok"]
            _wait(
                lambda: len(campaign_runs(client, config.name, "experiment")) >= 2,
                "the second experiment",
                timeout_s=300,
            )
        finally:
            station.close()
        killed = {name: stack.process(name) for name in ("analysis-service", "station-0")}
        for process in killed.values():  # as the kernel's OOM killer would: no goodbyes
            os.killpg(process.pid, signal.SIGKILL)
        _wait(
            lambda: all(stack.process(name) is not old for name, old in killed.items()),
            "the services to be started again",
        )
        assert agent.wait(timeout=600) == 0, agent.log_path.read_text()[-3000:]
        experiments = campaign_runs(client, config.name, "experiment")
        analysed = {
            run.metadata["start"]["raw_uid"]
            for run in campaign_runs(client, config.name, "analysis")
        }
        controls = campaign_runs(client, config.name, "control")
    assert [
        (run.metadata["start"]["action"], run.metadata["start"]["who"]) for run in controls
    ] == [("pause", "night-shift"), ("resume", "night-shift")]
    succeeded = [
        run.metadata["start"]["uid"]
        for run in experiments
        if (run.metadata.get("stop") or {}).get("exit_status") == "success"
    ]
    assert len(succeeded) == config.budget
    assert set(succeeded) <= analysed  # every measured sample was analysed
