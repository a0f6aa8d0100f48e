"""What a person watching a campaign needs to know, built from its records alone.

:class:`CampaignLog` is filled from run metadata, the same whether the runs come out of the
catalog (:func:`campaign_log_from_catalog`, for the HTML report and for a dashboard that
joins a campaign already under way) or arrive as Bluesky documents while the campaign runs
(:class:`DocumentFeed`, a document callback that routes them run by run: in-process, or fed
by the ZeroMQ document stream in the distributed mode). Nothing here reads a live runner.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from event_model import DocumentRouter, Event

from sdl.analysis.pipeline import (
    Measurements,
    RawRun,
    instrument_time_s,
    measurements_from_data,
    read_primary,
)
from sdl.analysis.xrd.calibration import InstrumentCalibration
from sdl.analysis.xrd.user_phases import XRDPhases
from sdl.campaign.results import outcomes_feasible
from sdl.records.catalog import campaign_runs, exit_status, recorded_features
from sdl.records.routing import RunCallback, RunCallbacks, RunCollector, RunFollower
from sdl.records.vocabulary import (
    ATTEMPT,
    CAMPAIGN_ID,
    DECISION_PURPOSES,
    FEATURES_STREAM,
    ITERATION,
    PROPOSAL_ID,
    PURPOSE,
    RAW_UID,
    SUCCESS,
    Purpose,
)


@dataclass
class Experiment:
    """One experiment run (one attempt): what was asked, by whom, and what came out."""

    raw_uid: str
    iteration: int
    attempt: int
    proposal_id: str
    proposed_by: str
    conditions: dict[str, float]
    belief: dict[str, float]
    started_at: float
    exit_status: str | None = None
    reason: str = ""
    features: dict[str, float] = field(default_factory=dict)
    instrument_time_s: float | None = None

    def predicted(self, objective: str) -> tuple[float, float] | None:
        """The agent's predicted mean and standard deviation of ``objective`` here, if any."""
        mean = self.belief.get(f"{objective}_predicted_mean")
        std = self.belief.get(f"{objective}_predicted_std")
        if mean is None or std is None or not math.isfinite(mean):
            return None
        return float(mean), float(std)


class CampaignLog:
    """A campaign's experiments, faults, control requests and refused proposals, in order.

    Safe to fill from one thread while others read :meth:`snapshot`-style accessors: every
    change takes the lock and bumps :attr:`version`.
    """

    def __init__(self, campaign_id: str) -> None:
        self.campaign_id = campaign_id
        self.config: dict[str, Any] = {}
        self.xrd_instrument: dict[str, Any] | None = None
        self.xrd_phases: dict[str, Any] | None = None
        self.versions: dict[str, str] = {}
        self.started_at: float | None = None
        self.faults: list[dict[str, Any]] = []
        self.controls: list[dict[str, Any]] = []
        self.refused: list[dict[str, Any]] = []
        self.version = 0
        self.lock = threading.RLock()
        self._experiments: dict[str, Experiment] = {}

    @property
    def xrd_calibration(self) -> InstrumentCalibration | None:
        """The diffractometer calibration the campaign's analysis used, as recorded at its
        start (``analysis.xrd_instrument``); None for the default instrument."""
        if not self.xrd_instrument:
            return None
        return InstrumentCalibration.from_dict(self.xrd_instrument)

    def fitted_phases(self, system_phases: Sequence[str]) -> Sequence[str] | XRDPhases:
        """What the campaign's pattern fits looked for: its own phases as recorded at its
        start (``analysis.xrd_phases``, the CIFs' text included), else ``system_phases``."""
        if not self.xrd_phases:
            return system_phases
        return XRDPhases.from_dict(self.xrd_phases)

    def add_start(self, start: Mapping[str, Any]) -> None:
        """Record a run's start document (experiments and decisions; others are ignored)."""
        purpose = start.get(PURPOSE)
        with self.lock:
            if purpose == Purpose.EXPERIMENT:
                self._experiments[start["uid"]] = Experiment(
                    raw_uid=start["uid"],
                    iteration=int(start[ITERATION]),
                    attempt=int(start.get(ATTEMPT, 1)),
                    proposal_id=start[PROPOSAL_ID],
                    proposed_by=start.get("proposed_by", "agent"),
                    conditions=dict(start.get("conditions", {})),
                    belief={
                        k: v for k, v in (start.get("agent_belief") or {}).items() if v is not None
                    },
                    started_at=float(start["time"]),
                )
            elif purpose == Purpose.CAMPAIGN:
                self.config = dict(start.get("config", {}))
                self.xrd_instrument = start.get("xrd_instrument")
                self.xrd_phases = start.get("xrd_phases")
                self.versions = dict(start.get("versions", {}))
                if self.started_at is None:
                    self.started_at = float(start["time"])
            elif purpose in DECISION_PURPOSES:
                entry = {key: value for key, value in start.items() if key != "config"}
                {
                    Purpose.FAULT: self.faults,
                    Purpose.CONTROL: self.controls,
                    Purpose.REFUSED_PROPOSAL: self.refused,
                }[purpose].append(entry)
            else:
                return
            self.version += 1

    def add_stop(self, stop: Mapping[str, Any]) -> None:
        """Record how an experiment run ended."""
        with self.lock:
            experiment = self._experiments.get(stop.get("run_start", ""))
            if experiment is None:
                return
            experiment.exit_status = stop.get("exit_status")
            experiment.reason = stop.get("reason", "")
            self.version += 1

    def add_features(self, raw_uid: str, features: Mapping[str, float]) -> None:
        """Record the analysed features of the experiment run ``raw_uid``."""
        with self.lock:
            experiment = self._experiments.get(raw_uid)
            if experiment is None:
                return
            experiment.features = {key: float(value) for key, value in features.items()}
            self.version += 1

    def add_instrument_time(self, raw_uid: str, seconds: float) -> None:
        with self.lock:
            if raw_uid in self._experiments:
                self._experiments[raw_uid].instrument_time_s = float(seconds)
                self.version += 1

    @property
    def experiments(self) -> list[Experiment]:
        """Every experiment run (failed attempts included), in the order they started."""
        with self.lock:
            return sorted(self._experiments.values(), key=lambda e: e.started_at)

    @property
    def objective(self) -> str:
        objectives = self.config.get("objectives") or [{}]
        return str(objectives[0].get("name", ""))

    @property
    def maximize(self) -> bool:
        objectives = self.config.get("objectives") or [{}]
        return objectives[0].get("direction", "maximize") == "maximize"

    def measured(self) -> list[Experiment]:
        """Experiments whose objective was measured, in order."""
        return [
            e for e in self.experiments if math.isfinite(e.features.get(self.objective, math.nan))
        ]

    def best(self, count: int = 1) -> list[Experiment]:
        """The ``count`` best measured experiments that meet the outcome constraints, best
        first."""
        sign = -1.0 if self.maximize else 1.0
        feasible = [e for e in self.measured() if self.feasible(e)]
        return sorted(feasible, key=lambda e: sign * e.features[self.objective])[:count]

    def feasible(self, experiment: Experiment) -> bool:
        """Whether ``experiment``'s results meet the campaign's outcome constraints."""
        outcome_constraints = (self.config.get("constraints") or {}).get("outcomes") or ()
        return outcomes_feasible(experiment.features, outcome_constraints)

    def experiments_done(self) -> int:
        """Experiments that count against the budget: one per iteration that ended."""
        return len(
            {e.iteration for e in self.experiments if e.features}
            | {int(f[ITERATION]) for f in self.faults if f.get("action") == "skip"}
        )

    def summary(self) -> dict[str, Any]:
        """Progress from the records: experiments done, budget, best, instrument hours, ETA."""
        with self.lock:
            experiments = self.experiments
            done = self.experiments_done()
            budget = int(self.config.get("budget", 0))
            best = self.best()
            finished = [e for e in experiments if e.exit_status is not None]
            hours = sum(e.instrument_time_s or 0.0 for e in experiments) / 3600.0
            eta_s = None
            if done and budget > done and self.started_at is not None and finished:
                elapsed = max(e.started_at for e in experiments) - self.started_at
                eta_s = elapsed / max(len(finished), 1) * (budget - done)
            running = [e for e in experiments if e.exit_status is None]
            return {
                "campaign": self.campaign_id,
                "agent": (self.config.get("agent") or {}).get("name"),
                "objective": self.objective,
                "direction": "maximize" if self.maximize else "minimize",
                "experiments": done,
                "budget": budget,
                "runs": len(experiments),
                "instrument_hours": hours,
                "eta_s": eta_s,
                "best": None
                if not best
                else {
                    "value": best[0].features[self.objective],
                    "std": best[0].features.get(f"{self.objective}_std"),
                    "iteration": best[0].iteration,
                    "conditions": best[0].conditions,
                    "raw_uid": best[0].raw_uid,
                },
                "running": None
                if not running
                else {
                    "iteration": running[-1].iteration,
                    "attempt": running[-1].attempt,
                    "conditions": running[-1].conditions,
                    "since": running[-1].started_at,
                    "proposed_by": running[-1].proposed_by,
                },
                "faults": len(self.faults),
                "refused": len(self.refused),
            }


def campaign_log_from_catalog(client: Any, campaign_id: str) -> CampaignLog:
    """Everything the catalog holds about one campaign, as a :class:`CampaignLog`."""
    catalog = CatalogLog(client, campaign_id)
    catalog.refresh()
    return catalog.log


class CatalogLog:
    """Keeps a :class:`CampaignLog` of one campaign up to date from the catalog.

    Each :meth:`refresh` reads only what is new since the last: runs not seen yet, and
    experiments that have since stopped (with their instrument time) or been analysed.
    """

    def __init__(self, client: Any, campaign_id: str) -> None:
        self.client = client
        self.log = CampaignLog(campaign_id)
        self.latest_measured: str | None = None
        self._seen: set[str] = set()
        self._stopped: set[str] = set()
        self._analysed: set[str] = set()

    def refresh(self) -> None:
        name, log = self.log.campaign_id, self.log
        for purpose in (Purpose.EXPERIMENT, *DECISION_PURPOSES):
            for run in campaign_runs(self.client, name, purpose):
                start = run.metadata["start"]
                if start["uid"] not in self._seen:
                    self._seen.add(start["uid"])
                    log.add_start(start)
                if purpose == Purpose.EXPERIMENT and start["uid"] not in self._stopped:
                    if run.metadata.get("stop"):
                        self._stopped.add(start["uid"])
                        log.add_stop(run.metadata["stop"])
                        if exit_status(run) == SUCCESS:
                            primary = read_primary(run, measurements=False)
                            log.add_instrument_time(start["uid"], instrument_time_s(primary))
        for run in campaign_runs(self.client, name, Purpose.ANALYSIS):
            raw_uid = run.metadata["start"][RAW_UID]
            if raw_uid not in self._analysed and exit_status(run) == SUCCESS:
                self._analysed.add(raw_uid)
                log.add_features(raw_uid, recorded_features(run))
                self.latest_measured = raw_uid

    def latest_measurements(self) -> tuple[str, Measurements] | None:
        """The newest analysed sample's raw uid and measurements, read from the catalog."""
        if self.latest_measured is None:
            return None
        run = self.client[self.latest_measured]
        return self.latest_measured, measurements_from_data(read_primary(run))


class DocumentFeed:
    """A Bluesky document callback that keeps a :class:`CampaignLog` up to date.

    Subscribe it to every document the campaign produces (its RunEngine and whatever writes
    analysis and decision runs); in the distributed mode, to the campaign's document stream.
    It follows each run of the campaign from its start (event-model's ``RunRouter``), so runs
    that interleave (several stations, a decision recorded during a paused experiment) do not
    mix. When an experiment run ends, ``on_measured`` is called with its raw uid and filled
    :class:`Measurements` (the micrograph read from its file), from the thread that delivered
    the stop document, so keep it quick.

    Parameters
    ----------
    log
        The log to fill.
    on_measured
        Called with ``(raw_uid, measurements)`` after each successful experiment run.
    """

    def __init__(
        self, log: CampaignLog, on_measured: Callable[[str, Measurements], None] | None = None
    ) -> None:
        self.log = log
        self.on_measured = on_measured
        self._router = RunFollower([self._follow])

    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:
        self._router(name, doc)

    def _follow(self, name: str, start: Mapping[str, Any]) -> RunCallbacks:
        """Log the campaign's runs: experiments whole, analysis runs by their features."""
        if start.get(CAMPAIGN_ID) != self.log.campaign_id:
            return [], []
        self.log.add_start(start)
        purpose = start.get(PURPOSE)
        if purpose == Purpose.EXPERIMENT:
            return [RunCollector(self._experiment_ended)], []
        if purpose == Purpose.ANALYSIS:
            raw_uid = start[RAW_UID]

            def features(name: str, descriptor: Mapping[str, Any]) -> list[RunCallback]:
                if descriptor["name"] != FEATURES_STREAM:
                    return []
                return [_Features(self.log, raw_uid)]

            return [], [features]
        return [], []

    def _experiment_ended(self, documents: list[tuple[str, Mapping[str, Any]]]) -> None:
        stop = documents[-1][1]
        self.log.add_stop(stop)
        if stop.get("exit_status") != SUCCESS:
            return
        raw = RawRun.from_documents(documents)
        self.log.add_instrument_time(stop["run_start"], raw.instrument_time_s)
        if self.on_measured is not None:
            self.on_measured(stop["run_start"], measurements_from_data(raw.data))


class _Features(DocumentRouter):
    """Puts the features events of one analysis run into the log, for its raw run."""

    def __init__(self, log: CampaignLog, raw_uid: str) -> None:
        self._log = log
        self._raw_uid = raw_uid

    def event(self, doc: Event) -> Event:
        self._log.add_features(self._raw_uid, doc["data"])
        return doc
