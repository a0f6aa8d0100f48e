"""The closed loop: the agent proposes, the instruments make and measure, analysis tells the agent.

Campaign state lives in the catalog only: starting a campaign whose name already has runs in
the data directory reads them back and continues where it stopped. Faults (an instrument
error, a timeout, corrupt data, a missed setpoint, drift, a lost PV) are handled by the
campaign's ``on_fault`` policy, and every outcome is recorded in the catalog with its reason.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import re
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from sdl.campaign.agent import build_agent
from sdl.campaign.approval import approval_reasons
from sdl.campaign.config import CampaignConfig
from sdl.campaign.control import CTRL_C, CampaignAborted, CampaignControl, WaitingProposal
from sdl.campaign.results import CampaignResult, ExperimentRecord, Fault
from sdl.lab.instruments import Instruments, build_instruments
from sdl.lab.stations import LocalStation, Measured, Station, build_analysis
from sdl.lab.watchdog import expected_duration
from sdl.loop.alerts import Alerts, alert_end, alert_fault, alert_pause
from sdl.loop.approval_gate import ApprovalGate
from sdl.loop.control_server import ControlServer, connection_file
from sdl.loop.faults import ExperimentFaults, with_disconnect_retries
from sdl.loop.recording import DecisionRecorder, experiment_metadata
from sdl.loop.resume import pending_injections, resumed_records
from sdl.records.catalog import (
    BackgroundWriter,
    CatalogError,
    make_writer,
    open_catalog,
    orphaned_files,
    raw_dir,
)
from sdl.records.lock import data_dir_lock, postgres_lock
from sdl.records.vocabulary import ATTEMPT, ITERATION, PROPOSAL_ID

logger = logging.getLogger(__name__)

#: What the runner logs (INFO) when it counts an experiment: the moment a person is shown it
#: as finished. :func:`reported_proposals` reads it back, to audit a log against the catalog.
FINISHED_LOG = "experiment %d finished and recorded: proposal %s, raw run %s"

#: Where a campaign's instrument files that no run refers to are moved on resuming.
ORPHANED_FOLDER = "orphaned"

#: Consecutive refused proposals after which the campaign stops instead of spinning.
MAX_CONSECUTIVE_REFUSALS = 20


class CampaignRunner:
    """Runs one campaign from this process: the agent, the catalog and one or more stations.

    The loop only: the stations measure and analyse (:mod:`sdl.lab.stations`), the fault
    policies say what to do about a failed attempt (:mod:`sdl.loop.faults`), and the
    decisions are recorded as runs (:mod:`sdl.loop.recording`). Each station makes one sample
    at a time; with several, each works in its own thread and the agent proposes for whichever
    is free, counting the experiments still running as pending, so no two stations are sent
    the same conditions.

    Parameters
    ----------
    config
        The validated campaign.
    on_experiment
        Called after each experiment with the result so far (progress bars, dashboards).
    serve_control
        Also take control requests over ZeroMQ on 127.0.0.1 while running (``sdl control``;
        see :mod:`sdl.loop.control_server`).
    client
        The catalog to record into (a tiled client); default: the SQLite catalog in the
        campaign's data directory.
    stations
        Makes the stations, given this runner (see :mod:`sdl.facility.queue_station`); default:
        ``devices.stations`` simulated or EPICS stations in this process.
    lock_database
        A PostgreSQL URI: also hold the campaign's advisory lock there while running, for
        writers on other hosts that share only the catalog's database. The lock file in the
        data directory is always held (:mod:`sdl.records.lock`).

    Attributes
    ----------
    control
        Pause, resume, abort, veto and inject, from any thread (see :mod:`sdl.campaign.control`).
    analysis
        The campaign's analysis: local stations analyse with it, and resuming analyses a
        finished raw run that has no analysis run yet.
    """

    def __init__(
        self,
        config: CampaignConfig,
        *,
        on_experiment: Callable[[CampaignResult], None] | None = None,
        serve_control: bool = False,
        client: Any = None,
        stations: Callable[[CampaignRunner], Sequence[Station]] | None = None,
        lock_database: str | None = None,
    ) -> None:
        self.config = config
        self.alerts = Alerts(config.alerts, config.name)  # first: a missing secret stops here
        self.lock_database = lock_database
        self.on_experiment = on_experiment
        self.serve_control = serve_control
        self.data_dir = Path(config.data_dir)
        if client is not None:  # its lock and raw files live here, the catalog elsewhere
            self.data_dir.mkdir(parents=True, exist_ok=True)
        beamline = config.devices.beamline
        self.client = (
            client
            if client is not None
            else open_catalog(
                self.data_dir, create=True, readable=beamline.files if beamline else ()
            )
        )
        self.writer = BackgroundWriter(make_writer(self.client), after=self._tell_watchers)
        self.recorder = DecisionRecorder(config.name, self.writer)
        self.analysis = build_analysis(config)
        self.agent = build_agent(config)
        self.result = CampaignResult(config)
        self._watchers: list[Callable[[str, Mapping[str, Any]], Any]] = []
        self._lock = threading.RLock()  # the agent, the result and the count of experiments
        self._started = 0  # experiments begun (kept or still running)
        self._awaiting = 0  # proposals waiting at the approval gate
        # The rest of the agent's latest batch, with its beliefs, in the order proposed.
        self._batch: deque[tuple[dict[str, Any], dict[str, float]]] = deque()
        self._stop_reason: str | None = None
        self.control = CampaignControl(
            on_pause=self._pause_stations, check_conditions=self._edit_problem
        )
        self.gate = ApprovalGate(config.approval, self.control, self.alerts)
        self.expected_duration = expected_duration(config)
        self.stations = list(stations(self) if stations else self._local_stations())
        # Proposals are checked against a reactor in this process before any station gets
        # them; queue stations' reactors live in their queueservers and check there.
        first = self.stations[0]
        self._instruments = first.instruments if isinstance(first, LocalStation) else None

    def _local_stations(self) -> list[LocalStation]:
        """``devices.stations`` stations in this process, each with its own random streams."""
        count = self.config.devices.stations
        return [
            LocalStation(
                f"station-{index}" if count > 1 else "station",
                build_instruments(
                    self.config.model_copy(update={"seed": self.config.seed + index}),
                    raw_dir(self.data_dir, self.config.name),
                ),
                self.analysis,
                self.writer,
                self.checkpoint,
                self.expected_duration,
            )
            for index in range(count)
        ]

    @property
    def instruments(self) -> Instruments:
        """The first station's instruments, where the stations run in this process."""
        first = self.stations[0]
        if not isinstance(first, LocalStation):
            raise TypeError(
                f"station {first.name!r} runs elsewhere (a queueserver); its instruments are there"
            )
        return first.instruments

    def run(self) -> CampaignResult:
        """Run experiments until the budget is spent, the agent says stop, or someone aborts.

        An abort (by a person or a fault policy) or Ctrl-C stops cleanly: the run in
        progress is closed as aborted, and running the campaign again resumes it. A second
        Ctrl-C stops at once.
        """
        with contextlib.ExitStack() as locks:
            locks.enter_context(data_dir_lock(self.data_dir, self.config.name))
            if self.lock_database is not None:
                locks.enter_context(postgres_lock(self.lock_database, self.config.name))
            with self._alerting():
                self._run_locked()
        if self.writer.error is not None:
            raise CatalogError(
                f"the campaign stopped because its catalog could not be "
                f"written: {self.writer.error}"
            ) from self.writer.error
        return self.result

    def _run_locked(self) -> None:
        try:
            with _ctrl_c_aborts(self.control), self._control_server():
                self.recorder.campaign(self.config, self.analysis.settings)
                with self.writer.inline():  # resume reads the catalog between its writes
                    self._resume()
                self._loop()
        except (CampaignAborted, KeyboardInterrupt) as stop:
            self.result.stopped = str(stop) or f"aborted by {CTRL_C}"
            logger.warning("campaign %s stopped: %s", self.config.name, self.result.stopped)
        finally:
            self._record_requests()
            self.writer.flush()
            if self.control.pending_injections:
                logger.warning(
                    "%d injected point(s) did not run; they run first when campaign %s resumes",
                    self.control.pending_injections,
                    self.config.name,
                )

    def subscribe(self, watcher: Callable[[str, Mapping[str, Any]], Any]) -> None:
        """Also give ``watcher`` every document the campaign records (raw runs, analysis,
        faults, control, refusals), after the catalog has it. A watcher's error is logged
        and never stops the campaign."""
        self._watchers.append(watcher)

    def _tell_watchers(self, name: str, doc: Mapping[str, Any]) -> None:
        for watcher in self._watchers:
            try:
                watcher(name, doc)
            except Exception:
                logger.exception("a watcher could not follow a %s document", name)

    def status(self) -> dict[str, Any]:
        """Where the campaign stands, for people watching it."""
        paused, aborted = self.control.paused, self.control.aborted
        waiting = self.control.waiting
        if self.result.stopped is not None:
            state = "stopped"
        elif len(self.result.records) >= self.config.budget:
            state = "finished"
        elif aborted or paused:
            state = "aborting" if aborted else "paused"
        else:
            state = "waiting for approval" if len(waiting) >= len(self.stations) else "running"
        return {
            "campaign": self.config.name,
            "state": state,
            "experiments": len(self.result.records),
            "budget": self.config.budget,
            "faults": len(self.result.faults),
            "refused": self.result.refused,
            "pending_injections": self.control.pending_injections,
            "awaiting_approval": [proposal.as_json() for proposal in waiting],
            "stopped": self.result.stopped,
            "paused_by": paused.who if paused else None,
            "paused_because": paused.reason if paused else None,
        }

    @contextlib.contextmanager
    def _control_server(self) -> Iterator[None]:
        if not self.serve_control:
            yield
            return
        server = ControlServer(self.control, self.status, self.record_control)
        server.start(connection_file(self.data_dir, self.config.name))
        logger.info("control requests on %s (sdl control)", server.address)
        try:
            yield
        finally:
            server.stop()

    def _loop(self) -> None:
        """Every station takes experiments until the campaign is done; with several, each in
        its own thread. The first error of any station ends the campaign once the others
        have finished the experiment they are running."""
        if len(self.stations) == 1:
            self._station_loop(self.stations[0])
            return
        errors: list[BaseException] = []

        def work(station: Station) -> None:
            try:
                self._station_loop(station)
            except BaseException as error:  # handed to the main thread below
                with self._lock:
                    errors.append(error)
                    self._stop_reason = self._stop_reason or f"{station.name}: {error}"
                self.control.close_gate(f"the campaign stops: {station.name}: {error}")

        threads = [
            threading.Thread(target=work, args=(station,), name=station.name, daemon=True)
            for station in self.stations
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(timeout=0.2)  # the main thread stays free for Ctrl-C
        if errors:
            raise errors[0]

    def _station_loop(self, station: Station) -> None:
        refusals = 0
        while True:
            self.checkpoint()
            with self._lock:
                if self._stop_reason or self._started + self._awaiting >= self.config.budget:
                    return
                if self.result.records:
                    stop, reason = self.agent.should_stop()
                    if stop:
                        logger.info("agent stopped the campaign: %s", reason)
                        self._stop_reason = f"agent: {reason}"
                        return
                proposal, proposed_by, request_id, beliefs = self._next_proposal()
                conditions = {name: float(proposal[name]) for name in self.config.search_space}
                problem = self._problem(conditions, proposed_by)
                held_because = (
                    self._approval_reasons(conditions, beliefs)
                    if problem is None and proposed_by == "agent"
                    else []
                )
                self._awaiting += bool(held_because)
            if held_because:
                waiting = WaitingProposal(
                    proposal[PROPOSAL_ID], conditions, beliefs, tuple(held_because), station.name
                )
                conditions, problem, request_id = self._await_person(waiting)
            with self._lock:
                # In the same step as the slot it frees or takes.
                self._awaiting -= bool(held_because)
                if held_because and self._stop_reason:
                    return  # the campaign stopped while the proposal waited: it does not run
                if problem:
                    refusals += 1
                    self._refuse(proposal, conditions, problem, request_id)
                else:
                    refusals = 0
                    md = experiment_metadata(
                        self.config,
                        self._started,
                        proposal[PROPOSAL_ID],
                        proposed_by,
                        station.name,
                        beliefs,
                        request_id,
                    )
                    self._started += 1
            if refusals >= MAX_CONSECUTIVE_REFUSALS:
                raise CampaignAborted(
                    f"{refusals} proposals in a row were refused; last: {problem}"
                )
            if problem:
                continue
            self._experiment(station, md, {**conditions, **self.config.fixed_conditions})
            if self.on_experiment:
                self.on_experiment(self.result)

    def _await_person(self, waiting: WaitingProposal) -> tuple[dict[str, float], str | None, str]:
        """Hold a proposal at the approval gate until it is decided: the conditions to run
        (edited or not), why it must not run (rejected) or None, and the decision's id."""
        decision = self.gate.decide(waiting)
        self._record_requests()
        if decision.action == "reject":
            reason = decision.reason or "no reason given"
            return (
                dict(waiting.conditions),
                f"rejected by {decision.who}: {reason}",
                decision.request_id,
            )
        self.checkpoint()  # a pause during the wait holds the approved experiment
        return dict(decision.conditions or waiting.conditions), None, decision.request_id

    def _problem(self, conditions: Mapping[str, float], proposed_by: str) -> str | None:
        """Why this proposal must not run: past a limit, or a person's veto of the agent's."""
        problem = with_disconnect_retries(
            partial(self._limits_problem, conditions),
            "checking the proposal against the device limits",
            self.config.on_fault.disconnect,
        )
        veto = self.control.take_veto() if problem is None and proposed_by == "agent" else None
        if veto is not None:
            problem = f"vetoed by {veto.who}: {veto.reason or 'no reason given'}"
        return problem

    def _limits_problem(self, conditions: Mapping[str, float]) -> str | None:
        return refusal_reason(conditions, self.config.search_space, self._instruments)

    def _edit_problem(self, conditions: Mapping[str, float]) -> str | None:
        """Why a person's edit of a waiting proposal cannot run: outside the search space as
        the agent knows it (linear constraints, levels, a pool) or past a device's limit."""
        try:
            self.agent.space.validate(conditions)
        except ValueError as error:
            return str(error)
        return self._limits_problem(conditions)

    def _approval_reasons(
        self, conditions: Mapping[str, float], beliefs: Mapping[str, float]
    ) -> list[str]:
        explored = [record.conditions for record in self.result.records if not record.failed]
        return approval_reasons(
            self.config.approval, conditions, beliefs, explored, self.config.search_space
        )

    def _next_proposal(self) -> tuple[dict[str, Any], str, str | None, dict[str, float]]:
        """A person's injected point if one waits (and the search space takes it), else the
        agent's next proposal; who proposed it, the injection's request id and the agent's
        beliefs about the point.

        The agent proposes ``agent.batch_size`` points at once (fewer when the budget has less
        room left); the rest of a batch waits here for the next stations that are free.
        """
        injection = self.control.take_injection()
        if injection is not None:
            conditions = dict(injection.conditions or {})
            try:
                (proposal,) = self.agent.register_suggestions([conditions])
                return proposal, injection.who, injection.request_id, {}
            except ValueError as error:  # e.g. it breaks a linear constraint of the space
                reason = f"injected by {injection.who}, refused by the search space: {error}"
                self.recorder.refused(None, conditions, reason, injection.request_id)
                self.result.refused += 1
        if not self._batch:
            room = self.config.budget - self._started - self._awaiting
            size = min(self.config.agent.batch_size, room)
            if self.agent.space.is_pool:
                size = max(1, min(size, len(self.agent.remaining_candidates())))
            batch = self.agent.suggest(size)
            report = self.agent.report()
            self._batch.extend((point, report.get(point[PROPOSAL_ID], {})) for point in batch)
            if size > 1:
                logger.info("agent proposed a batch of %d", size)
        proposal, beliefs = self._batch.popleft()
        return proposal, "agent", None, beliefs

    def checkpoint(self) -> None:
        """Between steps: record requests, wait out a pause, stop on an abort (or when the
        catalog can no longer be written: nothing runs unrecorded)."""
        if self.writer.error is not None:
            raise CampaignAborted(f"the catalog could not be written: {self.writer.error}")
        self._record_requests()
        paused = self.control.paused  # once: a person may resume it meanwhile
        if paused is not None:
            logger.warning(
                "campaign %s paused by %s: %s; waiting to be resumed",
                self.config.name,
                paused.who,
                paused.reason,
            )
            alert_pause(self.alerts, paused)
        self.control.wait_while_paused()
        self._record_requests()

    def _pause_stations(self) -> None:
        for station in self.stations:
            station.pause()

    def _refuse(
        self,
        proposal: Mapping[str, Any],
        conditions: Mapping[str, float],
        reason: str,
        injection_id: str | None,
    ) -> None:
        """Record a refused proposal in the catalog and tell the agent it failed."""
        self.recorder.refused(proposal[PROPOSAL_ID], conditions, reason, injection_id)
        self.agent.register_failures([proposal])
        self.result.refused += 1

    def _record_requests(self) -> None:
        for request in self.control.take_log():
            self.recorder.control(request)

    def record_control(self) -> None:
        """Record the requests taken so far and wait until the catalog has them: the
        control socket and the dashboard call it before they answer a request."""
        self._record_requests()
        self.writer.flush()

    def _experiment(
        self, station: Station, md: Mapping[str, Any], conditions: dict[str, float]
    ) -> None:
        """Make and measure one sample, applying the fault policy until it succeeds or not."""
        faults = ExperimentFaults(self.config.on_fault, md, conditions)
        for attempt in itertools.count(1):
            outcome = station.attempt(conditions, {**md, ATTEMPT: attempt})
            if isinstance(outcome, Measured):
                self._keep(
                    ExperimentRecord(
                        md[ITERATION],
                        md[PROPOSAL_ID],
                        conditions,
                        outcome.features,
                        outcome.raw_uid,
                        outcome.instrument_time_s,
                        station.name,
                    )
                )
                return
            fault = faults.decide(outcome, attempt)
            self._record_fault(fault)
            if fault.action == "retry":
                faults.wait_to_retry(fault)
            elif fault.action == "skip":
                self._keep(
                    ExperimentRecord(
                        md[ITERATION],
                        md[PROPOSAL_ID],
                        conditions,
                        {},
                        fault.raw_uid or "",
                        0.0,
                        station.name,
                    )
                )
                return
            elif fault.action == "pause":
                self.control.pause("fault policy", f"{fault.kind}: {fault.reason}")
                self.checkpoint()
            else:
                raise CampaignAborted(f"aborted by the fault policy: {fault.kind}: {fault.reason}")

    def _keep(self, record: ExperimentRecord) -> None:
        """Count a finished experiment, once its records are in the catalog: the agent,
        the progress bar, the dashboard and the summary never count what a crash could
        still take away."""
        self.writer.flush()
        if self.writer.error is not None:
            raise CampaignAborted(f"the catalog could not be written: {self.writer.error}")
        self._count(record)
        logger.info(
            FINISHED_LOG,
            record.iteration,
            record.proposal_id,
            record.raw_uid or "none",
        )

    def _count(self, record: ExperimentRecord) -> None:
        with self._lock:
            self._tell_agent(record)
            self.result.records.append(record)

    def _record_fault(self, fault: Fault) -> None:
        with self._lock:
            self.recorder.fault(fault)
            self.result.faults.append(fault)
        alert_fault(self.alerts, fault)

    @contextlib.contextmanager
    def _alerting(self) -> Iterator[None]:
        """Tell the notifiers how the campaign ended, and give them time to deliver it."""
        error = None
        try:
            yield
        except BaseException as raised:
            error = f"{type(raised).__name__}: {raised}"
            raise
        finally:
            if self.writer.error is not None:
                error = error or f"the catalog could not be written: {self.writer.error}"
            alert_end(
                self.alerts,
                self.result,
                self.config.budget,
                stopped=self.result.stopped or error,
                target=self.agent.history.stop_reason(None),  # the objectives' targets only
                stop_reason=self._stop_reason,
            )
            self.alerts.close()

    def _tell_agent(self, record: ExperimentRecord) -> None:
        point = {**record.conditions, PROPOSAL_ID: record.proposal_id}
        if record.failed or not all(
            math.isfinite(record.features.get(name, math.nan))
            for name in self.result.objective_names
        ):
            self.agent.register_failures([point])
        else:
            self.agent.ingest([{**point, **record.features}])

    def _resume(self) -> None:
        """Read this campaign's finished experiments back from the catalog into a fresh agent."""
        for station in self.stations:
            station.settle()
        for record in resumed_records(
            self.client, self.config.name, self.analysis, self.writer, self._record_fault
        ):
            self._count(record)
        self._started = len(self.result.records)
        for injection in pending_injections(self.client, self.config.name):
            logger.info("injection by %s carried over from an earlier run", injection.who)
            self.control.carry_over(injection)
        self._adopt_orphaned_files()
        if self.result.records:
            logger.info(
                "resumed campaign %s with %d experiments from the catalog",
                self.config.name,
                len(self.result.records),
            )

    def _adopt_orphaned_files(self) -> None:
        """Move instrument files no run refers to aside, and record where they went."""
        directory = raw_dir(self.data_dir, self.config.name)
        orphans = orphaned_files(self.client, self.config.name, directory)
        if not orphans:
            return
        aside = directory / ORPHANED_FOLDER
        aside.mkdir(exist_ok=True)
        for path in orphans:
            path.rename(aside / path.name)
        self.recorder.orphaned_files([path.name for path in orphans], str(aside))


@contextlib.contextmanager
def _ctrl_c_aborts(control: CampaignControl) -> Iterator[None]:
    """While the campaign runs, the first Ctrl-C asks ``control`` for a clean abort."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def abort(signum: int, frame: Any) -> None:
        if control.aborted is not None:
            raise KeyboardInterrupt
        print("stopping after the current step (Ctrl-C again to stop at once)", file=sys.stderr)
        control.abort(CTRL_C, "interrupted from the keyboard")

    previous = signal.signal(signal.SIGINT, abort)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def refusal_reason(
    conditions: Mapping[str, float], search_space: Mapping[str, Any], instruments: Any
) -> str | None:
    """Why the devices must not be sent these conditions (None if they are safe).

    The search space bounds the agent; each setpoint's own ``check_value`` applies the
    device's safe limits (on EPICS, the PV's control limits too), as a move would, and a
    beamline motor's soft limits are read as it reports them now. Without instruments in
    this process (its stations are queueservers), the search space, which was checked
    against the devices' limits, is the bound here, and each station's setpoints check
    again before they move.
    """
    for name, value in conditions.items():
        parameter = search_space[name]
        if not parameter.low <= value <= parameter.high:
            return (
                f"{name}={value:g} {parameter.unit} is outside the search space "
                f"[{parameter.low:g}, {parameter.high:g}] {parameter.unit}"
            )
    if instruments is None:
        return None
    try:
        instruments.check_conditions(conditions)  # each device's limits, and any joint limit
    except ValueError as error:
        return str(error)
    return None


def reported_proposals(log_text: str) -> list[str]:
    """The proposal ids a campaign's log (``sdl -v run``) reported as finished, in order."""
    pattern = re.escape(FINISHED_LOG).replace("%d", r"\d+").replace("%s", r"([^,\s]+)")
    return [match.group(1) for match in re.finditer(pattern, log_text)]
