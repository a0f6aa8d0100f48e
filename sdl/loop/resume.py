"""Resuming a campaign: its finished experiments, read back from the catalog in order.

Campaign state lives in the catalog only, so a campaign that starts again under the same name
rebuilds its agent and results from these records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from sdl.analysis.pipeline import RawRun, SampleAnalysis, instrument_time_s, read_primary
from sdl.campaign.control import ControlAction
from sdl.campaign.results import ExperimentRecord, Fault
from sdl.loop.faults import redo_fault
from sdl.records import vocabulary
from sdl.records.catalog import campaign_runs, exit_status, recorded_features
from sdl.records.vocabulary import DocumentCallback, Purpose


def resumed_records(
    client: Any,
    name: str,
    analysis: SampleAnalysis,
    emit: DocumentCallback,
    record_fault: Callable[[Fault], None],
) -> Iterator[ExperimentRecord]:
    """Campaign ``name``'s finished experiments, in the order they were done.

    An experiment counts once: with the features of its successful attempt, or as failed if
    the fault policy skipped it. A raw run that was never analysed is analysed now with
    ``analysis``, and its analysis run passed to ``emit``. A run left open by a crash, or whose
    data cannot be analysed, is passed to ``record_fault`` (action ``redo``) and does not
    count: its experiment is done again with a new proposal.
    """
    analysed = {
        run.metadata["start"][vocabulary.RAW_UID]: recorded_features(run)
        for run in campaign_runs(client, name, Purpose.ANALYSIS)
        if exit_status(run) == vocabulary.SUCCESS
    }
    faults = campaign_runs(client, name, Purpose.FAULT)
    judged = {run.metadata["start"][vocabulary.RAW_UID] for run in faults}
    skips = [run for run in faults if run.metadata["start"]["action"] == "skip"]
    history = sorted(
        [*campaign_runs(client, name, Purpose.EXPERIMENT), *skips],
        key=lambda run: run.metadata["start"]["time"],
    )
    experiment_stations = {
        run.metadata["start"][vocabulary.PROPOSAL_ID]: run.metadata["start"].get(
            vocabulary.STATION, ""
        )
        for run in history
        if run.metadata["start"][vocabulary.PURPOSE] == Purpose.EXPERIMENT
    }
    kept: set[str] = set()
    for run in history:
        start = run.metadata["start"]
        if start[vocabulary.PROPOSAL_ID] in kept:
            continue
        if start[vocabulary.PURPOSE] == Purpose.FAULT:
            kept.add(start[vocabulary.PROPOSAL_ID])
            yield ExperimentRecord(
                len(kept) - 1,
                start[vocabulary.PROPOSAL_ID],
                start.get("conditions", {}),
                {},
                start[vocabulary.RAW_UID] or "",
                0.0,
                experiment_stations.get(start[vocabulary.PROPOSAL_ID], ""),
            )
            continue
        features = _features(run, analysed, judged, analysis, emit, record_fault)
        if features is not None:
            kept.add(start[vocabulary.PROPOSAL_ID])
            yield ExperimentRecord(
                len(kept) - 1,
                start[vocabulary.PROPOSAL_ID],
                start["conditions"],
                features,
                start["uid"],
                instrument_time_s(read_primary(run, measurements=False)),
                start.get(vocabulary.STATION, ""),
            )


def _features(
    run: Any,
    analysed: Mapping[str, dict[str, float]],
    judged: set[str],
    analysis: SampleAnalysis,
    emit: DocumentCallback,
    record_fault: Callable[[Fault], None],
) -> dict[str, float] | None:
    """Features of a recorded experiment run, or None if it does not count."""
    start = run.metadata["start"]
    status = exit_status(run)
    if status is None and start["uid"] not in judged:
        record_fault(
            redo_fault(
                start,
                "interrupted",
                "the campaign stopped during this run (it has no stop document)",
            )
        )
    if status != vocabulary.SUCCESS:
        return None
    if start["uid"] in analysed or start["uid"] in judged:
        return analysed.get(start["uid"])
    reanalysed = analysis.analyse(RawRun.from_catalog(run))
    if reanalysed.problem_kind is not None:
        record_fault(redo_fault(start, reanalysed.problem_kind, reanalysed.reason))
        return None
    for doc_name, doc in reanalysed.documents():
        emit(doc_name, doc)
    return reanalysed.features


def pending_injections(client: Any, name: str) -> list[ControlAction]:
    """A person's injections into campaign ``name``, and proposals a person approved, that no
    finished experiment and no refusal carried out: an earlier run of the campaign took them,
    then stopped first. Each is run as an injection by the person who asked."""
    carried = {
        run.metadata["start"].get(vocabulary.REQUEST_ID)
        for purpose in (Purpose.EXPERIMENT, Purpose.REFUSED_PROPOSAL)
        for run in campaign_runs(client, name, purpose)
        if purpose == Purpose.REFUSED_PROPOSAL or exit_status(run) is not None
    }
    pending = []
    for run in campaign_runs(client, name, Purpose.CONTROL):
        start = run.metadata["start"]
        request_id = start.get(vocabulary.REQUEST_ID)
        if (
            start["action"] in ("inject", "approve")
            and request_id is not None
            and request_id not in carried
        ):
            pending.append(
                ControlAction(
                    "inject",
                    start["who"],
                    start["reason"],
                    start["requested_at"],
                    start["conditions"],
                    request_id,
                )
            )
    return pending
