"""Resuming a campaign: its finished experiments, read back from the catalog in order.

Campaign state lives in the catalog only, so a campaign that starts again under the same name
rebuilds its agent and results from these records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from sdl.analysis.pipeline import instrument_time_s, read_primary
from sdl.campaign.results import ExperimentRecord, Fault
from sdl.lab.stations import Evaluate, Failed
from sdl.records.audit import exit_status
from sdl.records.catalog import campaign_runs


def resumed_records(
    client: Any, name: str, evaluate: Evaluate, record_fault: Callable[[Fault], None]
) -> Iterator[ExperimentRecord]:
    """Campaign ``name``'s finished experiments, in the order they were done.

    An experiment counts once: with the features of its successful attempt, or as failed if
    the fault policy skipped it. A raw run that was never analysed is analysed now
    (``evaluate``). A run left open by a crash, or whose data cannot be analysed, is passed to
    ``record_fault`` (action ``redo``) and does not count: its experiment is done again with a
    new proposal.
    """
    analysed = {}
    for run in campaign_runs(client, name, "analysis"):
        if exit_status(run) == "success":
            features = run["features"].read()
            analysed[run.metadata["start"]["raw_uid"]] = {
                key: float(np.asarray(features[key])[0]) for key in features.data_vars
            }
    faults = campaign_runs(client, name, "fault")
    judged = {run.metadata["start"]["raw_uid"] for run in faults}
    skips = [run for run in faults if run.metadata["start"]["action"] == "skip"]
    history = sorted(
        [*campaign_runs(client, name, "experiment"), *skips],
        key=lambda run: run.metadata["start"]["time"],
    )
    kept: set[str] = set()
    for run in history:
        start = run.metadata["start"]
        if start["_id"] in kept:
            continue
        if start["purpose"] == "fault":
            kept.add(start["_id"])
            yield ExperimentRecord(
                len(kept) - 1,
                start["_id"],
                start.get("conditions", {}),
                {},
                start["raw_uid"] or "",
                0.0,
            )
            continue
        features = _features(run, analysed, judged, evaluate, record_fault)
        if features is not None:
            kept.add(start["_id"])
            yield ExperimentRecord(
                len(kept) - 1,
                start["_id"],
                start["conditions"],
                features,
                start["uid"],
                instrument_time_s(read_primary(run, measurements=False)),
            )


def _features(
    run: Any,
    analysed: Mapping[str, dict[str, float]],
    judged: set[str],
    evaluate: Evaluate,
    record_fault: Callable[[Fault], None],
) -> dict[str, float] | None:
    """Features of a recorded experiment run, or None if it does not count."""
    start = run.metadata["start"]
    status = exit_status(run)
    if status is None and start["uid"] not in judged:
        record_fault(
            _redo(
                start,
                "interrupted",
                "the campaign stopped during this run (it has no stop document)",
            )
        )
    if status != "success":
        return None
    if start["uid"] in analysed or start["uid"] in judged:
        return analysed.get(start["uid"])
    evaluated = evaluate(start, read_primary(run))
    if isinstance(evaluated, Failed):
        record_fault(_redo(start, evaluated.kind, evaluated.reason))
        return None
    return evaluated


def _redo(start: Mapping[str, Any], kind: str, reason: str) -> Fault:
    """A fault of the raw run ``start`` whose experiment is done again."""
    return Fault(
        kind,
        reason,
        start["iteration"],
        start["_id"],
        start.get("attempt", 1),
        "redo",
        start["uid"],
    )
