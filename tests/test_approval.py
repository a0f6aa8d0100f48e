"""The approval gate: proposals that need a person wait for one, and every decision is recorded."""

from __future__ import annotations

import logging
import math
import threading
import time

import pytest
from pydantic import ValidationError

from sdl.campaign.approval import TIMEOUT_DECIDER, ApprovalConfig, approval_reasons
from sdl.campaign.config import ParameterConfig, parse_campaign
from sdl.campaign.control import CampaignAborted, CampaignControl, WaitingProposal
from sdl.loop.control_server import ControlServer, send_request
from sdl.loop.runner import CampaignRunner
from sdl.records.catalog import campaign_runs, open_catalog
from tests.test_control import quick_campaign, when

SPACE = {
    "temperature_c": ParameterConfig(low=250, high=950, unit="degC"),
    "ph": ParameterConfig(low=1, high=10, unit="pH"),
}
MIDDLE = {"temperature_c": 600.0, "ph": 5.5}


def rules(**given) -> ApprovalConfig:
    return ApprovalConfig(mode="rules", rules=given)


def gated(data_dir, budget: int, approval: dict, stations: int = 1, **sections):
    """The quick campaign of test_control with this approval gate (and other sections)."""
    quick = quick_campaign(data_dir, budget, stations=stations).model_dump(mode="json")
    return parse_campaign({**quick, "approval": approval, **sections})


def test_without_a_gate_nothing_waits_and_with_all_everything_does():
    assert approval_reasons(ApprovalConfig(), MIDDLE, {}, [], SPACE) == []
    assert approval_reasons(ApprovalConfig(mode="all"), MIDDLE, {}, [MIDDLE], SPACE) == [
        "every proposal is approved by a person (approval.mode: all)"
    ]


def test_a_proposal_past_a_soft_limit_waits_naming_the_limit_and_unit():
    gate = rules(soft_limits={"temperature_c": {"above": 850}, "ph": {"below": 2}})
    assert approval_reasons(gate, MIDDLE, {}, [], SPACE) == []
    hot_and_acid = {"temperature_c": 900.0, "ph": 1.5}
    assert approval_reasons(gate, hot_and_acid, {}, [], SPACE) == [
        "temperature_c = 900 degC is above 850 degC",
        "ph = 1.5 pH is below 2 pH",
    ]


def test_a_proposal_far_from_every_experiment_done_waits():
    gate = rules(outside_explored=0.2)
    explored = [MIDDLE, {"temperature_c": 300.0, "ph": 2.0}]
    near = {"temperature_c": 650.0, "ph": 6.0}  # 0.07 + 0.11 in scaled units
    far = {"temperature_c": 950.0, "ph": 10.0}
    assert approval_reasons(gate, near, {}, explored, SPACE) == []
    (reason,) = approval_reasons(gate, far, {}, explored, SPACE)
    assert reason.startswith(f"{math.hypot(0.5, 0.5):.2f} from the nearest experiment")
    assert approval_reasons(gate, near, {}, [], SPACE) == ["no experiment has been done yet"]


def test_predictions_past_a_threshold_wait_and_a_missing_prediction_fails_safe():
    gate = rules(predicted={"y": {"above": 10}}, uncertainty_above={"y": 2.0})
    calm = {"y_predicted_mean": 5.0, "y_predicted_std": 1.0}
    assert approval_reasons(gate, MIDDLE, calm, [], SPACE) == []
    bold = {"y_predicted_mean": 12.5, "y_predicted_std": 3.0}
    assert approval_reasons(gate, MIDDLE, bold, [], SPACE) == [
        "predicted y = 12.5 is above 10",
        "predicted y uncertainty 3 is above 2",
    ]
    assert approval_reasons(gate, MIDDLE, {}, [], SPACE) == [
        "the agent predicts no y",
        "the agent gives no uncertainty for y",
    ]


def test_the_campaign_file_refuses_rules_that_name_nothing_it_has(tmp_path):
    unknown = {"soft_limits": {"pressure_bar": {"above": 2}}, "predicted": {"yield": {"below": 0}}}
    with pytest.raises(ValueError) as refused:
        gated(tmp_path, 2, {"mode": "rules", "rules": unknown})
    message = str(refused.value)
    assert "approval.rules.soft_limits.pressure_bar" in message
    assert "'pressure_bar' is not a search_space condition" in message
    assert "'yield' is not a objective" not in message and "'yield' is not an objective" in message
    with pytest.raises(ValidationError, match="mode: rules needs at least one rule"):
        ApprovalConfig(mode="rules")
    with pytest.raises(ValidationError, match="only read with mode: rules"):
        ApprovalConfig(mode="all", rules={"outside_explored": 0.1})
    with pytest.raises(ValidationError, match="give above, below or both"):
        rules(soft_limits={"temperature_c": {}})


def _held(control: CampaignControl, proposal_id: str = "p1") -> WaitingProposal:
    waiting = WaitingProposal(proposal_id, dict(MIDDLE), {}, ("every proposal",), "station")
    control.hold(waiting)
    return waiting


def test_a_decision_names_a_waiting_proposal_and_an_edit_stays_within_the_limits():
    control = CampaignControl(
        check_conditions=lambda c: "too hot" if c["temperature_c"] > 900 else None
    )
    _held(control)
    with pytest.raises(
        ValueError, match=r"no proposal 'p2' is waiting for approval; waiting: \['p1'\]"
    ):
        control.approve("p2", "alice")
    with pytest.raises(ValueError, match="the edited conditions cannot run: too hot"):
        control.approve("p1", "alice", conditions={"temperature_c": 950})
    with pytest.raises(ValueError, match=r"unknown condition\(s\) \['pressure_bar'\]"):
        control.approve("p1", "alice", conditions={"pressure_bar": 1})
    assert control.take_log() == [] and [w.proposal_id for w in control.waiting] == ["p1"]
    control.approve("p1", "alice", "cooler is safer", {"temperature_c": 550})
    decision = control.await_decision("p1", timeout_s=0)
    assert (decision.action, decision.who, decision.reason) == (
        "approve",
        "alice",
        "cooler is safer",
    )
    assert decision.conditions == {"temperature_c": 550.0, "ph": 5.5}
    assert control.take_log() == [decision] and control.waiting == []
    with pytest.raises(ValueError, match="no proposal 'p1' is waiting"):
        control.reject("p1", "bob")


def test_waiting_ends_in_a_timeout_or_an_abort():
    control = CampaignControl()
    _held(control)
    with pytest.raises(TimeoutError):
        control.await_decision("p1", timeout_s=0.01)
    assert [w.proposal_id for w in control.waiting] == ["p1"]
    threading.Timer(0.05, control.abort, args=("bob", "end of shift")).start()
    with pytest.raises(CampaignAborted, match="aborted by bob: end of shift"):
        control.await_decision("p1", timeout_s=None)
    assert control.waiting == []


def test_sdl_control_lists_approves_and_rejects_waiting_proposals(tmp_path):
    control = CampaignControl()
    status = lambda: {"awaiting_approval": [w.as_json() for w in control.waiting]}  # noqa: E731
    server = ControlServer(control, status).start(tmp_path / "c.json")
    try:
        _held(control, "p1")
        _held(control, "p2")
        shown = send_request(tmp_path / "c.json", "status")["awaiting_approval"]
        assert [w["proposal_id"] for w in shown] == ["p1", "p2"]
        assert shown[0]["conditions"] == MIDDLE and shown[0]["reasons"] == ["every proposal"]
        reply = send_request(tmp_path / "c.json", "approve", who="ann", conditions={"ph": 7})
        assert reply == {
            "ok": False,
            "error": "approve: proposal_id names the waiting proposal (see status)",
        }
        reply = send_request(
            tmp_path / "c.json", "approve", who="ann", proposal_id="p1", conditions={"ph": "7"}
        )
        assert reply["ok"] is False and "must be numbers" in reply["error"]
        reply = send_request(
            tmp_path / "c.json", "approve", who="ann", proposal_id="p1", conditions={"ph": 7}
        )
        assert reply["ok"] and [w["proposal_id"] for w in reply["awaiting_approval"]] == ["p2"]
        send_request(tmp_path / "c.json", "reject", who="ann", proposal_id="p2", reason="dup")
        approved = control.await_decision("p1", 0)
        rejected = control.await_decision("p2", 0)
    finally:
        server.stop()
    assert approved.conditions == {"temperature_c": 600.0, "ph": 7.0}
    assert (rejected.action, rejected.who, rejected.reason) == ("reject", "ann", "dup")


@pytest.mark.slow
def test_a_person_approves_edits_and_rejects_and_the_catalog_says_who_and_why(data_dir, caplog):
    config = gated(data_dir, 3, {"mode": "all"}, alerts={"notifiers": [{"kind": "log"}]})
    runner = CampaignRunner(config)
    decisions = iter(
        [
            lambda pid: runner.control.approve(pid, "alice", "looks fine"),
            lambda pid: runner.control.reject(pid, "bob", "we did that last week"),
            lambda pid: runner.control.approve(pid, "alice", "cooler", {"temperature_c": 400.0}),
            lambda pid: runner.control.approve(pid, "alice"),
            lambda pid: runner.control.approve(pid, "alice"),
        ]
    )

    def decide_each() -> None:
        while runner.result.stopped is None and len(runner.result.records) < 3:
            for waiting in runner.control.waiting:
                next(decisions)(waiting.proposal_id)
            threading.Event().wait(0.01)

    threading.Thread(target=decide_each, daemon=True).start()
    with caplog.at_level(logging.WARNING):
        result = runner.run()
    assert result.stopped is None and len(result.records) == 3 and result.refused == 1
    client = open_catalog(data_dir)
    requests = [run.metadata["start"] for run in campaign_runs(client, config.name, "control")]
    assert [(r["action"], r["who"], r["reason"]) for r in requests] == [
        ("approve", "alice", "looks fine"),
        ("reject", "bob", "we did that last week"),
        ("approve", "alice", "cooler"),
        ("approve", "alice", ""),
    ]
    (refused,) = [
        run.metadata["start"] for run in campaign_runs(client, config.name, "refused-proposal")
    ]
    assert refused["reason"] == "rejected by bob: we did that last week"
    assert (
        refused["_id"] == requests[1]["_id"] and refused["request_id"] == requests[1]["request_id"]
    )
    experiments = [
        run.metadata["start"] for run in campaign_runs(client, config.name, "experiment")
    ]
    assert [e["request_id"] for e in experiments] == [requests[i]["request_id"] for i in (0, 2, 3)]
    assert [e["_id"] for e in experiments] == [requests[i]["_id"] for i in (0, 2, 3)]
    assert experiments[1]["conditions"]["temperature_c"] == 400.0
    assert result.records[1].conditions["temperature_c"] == 400.0
    assert sum("ALERT" in m and "approval_waiting" in m for m in caplog.messages) == 4


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["approve", "reject"])
def test_nobody_deciding_in_time_approves_or_rejects_as_the_campaign_file_says(data_dir, policy):
    gate = {"mode": "rules", "rules": {"soft_limits": {"temperature_c": {"above": 600}}}}
    config = gated(data_dir, 4, {**gate, "timeout_s": 0.2, "on_timeout": policy})
    result = CampaignRunner(config).run()
    client = open_catalog(data_dir)
    requests = [run.metadata["start"] for run in campaign_runs(client, config.name, "control")]
    assert requests and {(r["action"], r["who"]) for r in requests} == {(policy, TIMEOUT_DECIDER)}
    assert all(r["reason"] == "nobody decided within 0.2 s" for r in requests)
    assert len(result.records) == 4
    hot = [r for r in result.records if r.conditions["temperature_c"] > 600]
    if policy == "reject":
        assert hot == [] and result.refused == len(requests)
    else:
        assert len(hot) == len(requests) and result.refused == 0


@pytest.mark.slow
def test_a_wait_past_the_timeout_pauses_the_campaign_and_a_person_carries_on(data_dir):
    config = gated(data_dir, 1, {"mode": "all", "timeout_s": 0.2, "on_timeout": "pause"})
    runner = CampaignRunner(config)

    def approve_and_resume() -> None:
        (waiting,) = runner.control.waiting
        runner.control.approve(waiting.proposal_id, "night shift", "checked")
        runner.control.resume("night shift")

    when(lambda: runner.control.paused is not None, approve_and_resume)
    result = runner.run()
    assert len(result.records) == 1
    requests = [
        run.metadata["start"]
        for run in campaign_runs(open_catalog(data_dir), config.name, "control")
    ]
    assert [(r["action"], r["who"]) for r in requests] == [
        ("pause", TIMEOUT_DECIDER),
        ("approve", "night shift"),
        ("resume", "night shift"),
    ]
    assert requests[0]["reason"].endswith("nobody decided within 0.2 s")


@pytest.mark.slow
def test_an_approved_proposal_the_campaign_stopped_before_runs_first_on_resume(data_dir):
    config = gated(data_dir, 2, {"mode": "all"})
    runner = CampaignRunner(config)

    def approve_while_paused() -> None:
        (waiting,) = runner.control.waiting
        runner.control.pause("alice", "furnace check")
        runner.control.approve(waiting.proposal_id, "alice", conditions={"temperature_c": 333.0})
        runner.control.abort("alice", "end of shift")

    when(lambda: bool(runner.control.waiting), approve_while_paused)
    assert runner.run().stopped == "aborted by alice: end of shift"
    assert campaign_runs(open_catalog(data_dir), config.name, "experiment") == []
    (approved,) = [
        run.metadata["start"]
        for run in campaign_runs(open_catalog(data_dir), config.name, "control")
        if run.metadata["start"]["action"] == "approve"
    ]

    resumed = CampaignRunner(config.model_copy(update={"approval": ApprovalConfig()})).run()
    first = resumed.records[0]
    assert first.conditions["temperature_c"] == 333.0 and len(resumed.records) == 2
    (experiment, _) = [
        run.metadata["start"]
        for run in campaign_runs(open_catalog(data_dir), config.name, "experiment")
    ]
    assert experiment["request_id"] == approved["request_id"]
    assert experiment["proposed_by"] == "alice"


@pytest.mark.slow
def test_a_station_whose_proposal_waits_keeps_its_place_while_the_other_works(data_dir):
    config = gated(data_dir, 4, {"mode": "all"}, stations=2)
    runner = CampaignRunner(config)
    held_back: list[str] = []

    def hold_station_1_while_station_0_works() -> None:
        deadline = time.monotonic() + 300
        while runner.result.stopped is None and len(runner.result.records) < 4:
            assert time.monotonic() < deadline
            station_0_done = sum(r.station == "station-0" for r in runner.result.records)
            for waiting in runner.control.waiting:
                if waiting.station == "station-1" and not held_back:
                    held_back.append(waiting.proposal_id)
                if waiting.station == "station-0" or (held_back and station_0_done >= 2):
                    runner.control.approve(waiting.proposal_id, "alice")
            time.sleep(0.01)

    threading.Thread(target=hold_station_1_while_station_0_works, daemon=True).start()
    result = runner.run()
    assert len(result.records) == 4 and result.refused == 0 and held_back
    (held,) = [r for r in result.records if r.proposal_id == held_back[0]]
    assert held.station == "station-1"
    before = result.records[: result.records.index(held)]
    assert sum(r.station == "station-0" for r in before) >= 2  # station-0 worked meanwhile


def test_an_edit_is_checked_against_the_linear_constraints_too(data_dir):
    config = gated(
        data_dir, 1, {"mode": "all"}, constraints={"linear": ["temperature_c + 50*ph <= 1000"]}
    )
    runner = CampaignRunner(config)
    proposed = {"temperature_c": 400.0, "duration_h": 2.0, "ph": 2.0, "h2o_ti_ratio": 20.0}
    runner.control.hold(WaitingProposal("p1", proposed, {}, (), "s"))
    with pytest.raises(ValueError, match="the edited conditions cannot run: .*1000"):
        runner.control.approve("p1", "ann", conditions={"temperature_c": 900.0, "ph": 9.0})
    assert [w.proposal_id for w in runner.control.waiting] == ["p1"]


@pytest.mark.slow
def test_a_station_that_fails_releases_the_others_from_the_gate_and_nothing_more_runs(data_dir):
    config = gated(data_dir, 4, {"mode": "all", "timeout_s": None}, stations=2)

    def fail_after_the_first(result) -> None:
        raise RuntimeError("the furnace controller crashed")

    runner = CampaignRunner(config, on_experiment=fail_after_the_first)

    def approve_station_0_once() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            mine = [w for w in runner.control.waiting if w.station == "station-0"]
            others = [w for w in runner.control.waiting if w.station == "station-1"]
            if mine and others:  # both hold a proposal: let station-0 go on, alone
                runner.control.approve(mine[0].proposal_id, "ann")
                return
            time.sleep(0.01)

    threading.Thread(target=approve_station_0_once, daemon=True).start()
    with pytest.raises(RuntimeError, match="furnace controller crashed"):
        runner.run()
    assert len(runner.result.records) == 1 and runner.control.waiting == []
    experiments = campaign_runs(open_catalog(data_dir), config.name, "experiment")
    assert [run.metadata["start"]["station"] for run in experiments] == ["station-0"]
