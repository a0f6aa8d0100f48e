"""The analysis service: features of every raw experiment run on the stream, as analysis runs.

``sdl analysis-service CAMPAIGN --stream-out ADDR --stream-in ADDR --tiled URI`` follows the
document stream, and for each experiment run of the campaign that ends successfully runs the
same analysis as the embedded mode (:func:`sdl.analysis.pipeline.judge`, with the models the
campaign file names). The result is an analysis run, written to the catalog and published on
the stream for the agent: with the features, or failed with the ``on_fault`` kind
(``problem_kind``) and the reason. On start it also analyses the campaign's raw runs that
ended while it was down. Messages that are not documents are logged and dropped; the service
keeps running.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import Any

from event_model import compose_run

from sdl.analysis.pipeline import (
    ANALYSIS_VERSION,
    RunDocuments,
    feature_documents,
    judge,
    read_primary,
)
from sdl.campaign.config import CampaignConfig
from sdl.campaign.systems import get_system
from sdl.loop.runner import build_analysis
from sdl.records.audit import exit_status
from sdl.records.catalog import campaign_runs

logger = logging.getLogger(__name__)


def failed_analysis_documents(
    raw_start: Mapping[str, Any], kind: str, reason: str
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """An analysis run that records why a raw run could not be analysed."""
    links = {key: raw_start[key] for key in ("campaign_id", "iteration", "_id") if key in raw_start}
    bundle = compose_run(
        metadata={
            "purpose": "analysis",
            "raw_uid": raw_start["uid"],
            "analysis_version": ANALYSIS_VERSION,
            "problem_kind": kind,
            **links,
        }
    )
    yield "start", bundle.start_doc
    yield "stop", bundle.compose_stop(exit_status="fail", reason=reason)


class AnalysisService:
    """Collects each raw run of ``config``'s campaign from the stream and analyses it.

    Parameters
    ----------
    config
        The campaign (its name selects the runs; its ``analysis`` section the methods).
    emit
        Receives the analysis runs' documents (the catalog writer and the stream publisher).
    """

    def __init__(
        self, config: CampaignConfig, emit: Callable[[str, Mapping[str, Any]], Any]
    ) -> None:
        self.config = config
        self._emit = emit
        self._analysis = build_analysis(config, get_system(config.devices.system).phases)
        self._runs: dict[str, RunDocuments] = {}
        self._run_of_descriptor: dict[str, str] = {}  # descriptor or resource -> run
        # Raw runs to analyse: (start document, a loader of the primary event's data).
        self._finished: queue.Queue[tuple[Mapping[str, Any], Callable[[], Any]] | None] = (
            queue.Queue()
        )
        self._queued: set[str] = set()  # raw uids, so no run is analysed twice
        self._queued_lock = threading.Lock()
        self._worker = threading.Thread(target=self._work, name="sdl-analysis", daemon=True)
        self.analysed = 0

    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:
        """Follow one document of the stream (cheap: analysis runs on the worker thread)."""
        if name == "start":
            if doc.get("purpose") == "experiment" and doc.get("campaign_id") == self.config.name:
                self._runs[doc["uid"]] = RunDocuments()
                self._runs[doc["uid"]](name, doc)
            return
        key = doc.get("descriptor") or doc.get("resource") or ""
        run_uid = doc.get("run_start") or self._run_of_descriptor.get(key)
        run = self._runs.get(run_uid or "")
        if run is None:
            return
        if name in ("descriptor", "resource"):  # events and datums name these, not the run
            self._run_of_descriptor[doc["uid"]] = doc["run_start"]
        run(name, doc)
        if name == "stop":
            del self._runs[doc["run_start"]]
            self._run_of_descriptor = {
                descriptor: uid
                for descriptor, uid in self._run_of_descriptor.items()
                if uid != run_uid
            }
            if doc.get("exit_status") == "success":
                self._queue(run.start, run.primary_data)

    def catch_up(self, client: Any) -> int:
        """Queue the campaign's finished raw runs in the catalog that have no analysis run
        yet (they ended while the service was down); how many there were."""
        name = self.config.name
        analysed = {
            run.metadata["start"]["raw_uid"] for run in campaign_runs(client, name, "analysis")
        }
        missing = [
            run
            for run in campaign_runs(client, name, "experiment")
            if exit_status(run) == "success" and run.metadata["start"]["uid"] not in analysed
        ]
        return sum(
            self._queue(dict(run.metadata["start"]), partial(read_primary, run)) for run in missing
        )

    def _queue(self, start: Mapping[str, Any], load: Callable[[], Any]) -> bool:
        """Queue a raw run for analysis unless it already was; whether it was queued now."""
        with self._queued_lock:
            if start["uid"] in self._queued:
                return False
            self._queued.add(start["uid"])
        self._finished.put((start, load))
        return True

    def start(self) -> AnalysisService:
        self._worker.start()
        return self

    def stop(self) -> None:
        self._finished.put(None)
        self._worker.join(timeout=30)

    def _work(self) -> None:
        while (item := self._finished.get()) is not None:
            start, load = item
            try:
                self._analyse(start, load())
            except Exception as error:
                logger.exception("could not analyse run %s", start.get("uid"))
                self._publish(
                    failed_analysis_documents(
                        start, "analysis_error", f"{type(error).__name__}: {error}"
                    )
                )

    def _analyse(self, start: Mapping[str, Any], data: Any) -> None:
        judged = judge(self._analysis, data, self.config.analysis.xrd_zero_tolerance_deg)
        if isinstance(judged, tuple):
            kind, reason = judged
            logger.warning(
                "run %s (%s attempt %s): %s: %s",
                start["uid"],
                start["_id"],
                start.get("attempt"),
                kind,
                reason,
            )
            documents = failed_analysis_documents(start, kind, reason)
        else:
            documents = feature_documents(start, judged)
        self._publish(documents)
        logger.info("analysed run %s (iteration %s)", start["uid"], start.get("iteration"))

    def _publish(self, documents: Iterator[tuple[str, Mapping[str, Any]]]) -> None:
        for name, doc in documents:
            self._emit(name, doc)
        self.analysed += 1
