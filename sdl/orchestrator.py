"""The closed loop: the agent proposes, the instruments make and measure, analysis tells the agent.

Campaign state lives in the catalog only: starting a campaign whose name already has runs in
the data directory reads them back and continues where it stopped. Faults (an instrument
error, a timeout, corrupt data, a missed setpoint, drift, a lost PV) are handled by the
campaign's ``on_fault`` policy, and every outcome is recorded in the catalog with its reason.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import itertools
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from bluesky import RunEngine
from bluesky.utils import FailedStatus, RunEngineInterrupted
from event_model import compose_run

from agents import Objective, Parameter, SearchSpace, make_agent
from devices.epics import EpicsError
from plans.experiment import synthesize_and_measure
from sdl.analysis.pipeline import (
    BadData,
    RunDocuments,
    SampleAnalysis,
    feature_documents,
    instrument_time_s,
    measurements_from_data,
    read_primary,
)
from sdl.analysis.quality import calibration_problems
from sdl.analysis.unet import load_model, segment_grains_unet
from sdl.analysis.xrd_cnn import XRDClassifier
from sdl.audit import exit_status
from sdl.catalog import campaign_runs, make_writer, open_catalog, raw_dir
from sdl.config import CampaignConfig, FaultPolicy
from sdl.control import CTRL_C, CampaignAborted, CampaignControl, ControlAction
from sdl.control_server import ControlServer, connection_file
from sdl.lab import Instruments, build_instruments
from sdl.systems import get_system
from simulators.faults import InstrumentFault, SetpointMissed

logger = logging.getLogger(__name__)

#: Fault kind of each error an instrument may raise (checked in order; subclasses first).
FAULT_KINDS: tuple[tuple[type[BaseException], str], ...] = (
    (EpicsError, "disconnect"),
    (TimeoutError, "timeout"),
    (SetpointMissed, "setpoint_miss"),
    (InstrumentFault, "instrument_error"),
)

#: Consecutive refused proposals after which the campaign stops instead of spinning.
MAX_CONSECUTIVE_REFUSALS = 20


@dataclass(frozen=True)
class ExperimentRecord:
    """One finished experiment: what was asked, what came out, where the raw data is."""

    iteration: int
    proposal_id: str
    conditions: dict[str, float]
    features: dict[str, float]
    raw_uid: str
    instrument_time_s: float

    @property
    def failed(self) -> bool:
        return not self.features


@dataclass(frozen=True)
class Fault:
    """Something that went wrong in one attempt, and what the campaign did about it."""

    kind: str
    reason: str
    iteration: int
    proposal_id: str
    attempt: int
    action: str = ""
    raw_uid: str | None = None
    conditions: Mapping[str, float] = field(default_factory=dict)


def _device_error(error: BaseException) -> BaseException:
    """The device's own error inside a failed Status (or the error itself)."""
    if isinstance(error, FailedStatus) and error.args and hasattr(error.args[0], "exception"):
        return error.args[0].exception() or error
    return error


def _error_text(error: BaseException) -> str:
    """What went wrong, in the device's own words."""
    device_error = _device_error(error)
    return f"{type(device_error).__name__}: {device_error}"


def fault_kind(error: BaseException) -> str | None:
    """The ``on_fault`` kind of an instrument's error, or None if no instrument raised it.

    Any error a device reports through its Status is at least an ``instrument_error``.
    """
    device_error = _device_error(error)
    for error_type, kind in FAULT_KINDS:
        if isinstance(device_error, error_type):
            return kind
    return "instrument_error" if isinstance(error, FailedStatus) else None


@dataclass
class CampaignResult:
    """What a campaign produced, in order, with the objective's direction to rank it."""

    config: CampaignConfig
    records: list[ExperimentRecord] = field(default_factory=list)
    refused: int = 0
    faults: list[Fault] = field(default_factory=list)
    stopped: str | None = None

    @property
    def objective(self) -> str:
        return self.config.objectives[0].name

    @property
    def maximize(self) -> bool:
        return self.config.objectives[0].direction == "maximize"

    def objective_values(self) -> np.ndarray:
        """The objective of every experiment in order (NaN where it failed)."""
        return np.array([r.features.get(self.objective, math.nan) for r in self.records])

    @property
    def best(self) -> ExperimentRecord | None:
        values = self.objective_values()
        if not np.isfinite(values).any():
            return None
        index = np.nanargmax(values) if self.maximize else np.nanargmin(values)
        return self.records[int(index)]

    @property
    def instrument_hours(self) -> float:
        return sum(r.instrument_time_s for r in self.records) / 3600.0


def build_agent(config: CampaignConfig) -> Any:
    """The agent named in ``config``, over the campaign's search space and objectives."""
    space = SearchSpace(tuple(
        Parameter(name, p.low, p.high, p.unit, log_scale=p.log_scale,
                  values=tuple(p.values) if p.values else None, categorical=p.categorical)
        for name, p in config.search_space.items()
    ))
    objectives = [Objective(o.name, o.direction, target=o.target) for o in config.objectives]
    return make_agent(config.agent.name, space, objectives, seed=config.seed,
                      max_evaluations=config.budget, **config.agent.options)


def build_analysis(config: CampaignConfig, phases: Sequence[str]) -> SampleAnalysis:
    """The analysis the campaign asks for, with its trained models loaded once."""
    settings = config.analysis
    segmenter = None
    if settings.segmenter == "unet":
        segmenter = partial(segment_grains_unet, load_model(settings.unet_model))
    classifier = XRDClassifier.load(settings.xrd_classifier) if settings.xrd_classifier else None
    return SampleAnalysis(config.instruments, phases, segmenter=segmenter, classifier=classifier)


def _json_safe(values: Mapping[str, Any]) -> dict[str, Any]:
    """Metadata must be valid JSON: NaN and infinities become None."""
    return {
        key: None if isinstance(value, float) and not math.isfinite(value) else value
        for key, value in values.items()
    }


class CampaignRunner:
    """Runs one campaign in this process: RunEngine, catalog, analysis and agent together.

    Parameters
    ----------
    config
        The validated campaign.
    on_experiment
        Called after each experiment with the result so far (progress bars, dashboards).
    serve_control
        Also take control requests over ZeroMQ on 127.0.0.1 while running (``sdl control``;
        see :mod:`sdl.control_server`).

    Attributes
    ----------
    control
        Pause, resume, abort, veto and inject, from any thread (see :mod:`sdl.control`).
    """

    def __init__(
        self,
        config: CampaignConfig,
        *,
        on_experiment: Callable[[CampaignResult], None] | None = None,
        serve_control: bool = False,
    ) -> None:
        self.config = config
        self.on_experiment = on_experiment
        self.serve_control = serve_control
        self.data_dir = Path(config.data_dir)
        self.client = open_catalog(self.data_dir, create=True)
        self.writer = make_writer(self.client)
        self.instruments: Instruments = build_instruments(config, raw_dir(self.data_dir))
        system = get_system(config.devices.system)
        self.analysis = build_analysis(config, system.phases)
        self.agent = build_agent(config)
        self.result = CampaignResult(config)
        self.RE = RunEngine({}, call_returns_result=False)
        self.RE.context_managers = []  # Ctrl-C is the campaign's to handle: see run()
        self._watchers: list[Callable[[str, dict[str, Any]], Any]] = []
        self.RE.subscribe(self._emit)
        self.latest_run = RunDocuments()
        self.RE.subscribe(self.latest_run)
        self.control = CampaignControl(on_pause=self._pause_engine)

    def run(self) -> CampaignResult:
        """Run experiments until the budget is spent, the agent says stop, or someone aborts.

        An abort (by a person or a fault policy) or Ctrl-C stops cleanly: the run in
        progress is closed as aborted, and running the campaign again resumes it. A second
        Ctrl-C stops at once.
        """
        try:
            with self._ctrl_c_aborts(), self._control_server():
                self._record("campaign", {"config": self.config.model_dump(mode="json"),
                                          "versions": software_versions()})
                self._resume()
                self._loop()
        except (CampaignAborted, KeyboardInterrupt) as stop:
            self.result.stopped = str(stop) or f"aborted by {CTRL_C}"
            logger.warning("campaign %s stopped: %s", self.config.name, self.result.stopped)
        finally:
            self._record_control()
        return self.result

    def subscribe(self, watcher: Callable[[str, dict[str, Any]], Any]) -> None:
        """Also give ``watcher`` every document the campaign records (raw runs, analysis,
        faults, control, refusals), after the catalog has it. A watcher's error is logged
        and never stops the campaign."""
        self._watchers.append(watcher)

    def _emit(self, name: str, doc: dict[str, Any]) -> None:
        self.writer(name, doc)
        for watcher in self._watchers:
            try:
                watcher(name, doc)
            except Exception:
                logger.exception("a watcher could not follow a %s document", name)

    def status(self) -> dict[str, Any]:
        """Where the campaign stands, for people watching it."""
        paused, aborted = self.control.paused, self.control.aborted
        if self.result.stopped is not None:
            state = "stopped"
        elif len(self.result.records) >= self.config.budget:
            state = "finished"
        else:
            state = "aborting" if aborted else "paused" if paused else "running"
        return {"campaign": self.config.name, "state": state,
                "experiments": len(self.result.records), "budget": self.config.budget,
                "faults": len(self.result.faults), "refused": self.result.refused,
                "stopped": self.result.stopped,
                "paused_by": paused.who if paused else None,
                "paused_because": paused.reason if paused else None}

    @contextlib.contextmanager
    def _control_server(self) -> Iterator[None]:
        if not self.serve_control:
            yield
            return
        server = ControlServer(self.control, self.status)
        server.start(connection_file(self.data_dir, self.config.name))
        logger.info("control requests on %s (sdl control)", server.address)
        try:
            yield
        finally:
            server.stop()

    @contextlib.contextmanager
    def _ctrl_c_aborts(self) -> Iterator[None]:
        """While the campaign runs, the first Ctrl-C asks for a clean abort."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def abort(signum: int, frame: Any) -> None:
            if self.control.aborted is not None:
                raise KeyboardInterrupt
            print("stopping after the current step (Ctrl-C again to stop at once)",
                  file=sys.stderr)
            self.control.abort(CTRL_C, "interrupted from the keyboard")

        previous = signal.signal(signal.SIGINT, abort)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _loop(self) -> None:
        refusals = 0
        while len(self.result.records) < self.config.budget:
            self._checkpoint()
            if self.result.records:
                stop, reason = self.agent.should_stop()
                if stop:
                    logger.info("agent stopped the campaign: %s", reason)
                    return
            proposal, proposed_by = self._next_proposal()
            conditions = {name: float(proposal[name]) for name in self.config.search_space}
            problem = self._with_retry(partial(self._refusal_reason, conditions),
                                       "checking the proposal against the device limits")
            veto = self.control.take_veto() if problem is None and proposed_by == "agent" else None
            if veto is not None:
                problem = f"vetoed by {veto.who}: {veto.reason or 'no reason given'}"
            if problem:
                refusals += 1
                self._refuse(proposal, conditions, problem)
                if refusals >= MAX_CONSECUTIVE_REFUSALS:
                    raise CampaignAborted(f"{refusals} proposals in a row were refused; "
                                          f"last: {problem}")
                continue
            refusals = 0
            self._experiment(proposal, conditions, proposed_by)
            if self.on_experiment:
                self.on_experiment(self.result)

    def _next_proposal(self) -> tuple[dict[str, Any], str]:
        """A person's injected point if one waits, else the agent's next proposal."""
        injection = self.control.take_injection()
        if injection is None:
            (proposal,) = self.agent.suggest(1)
            return proposal, "agent"
        (proposal,) = self.agent.register_suggestions([dict(injection.conditions or {})])
        return proposal, injection.who

    def _checkpoint(self) -> None:
        """Between steps: record requests, wait out a pause, stop on an abort."""
        self._record_control()
        if self.control.paused is not None:
            logger.warning("campaign %s paused by %s: %s; waiting to be resumed",
                           self.config.name, self.control.paused.who, self.control.paused.reason)
        self.control.wait_while_paused()
        self._record_control()

    def _pause_engine(self) -> None:
        if self.RE.state == "running":
            self.RE.request_pause(defer=True)

    def _refusal_reason(self, conditions: Mapping[str, float]) -> str | None:
        return refusal_reason(conditions, self.config.search_space, self.instruments.reactor)

    def _record(self, purpose: str, metadata: Mapping[str, Any], *,
                status: str = "success", reason: str = "") -> None:
        """A run of only a start and a stop document: a decision, kept in the catalog."""
        bundle = compose_run(metadata={"purpose": purpose, "campaign_id": self.config.name,
                                       **metadata})
        self._emit("start", bundle.start_doc)
        self._emit("stop", bundle.compose_stop(exit_status=status, reason=reason))

    def _refuse(self, proposal: Mapping[str, Any], conditions: Mapping[str, float],
                reason: str) -> None:
        """Record a refused proposal in the catalog and tell the agent it failed."""
        logger.warning("refused proposal %s: %s", proposal["_id"], reason)
        self._record("refused-proposal", {"_id": proposal["_id"], "reason": reason,
                                          "conditions": _json_safe(conditions)},
                     status="abort", reason=reason)
        self.agent.register_failures([proposal])
        self.result.refused += 1

    def _record_control(self) -> None:
        for request in self.control.take_log():
            self._record("control", _control_metadata(request))

    def _experiment(self, proposal: Mapping[str, Any], conditions: dict[str, float],
                    proposed_by: str) -> None:
        """Make and measure one sample, applying the fault policy until it succeeds or not."""
        iteration = len(self.result.records)
        proposal_id = proposal["_id"]
        md = {
            "campaign_id": self.config.name,
            "iteration": iteration,
            "_id": proposal_id,
            "agent": self.config.agent.name,
            "proposed_by": proposed_by,
            "seed": self.config.seed,
            "objectives": [o.model_dump() for o in self.config.objectives],
            "agent_belief": _json_safe(self.agent.report().get(proposal_id, {})),
        }
        all_conditions = {**conditions, **self.config.fixed_conditions}
        tries: dict[str, int] = {}
        for attempt in itertools.count(1):
            outcome = self._attempt(all_conditions, {**md, "attempt": attempt})
            if not isinstance(outcome, Fault):
                uid, features, hours_s = outcome
                self._keep(ExperimentRecord(iteration, proposal_id, all_conditions, features,
                                            uid, hours_s))
                return
            tries[outcome.kind] = tries.get(outcome.kind, 0) + 1
            policy = getattr(self.config.on_fault, outcome.kind)
            fault = dataclasses.replace(outcome, action=_decision(policy, tries[outcome.kind]))
            self._record_fault(fault)
            if fault.action == "retry":
                time.sleep(policy.retry_delay_s)
            elif fault.action == "skip":
                self._keep(ExperimentRecord(iteration, proposal_id, all_conditions, {},
                                            fault.raw_uid or "", 0.0))
                return
            elif fault.action == "pause":
                self.control.pause("fault policy", f"{fault.kind}: {fault.reason}")
                self._checkpoint()
            else:
                raise CampaignAborted(f"aborted by the fault policy: {fault.kind}: "
                                      f"{fault.reason}")

    def _keep(self, record: ExperimentRecord) -> None:
        self._tell_agent(record)
        self.result.records.append(record)

    def _attempt(self, conditions: Mapping[str, float],
                 md: Mapping[str, Any]) -> tuple[str, dict[str, float], float] | Fault:
        """One run of the experiment plan and its analysis: the result, or the fault."""
        def fault(kind: str, reason: str, raw_uid: str | None) -> Fault:
            return Fault(kind, reason, md["iteration"], md["_id"], md["attempt"], raw_uid=raw_uid,
                         conditions=conditions)

        try:
            uid = self._run_plan(synthesize_and_measure(
                self.instruments.reactor, self.instruments.detectors, conditions, md=md))
        except (CampaignAborted, KeyboardInterrupt):
            raise
        except Exception as error:
            kind = fault_kind(error)
            if kind is None:
                raise
            start = self.latest_run.start if self.latest_run.started else {}
            same = start.get("_id") == md["_id"] and start.get("attempt") == md["attempt"]
            return fault(kind, _error_text(error), start["uid"] if same else None)
        data = self.latest_run.primary_data()
        evaluated = self._evaluate(self.latest_run.start, data)
        if isinstance(evaluated, tuple):
            return fault(*evaluated, uid)
        return uid, evaluated, instrument_time_s(data)

    def _run_plan(self, plan: Any) -> str:
        """Run a plan on the RunEngine, riding out pauses; Ctrl-C or an abort stops it."""
        try:
            (uid,) = self.RE(plan)
            return uid
        except RunEngineInterrupted:
            pass
        while True:
            try:
                self._checkpoint()
            except CampaignAborted as abort:
                self.RE.abort(str(abort))
                raise
            try:
                (uid,) = self.RE.resume()
                return uid
            except RunEngineInterrupted:
                continue

    def _evaluate(self, start: Mapping[str, Any],
                  data: Mapping[str, Any]) -> dict[str, float] | tuple[str, str]:
        """Features of a raw run, recorded as an analysis run; or (fault kind, reason)."""
        try:
            features = self.analysis.features(measurements_from_data(data))
        except BadData as error:
            return error.problems[0].kind, str(error)
        except ValueError as error:
            return "analysis_error", str(error)
        drift = calibration_problems(features.get("xrd_zero_shift_deg", 0.0),
                                     self.config.analysis.xrd_zero_tolerance_deg)
        if drift:
            return drift[0].kind, drift[0].message
        for name, doc in feature_documents(start, features):
            self._emit(name, doc)
        return features

    def _record_fault(self, fault: Fault) -> None:
        log = logger.error if fault.action in ("abort", "pause") else logger.warning
        log("experiment %d attempt %d: %s (%s) -> %s", fault.iteration, fault.attempt,
            fault.kind, fault.reason, fault.action)
        self._record("fault", {"iteration": fault.iteration, "_id": fault.proposal_id,
                               "conditions": _json_safe(fault.conditions),
                               "attempt": fault.attempt, "kind": fault.kind,
                               "action": fault.action, "raw_uid": fault.raw_uid,
                               "reason": fault.reason})
        self.result.faults.append(fault)

    def _with_retry(self, action: Callable[[], Any], what: str) -> Any:
        """Do ``action``; when a PV is lost, apply the ``disconnect`` policy's retries."""
        policy = self.config.on_fault.disconnect
        tries = 1 + (policy.retries if policy.action == "retry" else 0)
        for attempt in range(1, tries + 1):
            try:
                return action()
            except EpicsError as error:
                if attempt == tries:
                    raise CampaignAborted(f"{what}: {error}") from error
                logger.warning("%s, attempt %d of %d: %s; retrying in %g s",
                               what, attempt, tries, error, policy.retry_delay_s)
                time.sleep(policy.retry_delay_s)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _tell_agent(self, record: ExperimentRecord) -> None:
        point = {**record.conditions, "_id": record.proposal_id}
        if record.failed or not math.isfinite(record.features.get(self.result.objective, math.nan)):
            self.agent.register_failures([point])
        else:
            self.agent.ingest([{**point, **record.features}])

    def _resume(self) -> None:
        """Read this campaign's finished experiments back from the catalog into a fresh agent.

        An experiment counts once: with the features of its successful attempt, or as failed
        if the fault policy skipped it. A run left open by a crash is recorded as an
        ``interrupted`` fault; its experiment is done again with a new proposal.
        """
        name = self.config.name
        analysed = {}
        for run in campaign_runs(self.client, name, "analysis"):
            if exit_status(run) == "success":
                features = run["features"].read()
                analysed[run.metadata["start"]["raw_uid"]] = {
                    key: float(np.asarray(features[key])[0]) for key in features.data_vars
                }
        faults = campaign_runs(self.client, name, "fault")
        judged = {run.metadata["start"]["raw_uid"] for run in faults}
        skips = [run for run in faults if run.metadata["start"]["action"] == "skip"]
        history = sorted([*campaign_runs(self.client, name, "experiment"), *skips],
                         key=lambda run: run.metadata["start"]["time"])
        kept: set[str] = set()
        for run in history:
            start = run.metadata["start"]
            if start["_id"] in kept:
                continue
            if start["purpose"] == "fault":
                kept.add(start["_id"])
                self._keep(ExperimentRecord(len(self.result.records), start["_id"],
                                            start.get("conditions", {}), {},
                                            start["raw_uid"] or "", 0.0))
                continue
            features = self._resumed_features(run, analysed, judged)
            if features is not None:
                kept.add(start["_id"])
                self._keep(ExperimentRecord(len(self.result.records), start["_id"],
                                            start["conditions"], features, start["uid"],
                                            instrument_time_s(read_primary(
                                                run, measurements=False))))
        if self.result.records:
            logger.info("resumed campaign %s with %d experiments from the catalog",
                        name, len(self.result.records))

    def _resumed_features(self, run: Any, analysed: Mapping[str, dict[str, float]],
                          judged: set[str]) -> dict[str, float] | None:
        """Features of a recorded experiment run, or None if it does not count."""
        start = run.metadata["start"]
        status = exit_status(run)
        if status is None and start["uid"] not in judged:
            self._record_fault(Fault("interrupted", "the campaign stopped during this run "
                                     "(it has no stop document)", start["iteration"],
                                     start["_id"], start.get("attempt", 1), "redo", start["uid"]))
        if status != "success":
            return None
        if start["uid"] in analysed or start["uid"] in judged:
            return analysed.get(start["uid"])
        evaluated = self._evaluate(start, read_primary(run))
        if isinstance(evaluated, tuple):
            self._record_fault(Fault(*evaluated, start["iteration"], start["_id"],
                                     start.get("attempt", 1), "redo", start["uid"]))
            return None
        return evaluated


#: Packages whose versions decide what a campaign did; recorded with every (re)start.
RECORDED_PACKAGES = ("sdl", "bluesky", "ophyd", "event-model", "tiled", "botorch", "gpytorch",
                     "torch", "numpy", "scipy", "pymatgen", "scikit-image", "caproto")


def software_versions() -> dict[str, str]:
    """Installed versions of :data:`RECORDED_PACKAGES`, plus Python's."""
    versions = {"python": sys.version.split()[0]}
    for package in RECORDED_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def refusal_reason(conditions: Mapping[str, float], search_space: Mapping[str, Any],
                   reactor: Any) -> str | None:
    """Why the reactor must not be sent these conditions (None if they are safe).

    The search space bounds the agent; each setpoint's own ``check_value`` applies the
    device's safe limits (on EPICS, the PV's control limits too), as a move would.
    """
    for name, value in conditions.items():
        parameter = search_space[name]
        if not parameter.low <= value <= parameter.high:
            return (f"{name}={value:g} {parameter.unit} is outside the search space "
                    f"[{parameter.low:g}, {parameter.high:g}] {parameter.unit}")
        try:
            getattr(reactor, name).check_value(value)
        except ValueError as error:
            return str(error)
    return None


def _decision(policy: FaultPolicy, tries: int) -> str:
    """The policy's action for the ``tries``-th fault of one kind in one experiment."""
    if policy.action != "retry":
        return policy.action
    return "retry" if tries <= policy.retries else policy.then


def _control_metadata(request: ControlAction) -> dict[str, Any]:
    return {"action": request.action, "who": request.who, "reason": request.reason,
            "requested_at": request.time,
            **({"conditions": dict(request.conditions)} if request.conditions else {})}
