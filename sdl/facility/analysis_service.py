"""The analysis service: features of every raw experiment run on the stream, as analysis runs.

``sdl analysis-service CAMPAIGN --stream-out ADDR --stream-in ADDR --tiled URI`` follows the
document stream, and for each experiment run of the campaign that ends successfully runs the
same analysis as the embedded mode (:meth:`sdl.analysis.pipeline.SampleAnalysis.analyse`,
with the models the campaign file names). The result is an analysis run, written to the
catalog and published on the stream for the agent: with the features, or failed with the
``on_fault`` kind (``problem_kind``) and the reason. On start it also analyses the campaign's
raw runs that ended while it was down. Messages that are not documents are logged and
dropped; the service keeps running.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from sdl.analysis.pipeline import AnalysedRun, RawRun
from sdl.campaign.config import CampaignConfig
from sdl.lab.stations import build_analysis
from sdl.records import vocabulary
from sdl.records.catalog import campaign_runs, exit_status
from sdl.records.routing import RunCallbacks, RunCollector, RunFollower
from sdl.records.vocabulary import DocumentCallback, Purpose

logger = logging.getLogger(__name__)


class AnalysisService:
    """Collects each raw run of ``config``'s campaign from the stream and analyses it.

    Parameters
    ----------
    config
        The campaign (its name selects the runs; its ``analysis`` section the methods).
    emit
        Receives the analysis runs' documents (the catalog writer and the stream publisher).
    client
        The catalog the raw runs are written to: the runs that ended while the service was
        down, or that were under way when it started following the stream, are read there.
    """

    def __init__(self, config: CampaignConfig, emit: DocumentCallback, client: Any) -> None:
        self.config = config
        self._emit = emit
        self._client = client
        self._analysis = build_analysis(config)
        self._router = RunFollower([self._follow], on_unseen_stop=self._ended_unseen)
        # Raw runs to analyse: (start document, a loader of the run).
        self._finished: queue.Queue[tuple[Mapping[str, Any], Callable[[], RawRun]] | None] = (
            queue.Queue()
        )
        self._queued: set[str] = set()  # raw uids, so no run is analysed twice
        self._queued_lock = threading.Lock()
        self._worker = threading.Thread(target=self._work, name="sdl-analysis", daemon=True)
        self.analysed = 0

    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:
        """Follow one document of the stream (cheap: analysis runs on the worker thread)."""
        self._router(name, doc)

    def _is_raw_run(self, start: Mapping[str, Any]) -> bool:
        """Whether ``start`` begins one of the campaign's raw runs."""
        return (
            start.get(vocabulary.PURPOSE) == Purpose.EXPERIMENT
            and start.get(vocabulary.CAMPAIGN_ID) == self.config.name
        )

    def _follow(self, name: str, start: Mapping[str, Any]) -> RunCallbacks:
        """Collect the campaign's raw runs; ignore every other run."""
        if not self._is_raw_run(start):
            return [], []
        return [RunCollector(self._ended)], []

    def _ended(self, documents: list[tuple[str, Mapping[str, Any]]]) -> None:
        """A raw run ended: analyse it if it ended well."""
        start, stop = documents[0][1], documents[-1][1]
        if stop.get("exit_status") == vocabulary.SUCCESS:
            self._queue(start, partial(RawRun.from_documents, documents))

    def _ended_unseen(self, stop: Mapping[str, Any]) -> None:
        """A run under way when the service began to follow the stream has ended: analyse
        it from the catalog if it is one of the campaign's raw runs and ended well (its
        station writes a run to the catalog before it sends the documents down the stream)."""
        if stop.get("exit_status") != vocabulary.SUCCESS:
            return
        try:
            run = self._client[stop["run_start"]]
        except KeyError:  # not in this catalog: not ours
            return
        start = run.metadata["start"]
        if self._is_raw_run(start):
            self._queue(start, partial(RawRun.from_catalog, run))

    def catch_up(self) -> int:
        """Queue the campaign's finished raw runs in the catalog that have no analysis run
        yet (they ended while the service was down); how many there were."""
        name = self.config.name
        analysed = {
            run.metadata["start"][vocabulary.RAW_UID]
            for run in campaign_runs(self._client, name, Purpose.ANALYSIS)
        }
        missing = [
            run
            for run in campaign_runs(self._client, name, Purpose.EXPERIMENT)
            if exit_status(run) == vocabulary.SUCCESS
            and run.metadata["start"]["uid"] not in analysed
        ]
        return sum(
            self._queue(run.metadata["start"], partial(RawRun.from_catalog, run)) for run in missing
        )

    def _queue(self, start: Mapping[str, Any], load: Callable[[], RawRun]) -> bool:
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
                analysed = self._analysis.analyse(load())
            except Exception as error:
                logger.exception("could not analyse run %s", start.get("uid"))
                analysed = AnalysedRun(
                    RawRun(start, {}),
                    problem_kind="analysis_error",
                    reason=f"{type(error).__name__}: {error}",
                )
            if analysed.problem_kind is not None:
                logger.warning(
                    "run %s (%s attempt %s): %s: %s",
                    start["uid"],
                    start.get(vocabulary.PROPOSAL_ID),
                    start.get(vocabulary.ATTEMPT),
                    analysed.problem_kind,
                    analysed.reason,
                )
            for name, doc in analysed.documents():
                self._emit(name, doc)
            self.analysed += 1
            logger.info(
                "analysed run %s (iteration %s)", start["uid"], start.get(vocabulary.ITERATION)
            )
