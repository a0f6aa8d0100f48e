"""The fault policy's action for each failed attempt of one experiment."""

from __future__ import annotations

from sdl.campaign.config import FaultPolicies, FaultPolicy
from sdl.lab.stations import Failed
from sdl.loop.faults import ExperimentFaults, decision

MD = {"iteration": 3, "_id": "p3"}


def test_retry_until_the_retries_are_spent_then_the_fallback():
    policy = FaultPolicy(action="retry", retries=2, then="pause")
    assert [decision(policy, tries) for tries in (1, 2, 3)] == ["retry", "retry", "pause"]


def test_each_kind_of_fault_counts_its_own_tries_within_one_experiment():
    policies = FaultPolicies(
        timeout=FaultPolicy(action="retry", retries=1, then="skip"),
        corrupt_data=FaultPolicy(action="retry", retries=1, then="abort"),
    )
    faults = ExperimentFaults(policies, MD, {"temperature_c": 500.0})
    actions = [
        faults.decide(Failed(kind, "why", f"raw-{attempt}"), attempt).action
        for attempt, kind in enumerate(["timeout", "corrupt_data", "timeout", "corrupt_data"], 1)
    ]
    assert actions == ["retry", "retry", "skip", "abort"]


def test_a_fault_carries_the_experiment_and_the_raw_run():
    faults = ExperimentFaults(FaultPolicies(), MD, {"temperature_c": 500.0})
    fault = faults.decide(Failed("drift", "zero moved", "raw-1"), attempt=1)
    assert (fault.iteration, fault.proposal_id, fault.attempt, fault.raw_uid) == (
        3,
        "p3",
        1,
        "raw-1",
    )
    assert fault.action == "pause" and fault.conditions == {"temperature_c": 500.0}
