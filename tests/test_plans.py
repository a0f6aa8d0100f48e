"""The experiment plan: one valid run per sample, with the campaign's metadata."""

from __future__ import annotations

import pytest
from event_model import DocumentNames, schema_validators
from ophyd.utils.errors import LimitError

from plans.experiment import synthesize_and_measure


def _collect(RE):
    docs = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    return docs


def test_synthesize_and_measure_emits_documents_that_validate(
    RE, reactor, xrd, microscope, good_conditions
):
    docs = _collect(RE)
    md = {"campaign_id": "c1", "iteration": 3, "_id": "abc", "agent": "random"}
    (uid,) = RE(synthesize_and_measure(reactor, [xrd, microscope], good_conditions, md=md))
    for name, doc in docs:
        schema_validators[DocumentNames(name)].validate(doc)
    names = [name for name, _ in docs]
    assert names[0] == "start" and names[-1] == "stop"
    assert names.count("event") == 1 and "resource" in names and "datum" in names
    start = docs[0][1]
    assert start["uid"] == uid
    assert {k: start[k] for k in md} == md
    assert start["conditions"] == good_conditions
    assert start["detectors"] == ["xrd", "microscope"]
    event = next(doc for name, doc in docs if name == "event")
    assert event["data"]["reactor_temperature_c"] == good_conditions["temperature_c"]
    assert event["data"]["reactor_sample_id"]
    assert docs[-1][1]["exit_status"] == "success"


def test_condition_outside_limits_fails_the_run_before_synthesis(RE, reactor, xrd, lab):
    docs = _collect(RE)
    bad = {"temperature_c": 2000.0, "duration_h": 1.0, "ph": 4.0, "h2o_ti_ratio": 10.0}
    with pytest.raises(LimitError):
        RE(synthesize_and_measure(reactor, [xrd], bad))
    assert lab.sample_on_stage is None
    assert docs[-1][0] == "stop" and docs[-1][1]["exit_status"] == "fail"


def test_unknown_condition_is_refused_naming_the_reactors_conditions(RE, reactor, xrd):
    with pytest.raises(ValueError, match="has no condition.*'pressure_bar'"):
        RE(synthesize_and_measure(reactor, [xrd], {"pressure_bar": 3.0}))
