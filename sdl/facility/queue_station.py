"""The agent's side of a facility deployment: stations are queueservers, outcomes come by stream.

The agent service is the embedded :class:`~sdl.loop.runner.CampaignRunner` (same agent, same
fault policies, same records) whose stations are bluesky-queueservers: each experiment is a
``sdl_experiment`` plan added to a station's queue with bluesky-queueserver-api, and its
outcome (the raw run's stop, then the analysis service's features) is read off the document
stream. Nothing here unpickles: the stream is msgpack (:mod:`sdl.facility.stream`), the queueserver
API is JSON. Every request to a queueserver goes through :class:`QueueRequests`, which rides out
requests that time out on a loaded host (``devices.queueserver`` in the campaign file).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from bluesky_queueserver_api import BPlan
from bluesky_queueserver_api.zmq import REManagerAPI
from event_model import DocumentRouter, Event

from sdl.analysis.pipeline import instrument_time_s
from sdl.campaign.config import QueueserverConfig
from sdl.campaign.control import CampaignAborted
from sdl.lab.stations import Failed, Measured, fault_kind_of_reason
from sdl.lab.watchdog import ExpectedDuration
from sdl.records.routing import RunCallbacks, RunFollower
from sdl.records.vocabulary import (
    ATTEMPT,
    CAMPAIGN_ID,
    PROBLEM_KIND,
    PROPOSAL_ID,
    PURPOSE,
    RAW_UID,
    SUCCESS,
    Purpose,
)

logger = logging.getLogger(__name__)

#: Seconds a hung plan's RunEngine has to pause before it is aborted.
HANG_PAUSE_WAIT_S = 60.0

T = TypeVar("T")

#: The plan of :mod:`sdl.facility.qserver_startup` that a queue station runs.
EXPERIMENT_PLAN = "sdl_experiment"


@dataclass
class _Attempt:
    """One attempt's raw run as the stream has shown it so far."""

    key: tuple[str, int]  # (proposal _id, attempt number)
    readings: dict[str, float] = field(default_factory=dict)


class _RunReadings(DocumentRouter):
    """Keeps the numbers of one run's events in ``readings``; calls ``on_stop`` with its stop."""

    def __init__(
        self, readings: dict[str, float], on_stop: Callable[[Mapping[str, Any]], None]
    ) -> None:
        self.readings = readings
        self._on_stop = on_stop

    def event(self, doc: Event) -> Event:
        self.readings.update(
            {
                key: float(value)
                for key, value in doc["data"].items()
                if isinstance(value, int | float)
            }
        )
        return doc

    def stop(self, doc: Any) -> None:
        self._on_stop(doc)


class StreamOutcomes:
    """Follows the document stream and hands each attempt's outcome to whoever waits for it.

    Call it with every ``(name, doc)`` of the stream. An attempt (proposal ``_id``, attempt
    number) of campaign ``campaign_id`` ends as :class:`Failed` when its raw run stops
    without success or its analysis run fails, and as :class:`Measured` when its analysis
    run succeeds. Other campaigns' runs on the same stream are ignored.
    """

    def __init__(self, campaign_id: str) -> None:
        self.campaign_id = campaign_id
        self._changed = threading.Condition()
        self._router = RunFollower([self._follow])
        self._attempts: dict[str, _Attempt] = {}  # by raw run uid, until their outcome
        self._outcomes: dict[tuple[str, int], Measured | Failed] = {}

    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:
        with self._changed:
            self._router(name, doc)

    def _follow(self, name: str, start: Mapping[str, Any]) -> RunCallbacks:
        """Follow this campaign's raw runs and the analysis runs of those; no other run."""
        if start.get(CAMPAIGN_ID) != self.campaign_id:
            return [], []
        if start.get(PURPOSE) == Purpose.EXPERIMENT and PROPOSAL_ID in start:
            attempt = _Attempt((start[PROPOSAL_ID], int(start.get(ATTEMPT, 1))))
            self._attempts[start["uid"]] = attempt
            return [_RunReadings(attempt.readings, self._raw_stopped)], []
        if start.get(PURPOSE) == Purpose.ANALYSIS and start.get(RAW_UID) in self._attempts:
            features: dict[str, float] = {}
            return [
                _RunReadings(features, lambda stop: self._analysis_stopped(start, features, stop))
            ], []
        return [], []

    def _raw_stopped(self, stop: Mapping[str, Any]) -> None:
        """A raw run that ends without success is the attempt's outcome; else wait for its
        analysis."""
        if stop.get("exit_status") == SUCCESS:
            return
        raw_uid = stop["run_start"]
        reason = _reason(stop)
        attempt = self._attempts.pop(raw_uid)
        self._resolve(attempt.key, Failed(fault_kind_of_reason(reason), reason, raw_uid))

    def _analysis_stopped(
        self, start: Mapping[str, Any], features: dict[str, float], stop: Mapping[str, Any]
    ) -> None:
        raw_uid = start[RAW_UID]
        attempt = self._attempts.pop(raw_uid, None)
        if attempt is None:
            return
        if stop.get("exit_status") == SUCCESS:
            outcome: Measured | Failed = Measured(
                raw_uid, features, instrument_time_s(attempt.readings)
            )
        else:
            outcome = Failed(start.get(PROBLEM_KIND) or "analysis_error", _reason(stop), raw_uid)
        self._resolve(attempt.key, outcome)

    def _resolve(self, key: tuple[str, int], outcome: Measured | Failed) -> None:
        self._outcomes[key] = outcome
        self._changed.notify_all()

    def wait(self, key: tuple[str, int], timeout_s: float) -> Measured | Failed | None:
        """The outcome of attempt ``key``, waiting up to ``timeout_s`` (None if not yet)."""
        with self._changed:
            self._changed.wait_for(lambda: key in self._outcomes, timeout=timeout_s)
            return self._outcomes.pop(key, None)


def _reason(stop: Mapping[str, Any]) -> str:
    """Why a run stopped: its reason, else its exit status."""
    return str(stop.get("reason") or stop.get("exit_status", ""))


class QueueserverNotAnswering(ConnectionError):
    """A queueserver request that timed out on every try its policy allows; the message names
    the station, its address and the request."""


def backoff_s(policy: QueueserverConfig, retry: int, rng: random.Random) -> float:
    """The wait before retry number ``retry`` (1, 2, ...) of one request.

    ``policy.backoff_s`` doubled for each retry before this one, capped at
    ``policy.max_backoff_s``, then drawn from the upper half of that (jitter), so that
    stations which timed out together do not all ask again together.
    """
    cap = min(policy.max_backoff_s, policy.backoff_s * 2.0 ** (retry - 1))
    return cap * rng.uniform(0.5, 1.0)


class QueueRequests:
    """Sends a station's requests to its queueserver, trying again those that time out.

    A request that times out may or may not have reached the queueserver: the reply may be
    what was lost. Reads (:meth:`ask`) are sent again as they are. A request that changes
    the queueserver's state (:meth:`tell`) is sent again only after asking the queueserver
    whether the timed-out try already took effect: adding the same plan twice would run the
    experiment twice (the queueserver gives every added item a new uid, so a repeated
    ``item_add`` is not recognised as the same item), and a second ``queue_start``,
    ``re_pause``, ``re_resume`` or ``re_abort`` after the first took effect is refused,
    which would count as a fault that never happened. The check goes out after the back-off
    wait, and the queueserver answers one request at a time (a REP socket), so it sees any
    try the queueserver had begun before the check arrived; only a try still unread in the
    queueserver's inbound queue behind a stalled event loop could slip past it, which the
    wait of ``request_timeout_s`` plus the back-off makes unlikely.

    A request that times out on all ``1 + policy.retries`` tries raises
    :class:`QueueserverNotAnswering`; refusals (``RequestFailedError``) are not retried.

    Parameters
    ----------
    api
        The queueserver's client, an ``REManagerAPI`` (or an object with its methods).
    where
        The station and address, for log lines and errors.
    policy
        Tries and back-off (``devices.queueserver``).
    sleep
        Waits the back-off; tests pass a recorder.
    rng
        Draws the jitter (default: a fresh, unseeded ``random.Random``).
    """

    def __init__(
        self,
        api: Any,
        where: str,
        policy: QueueserverConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.api = api
        self.where = where
        self.policy = policy
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._lock = threading.Lock()  # REManagerAPI is one REQ socket; free while backing off

    def ask(self, request: str, read: Callable[[Any], T]) -> T:
        """Answer of ``read(api)``, a request that changes nothing, named ``request``."""
        return self._retried(request, lambda first: read(self.api))

    def tell(
        self, request: str, change: Callable[[Any], object], landed: Callable[[Any], bool]
    ) -> None:
        """Send ``change(api)``, named ``request``; before sending it again after a timeout,
        ``landed(api)`` says whether the timed-out try already took effect."""

        def once(first: bool) -> None:
            if not first and landed(self.api):
                logger.info(
                    "%s: the timed-out %s had taken effect; not sending it again",
                    self.where,
                    request,
                )
                return
            change(self.api)

        self._retried(request, once)

    def _retried(self, request: str, once: Callable[[bool], T]) -> T:
        """``once(first_try)``, tried again with back-off while it times out."""
        tries = 1 + self.policy.retries
        for attempt in range(1, tries + 1):
            try:
                with self._lock:
                    return once(attempt == 1)
            except REManagerAPI.RequestTimeoutError as error:
                if attempt == tries:
                    raise QueueserverNotAnswering(
                        f"{self.where}: {request} timed out on all {tries} tries "
                        f"({self.policy.request_timeout_s:g} s each): {error}"
                    ) from error
                wait_s = backoff_s(self.policy, attempt, self._rng)
                logger.warning(
                    "%s: %s timed out (try %d of %d): %s; trying again in %.1f s",
                    self.where,
                    request,
                    attempt,
                    tries,
                    error,
                    wait_s,
                )
                self._sleep(wait_s)
        raise AssertionError("unreachable: the last try returns or raises")


def _manager_state(api: Any) -> str:
    """The queueserver's manager state (idle, executing_queue, paused, ...)."""
    return str(api.status()["manager_state"])


def _environment_state(api: Any) -> str:
    """``open`` (a RunEngine ready for plans), ``opening`` or ``closed``."""
    status = api.status(reload=True)
    if status["manager_state"] == "creating_environment":
        return "opening"
    return "open" if status["worker_environment_exists"] else "closed"


def _holds_attempt(api: Any, key: tuple[str, int]) -> bool:
    """Whether the queueserver's queue, running item or history holds attempt ``key``'s plan."""
    queue = api.queue_get(reload=True)
    history = api.history_get(reload=True)
    items = [*queue["items"], queue.get("running_item") or {}, *history["items"]]
    return any(_attempt_of(item) == key for item in items)


def _lost(api: Any, key: tuple[str, int]) -> bool:
    """Whether attempt ``key``'s plan was running when its queueserver's manager restarted
    (the manager then files it with exit status ``unknown``; nothing will report it)."""
    return any(
        _attempt_of(item) == key and item.get("result", {}).get("exit_status") == "unknown"
        for item in api.history_get(reload=True)["items"]
    )


def _queued_uid(api: Any, key: tuple[str, int]) -> str | None:
    """The queue item uid of attempt ``key``'s plan while it waits in the queue."""
    for item in api.queue_get(reload=True)["items"]:
        if _attempt_of(item) == key:
            return str(item["item_uid"])
    return None


def _attempt_of(item: Mapping[str, Any]) -> tuple[str, int] | None:
    """The (proposal ``_id``, attempt) of a queue item's ``sdl_experiment`` plan, if it is one."""
    md = item.get("kwargs", {}).get("md", {})
    if PROPOSAL_ID not in md:
        return None
    return md[PROPOSAL_ID], int(md.get(ATTEMPT, 1))


def _queue_started(api: Any) -> bool:
    """Whether the queue runs, or has already run everything in it (our plan included)."""
    status = api.status(reload=True)
    return status["manager_state"] != "idle" or status["items_in_queue"] == 0


def _pause_taken(api: Any) -> bool:
    """Whether a deferred pause is pending or done (or the plan ended: nothing to pause)."""
    status = api.status(reload=True)
    return bool(status["pause_pending"]) or status["manager_state"] != "executing_queue"


def _left_pause(api: Any) -> bool:
    """Whether the RunEngine is no longer paused (resumed or aborted)."""
    return bool(api.status(reload=True)["manager_state"] != "paused")


class QueueStation:
    """A station whose RunEngine is a bluesky-queueserver at ``address`` (its control socket).

    Parameters
    ----------
    name
        The station's name (``station-0`` ...), as its queueserver's startup module knows it.
    address
        The queueserver's ZeroMQ control address, e.g. ``tcp://127.0.0.1:60615``.
    outcomes
        The stream follower that reports how each attempt ended.
    checkpoint
        Called while waiting; raises :class:`CampaignAborted` to abort the running plan.
    timeout_s
        Longest wait for an attempt's outcome once the station's queue is idle (its plan has
        ended) before it counts as a ``timeout`` fault; the plan itself may run for hours.
    requests
        Timeout, retries and back-off of each request (``devices.queueserver``; default: its
        defaults). A request that times out on every try makes the attempt a ``disconnect``.
    api
        The queueserver's client (default: an ``REManagerAPI`` at ``address`` with the
        request timeout of ``requests``).
    expected
        The campaign's watchdog (:class:`~sdl.lab.watchdog.ExpectedDuration`), which says
        when a running plan counts as hung; None: no hang is ever flagged.
    """

    def __init__(
        self,
        name: str,
        address: str,
        outcomes: StreamOutcomes,
        checkpoint: Callable[[], None],
        timeout_s: float = 3600.0,
        requests: QueueserverConfig | None = None,
        api: Any | None = None,
        expected: ExpectedDuration | None = None,
    ) -> None:
        self.name = name
        self.address = address
        self._outcomes = outcomes
        self._checkpoint = checkpoint
        self._timeout_s = timeout_s
        policy = requests or QueueserverConfig()
        if api is None:
            api = REManagerAPI(zmq_control_addr=address, timeout_recv=policy.request_timeout_s)
        self._requests = QueueRequests(api, f"{name}'s queueserver at {address}", policy)
        self._paused_here = threading.Event()  # the campaign paused this station's plan
        self._expected = expected

    def attempt(self, conditions: Mapping[str, float], md: Mapping[str, Any]) -> Measured | Failed:
        key = (md[PROPOSAL_ID], int(md[ATTEMPT]))
        try:
            refused = self._submit(key, BPlan(EXPERIMENT_PLAN, dict(conditions), md=dict(md)))
            return refused or self._await_outcome(key, conditions)
        except QueueserverNotAnswering as error:
            return Failed("disconnect", str(error))

    def _submit(self, key: tuple[str, int], plan: BPlan) -> Failed | None:
        """Add attempt ``key``'s plan to the queue and start the queue if it is idle; a
        refusal is the attempt's ``instrument_error``."""
        try:
            self._open_environment()
            self._requests.tell(
                "item_add", lambda api: api.item_add(plan), lambda api: _holds_attempt(api, key)
            )
            if self._requests.ask("status", _manager_state) == "idle":
                self._requests.tell("queue_start", lambda api: api.queue_start(), _queue_started)
        except REManagerAPI.RequestFailedError as error:  # it answered no
            return Failed(
                "instrument_error", f"{self.name}'s queueserver refused the plan: {error}"
            )
        return None

    def _await_outcome(
        self, key: tuple[str, int], conditions: Mapping[str, float]
    ) -> Measured | Failed:
        """Attempt ``key``'s outcome from the stream, riding out pauses of the campaign; a
        plan that runs past the watchdog's limit is aborted and the attempt is a ``hang``."""
        deadline = time.monotonic() + self._timeout_s
        running_s, last, stopping, restarted = 0.0, time.monotonic(), False, False
        while time.monotonic() < deadline:
            outcome = self._outcomes.wait(key, timeout_s=0.5)
            if outcome is not None:
                if self._expected is not None and isinstance(outcome, Measured):
                    self._expected.record(running_s, conditions)
                return outcome
            state = self._ride_out_pause()
            if state == "idle" and self._requests.ask("history", partial(_lost, key=key)):
                return Failed(  # the station failed mid-plan: retried by default
                    "instrument_error",
                    f"{self.name}'s queueserver restarted while the plan ran; its outcome is lost",
                )
            if state == "idle" and not restarted:  # once: a later stop is a person's
                restarted = self._start_if_stalled(key)
            now = time.monotonic()
            if state == "executing_queue":
                running_s += now - last
            last = now
            limit = self._expected.limit_s(conditions) if self._expected is not None else None
            if limit is not None and running_s > limit and not stopping:
                stopping = True  # once: a plan that ended meanwhile sends its outcome
                hung = self._abort_hung(key, running_s, limit)
                if hung is not None:
                    return hung
            if state != "idle":  # a synthesis may take hours: wait it out
                deadline = time.monotonic() + self._timeout_s
        return Failed(
            "timeout",
            f"no outcome from {self.name} within {self._timeout_s:g} s of its queue going idle",
        )

    def _start_if_stalled(self, key: tuple[str, int]) -> bool:
        """Start the queue if it went idle with attempt ``key``'s plan still in it (a plan
        that fails stops a queueserver's queue, and the plan added just after it then waits),
        once the campaign is not paused; whether it did."""
        if self._requests.ask("queue", lambda api: _queued_uid(api, key)) is None:
            return False
        try:
            self._checkpoint()  # not while the campaign is paused
        except CampaignAborted:
            self._remove_queued(key)  # else it would run when someone starts the queue
            raise
        logger.warning("%s's queue stopped with this campaign's plan in it; starting it", self.name)
        try:
            self._open_environment()  # a restarted queueserver puts its running plan back
            self._requests.tell("queue_start", lambda api: api.queue_start(), _queue_started)
        except REManagerAPI.RequestFailedError as error:  # e.g. someone started it meanwhile
            logger.warning("%s: queue_start refused: %s", self.name, error)
        return True

    def _open_environment(self) -> None:
        """Open the station's RunEngine environment where its queueserver has none (it was
        restarted, by its service manager say), and wait until it is open; the campaign may
        pause or abort meanwhile."""
        if self._requests.ask("status", _environment_state) == "open":
            return
        logger.warning("%s's queueserver has no RunEngine environment; opening it", self.name)
        self._requests.tell(
            "environment_open",
            lambda api: api.environment_open(),
            lambda api: _environment_state(api) != "closed",
        )
        while (state := self._requests.ask("status", _environment_state)) == "opening":
            self._checkpoint()
            time.sleep(0.5)
        if state != "open":
            raise REManagerAPI.RequestFailedError(
                "environment_open",
                {"msg": "its RunEngine environment failed to open (see its log)"},
            )

    def _remove_queued(self, key: tuple[str, int]) -> None:
        """Take attempt ``key``'s plan out of the queue, if it waits there."""
        uid = self._requests.ask("queue", lambda api: _queued_uid(api, key))
        if uid is not None:
            self._requests.tell(
                "item_remove",
                lambda api: api.item_remove(uid=uid),
                lambda api: _queued_uid(api, key) is None,
            )

    def _abort_hung(self, key: tuple[str, int], running_s: float, limit_s: float) -> Failed | None:
        """Stop the hung plan (pause at once, then abort) and say why; None if it ended
        meanwhile (its outcome is on the way)."""
        reason = (
            f"{self.name} hung: its plan ran for {running_s:.0f} s, over the watchdog's "
            f"{limit_s:.0f} s"
        )
        logger.warning("%s; aborting it", reason)
        try:
            self._requests.tell(
                "re_pause", lambda api: api.re_pause(option="immediate"), _pause_taken
            )
            self._requests.ask(
                "wait for the pause",
                lambda api: api.wait_for_idle_or_paused(timeout=HANG_PAUSE_WAIT_S),
            )
            if self._requests.ask("status", _manager_state) != "paused":
                return None
            self._requests.tell("re_abort", lambda api: api.re_abort(), _left_pause)
            # The queueserver puts an aborted plan back at the front of its queue; the fault
            # policy, not the queue, decides whether it runs again.
            self._requests.ask(
                "wait for the abort", lambda api: api.wait_for_idle(timeout=HANG_PAUSE_WAIT_S)
            )
            self._remove_queued(key)
        except REManagerAPI.RequestFailedError:  # nothing left running to stop
            return None
        except REManagerAPI.WaitTimeoutError:
            reason += f"; it did not pause within {HANG_PAUSE_WAIT_S:g} s and may still be stuck"
        return Failed("hang", reason)

    def _ride_out_pause(self) -> str:
        """While the campaign is paused, keep the plan it paused paused; resume it after, abort
        it on an abort. A plan someone else paused (``qserver re pause``) is theirs to resume.
        Returns the queueserver's manager state."""
        state = self._requests.ask("status", _manager_state)
        if not (state == "paused" and self._paused_here.is_set()):
            return state
        try:
            self._checkpoint()
        except CampaignAborted:
            self._requests.tell("re_abort", lambda api: api.re_abort(), _left_pause)
            raise
        self._requests.tell("re_resume", lambda api: api.re_resume(), _left_pause)
        self._paused_here.clear()
        return "executing_queue"

    def settle(self) -> None:
        """Before a restarted agent service resumes the campaign: take the plans an earlier
        agent left waiting in the queue out of it (the campaign proposes again), and let the
        one running end, so that its run is in the catalog, counted once, not redone."""
        for item in self._requests.ask("queue", lambda api: api.queue_get(reload=True))["items"]:
            key = _attempt_of(item)
            if key is not None:
                logger.warning("%s: taking out a plan left from before the restart", self.name)
                self._remove_queued(key)
        waited = False
        while self._requests.ask("status", _manager_state) != "idle":
            if not waited:
                logger.warning("%s: waiting for the plan it is running to end", self.name)
                waited = True
            self._checkpoint()
            time.sleep(0.5)

    def pause(self) -> None:
        """Pause the running plan at its next checkpoint; :class:`QueueserverNotAnswering`
        when the queueserver does not answer (the campaign is paused all the same)."""
        if self._requests.ask("status", _manager_state) == "executing_queue":
            self._requests.tell(
                "re_pause", lambda api: api.re_pause(option="deferred"), _pause_taken
            )
            self._paused_here.set()

    @property
    def state(self) -> str:
        """The RunEngine's state, or ``not answering`` (for people watching, e.g. the
        dashboard; the retries are logged)."""
        try:
            return str(self._requests.ask("status", lambda api: api.status()["re_state"]))
        except QueueserverNotAnswering as error:
            logger.warning("%s", error)
            return "not answering"

    def close(self) -> None:
        self._requests.api.close()
