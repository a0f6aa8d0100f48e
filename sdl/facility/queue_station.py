"""The agent's side of a facility deployment: stations are queueservers, outcomes come by stream.

The agent service is the embedded :class:`~sdl.loop.runner.CampaignRunner` (same agent, same
fault policies, same records) whose stations are bluesky-queueservers: each experiment is a
``sdl_experiment`` plan added to a station's queue with bluesky-queueserver-api, and its
outcome (the raw run's stop, then the analysis service's features) is read off the document
stream. Nothing here unpickles: the stream is msgpack (:mod:`sdl.facility.stream`), the queueserver
API is JSON.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bluesky_queueserver_api import BPlan
from bluesky_queueserver_api.zmq import REManagerAPI
from event_model import DocumentRouter, Event

from sdl.analysis.pipeline import instrument_time_s
from sdl.campaign.control import CampaignAborted
from sdl.lab.stations import Failed, Measured, fault_kind_of_reason
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
    """

    def __init__(
        self,
        name: str,
        address: str,
        outcomes: StreamOutcomes,
        checkpoint: Callable[[], None],
        timeout_s: float = 3600.0,
    ) -> None:
        self.name = name
        self.address = address
        self._outcomes = outcomes
        self._checkpoint = checkpoint
        self._timeout_s = timeout_s
        self._api = REManagerAPI(zmq_control_addr=address)
        self._api_lock = threading.Lock()  # REManagerAPI is one REQ socket
        self._paused_here = threading.Event()  # the campaign paused this station's plan

    def attempt(self, conditions: Mapping[str, float], md: Mapping[str, Any]) -> Measured | Failed:
        key = (md[PROPOSAL_ID], int(md[ATTEMPT]))
        plan = BPlan(EXPERIMENT_PLAN, dict(conditions), md=dict(md))
        try:
            with self._api_lock:
                self._api.item_add(plan)
                if self._api.status()["manager_state"] == "idle":
                    self._api.queue_start()
        except REManagerAPI.RequestTimeoutError as error:  # the queueserver does not answer
            return Failed("disconnect", f"{self.name}'s queueserver at {self.address}: {error}")
        except REManagerAPI.RequestFailedError as error:  # it answered no
            return Failed(
                "instrument_error", f"{self.name}'s queueserver refused the plan: {error}"
            )
        deadline = time.monotonic() + self._timeout_s
        while time.monotonic() < deadline:
            outcome = self._outcomes.wait(key, timeout_s=0.5)
            if outcome is not None:
                return outcome
            if self._ride_out_pause() != "idle":  # a synthesis may take hours: wait it out
                deadline = time.monotonic() + self._timeout_s
        return Failed(
            "timeout",
            f"no outcome from {self.name} within {self._timeout_s:g} s of its queue going idle",
        )

    def _ride_out_pause(self) -> str:
        """While the campaign is paused, keep the plan it paused paused; resume it after, abort
        it on an abort. A plan someone else paused (``qserver re pause``) is theirs to resume.
        Returns the queueserver's manager state."""
        with self._api_lock:
            state = str(self._api.status()["manager_state"])
        if not (state == "paused" and self._paused_here.is_set()):
            return state
        try:
            self._checkpoint()
        except CampaignAborted:
            with self._api_lock:
                self._api.re_abort()
            raise
        with self._api_lock:
            self._api.re_resume()
        self._paused_here.clear()
        return "executing_queue"

    def pause(self) -> None:
        with self._api_lock:
            if self._api.status()["manager_state"] == "executing_queue":
                self._api.re_pause(option="deferred")
                self._paused_here.set()

    @property
    def state(self) -> str:
        with self._api_lock:
            return str(self._api.status()["re_state"])

    def close(self) -> None:
        self._api.close()
