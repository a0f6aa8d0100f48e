"""Steering a running campaign: pause, resume, abort, veto the next proposal, inject a point,
approve or reject a proposal waiting at the approval gate.

:class:`CampaignControl` is the one place these requests meet the campaign loop. Any thread
may call it (a dashboard, a control socket, the fault policy); the campaign's own thread
acts on the requests between steps, and a pause also pauses the RunEngine at its next
checkpoint. Every request is kept as a :class:`ControlAction` so the campaign records who
did what, and when, in the catalog.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

logger = logging.getLogger(__name__)

#: Who asked, when the request came from the keyboard of the campaign's own terminal.
CTRL_C = "Ctrl-C"


class CampaignAborted(RuntimeError):
    """The campaign was stopped on purpose (a person, or a fault policy of ``abort``)."""


@dataclass(frozen=True)
class ControlAction:
    """One request to the campaign: what, by whom, when, with what details."""

    action: str
    who: str
    reason: str = ""
    time: float = field(default_factory=time.time)
    conditions: Mapping[str, float] | None = None
    #: Joins an injection's control run to the experiment (or refusal) that carried it out.
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    #: The proposal an approval or a rejection decides.
    proposal_id: str | None = None


@dataclass(frozen=True)
class WaitingProposal:
    """An agent's proposal held at the approval gate until a person decides."""

    proposal_id: str
    conditions: Mapping[str, float]
    belief: Mapping[str, float]
    reasons: tuple[str, ...]
    station: str
    since: float = field(default_factory=time.time)

    def as_json(self) -> dict[str, Any]:
        """What a person is shown: the point, why it waits, the agent's belief, since when."""
        return {
            "proposal_id": self.proposal_id,
            "conditions": dict(self.conditions),
            "belief": dict(self.belief),
            "reasons": list(self.reasons),
            "station": self.station,
            "since": self.since,
        }


class CampaignControl:
    """Thread-safe requests to one campaign.

    Parameters
    ----------
    on_pause
        Called (from the requesting thread) when a pause is requested, so the RunEngine can
        be asked to pause at its next checkpoint.
    check_conditions
        Why conditions a person edited into a waiting proposal cannot run (outside the search
        space or a device's limits), or None; an approval with such an edit is refused.
    """

    def __init__(
        self,
        on_pause: Callable[[], None] | None = None,
        check_conditions: Callable[[Mapping[str, float]], str | None] = lambda conditions: None,
    ) -> None:
        self.on_pause = on_pause
        self.check_conditions = check_conditions
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._paused: ControlAction | None = None
        self._aborted: ControlAction | None = None
        self._vetoes: deque[ControlAction] = deque()
        self._injections: deque[ControlAction] = deque()
        self._log: list[ControlAction] = []
        self._waiting: dict[str, WaitingProposal] = {}
        self._decisions: dict[str, ControlAction] = {}
        self._gate_closed: str | None = None  # why no held proposal will be decided

    @property
    def paused(self) -> ControlAction | None:
        """The pause in force, if any."""
        return self._paused

    @property
    def aborted(self) -> ControlAction | None:
        """The abort request, if any."""
        return self._aborted

    def pause(self, who: str, reason: str = "") -> None:
        """Stop starting new work (and pause the RunEngine at its next checkpoint)."""
        self._request(ControlAction("pause", who, reason))
        self._pause_devices()

    def _pause_devices(self) -> None:
        """Ask the devices to pause; one that cannot be reached is logged: the campaign is
        paused (or aborting) all the same."""
        if self.on_pause is None:
            return
        try:
            self.on_pause()
        except Exception:
            logger.exception("the devices could not all be asked to pause")

    def resume(self, who: str, reason: str = "") -> None:
        """Carry on after a pause."""
        self._request(ControlAction("resume", who, reason))

    def abort(self, who: str, reason: str = "") -> None:
        """Stop the campaign cleanly; it can be resumed later from the catalog."""
        self._request(ControlAction("abort", who, reason))
        self._pause_devices()

    def veto_next(self, who: str, reason: str = "") -> None:
        """Refuse the agent's next proposal (the agent is told it failed)."""
        self._request(ControlAction("veto", who, reason))

    def inject(self, conditions: Mapping[str, float], who: str, reason: str = "") -> None:
        """Run these conditions next, ahead of the agent's own proposals."""
        self._request(
            ControlAction(
                "inject", who, reason, conditions={k: float(v) for k, v in conditions.items()}
            )
        )

    def carry_over(self, injection: ControlAction) -> None:
        """Queue an injection that an earlier run of the campaign took but never ran (it is
        in the catalog already, so it is not logged again)."""
        with self._changed:
            self._injections.append(injection)
            self._changed.notify_all()

    @property
    def waiting(self) -> list[WaitingProposal]:
        """Proposals waiting for a person's decision, oldest first."""
        with self._lock:
            return sorted(self._waiting.values(), key=lambda waiting: waiting.since)

    def approve(
        self,
        proposal_id: str,
        who: str,
        reason: str = "",
        conditions: Mapping[str, float] | None = None,
    ) -> None:
        """Let a waiting proposal run, as proposed or with ``conditions`` edited in (those
        named; the rest stay as proposed).

        Raises ``ValueError`` (and nothing is recorded) when no such proposal waits, or the
        edit names a condition the proposal does not have or goes past the search space or
        a device's limit.
        """
        waiting = self._waiting_for(proposal_id)
        final = dict(waiting.conditions)
        if conditions:
            unknown = sorted(set(conditions) - set(final))
            if unknown:
                raise ValueError(
                    f"unknown condition(s) {unknown}; the proposal has {sorted(final)}"
                )
            final.update({name: float(value) for name, value in conditions.items()})
            problem = self.check_conditions(final)
            if problem:
                raise ValueError(f"the edited conditions cannot run: {problem}")
        self._decide(
            ControlAction("approve", who, reason, conditions=final, proposal_id=proposal_id)
        )

    def reject(self, proposal_id: str, who: str, reason: str = "") -> None:
        """Refuse a waiting proposal (the agent is told it failed, as for a veto)."""
        waiting = self._waiting_for(proposal_id)
        self._decide(
            ControlAction(
                "reject", who, reason, conditions=dict(waiting.conditions), proposal_id=proposal_id
            )
        )

    def hold(self, waiting: WaitingProposal) -> None:
        """Put a proposal at the gate; :meth:`await_decision` waits for its decision."""
        with self._changed:
            self._waiting[waiting.proposal_id] = waiting
            self._changed.notify_all()

    def await_decision(self, proposal_id: str, timeout_s: float | None) -> ControlAction:
        """The approval or rejection of a held proposal. Raises ``TimeoutError`` after
        ``timeout_s`` (None: no limit), the proposal still waiting; raises
        :class:`CampaignAborted` on an abort, the proposal leaving the gate undecided."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._changed:
            while proposal_id not in self._decisions:
                if self._aborted is not None:
                    self._waiting.pop(proposal_id, None)
                    _aborted_by(self._aborted)
                if self._gate_closed is not None:
                    self._waiting.pop(proposal_id, None)
                    raise CampaignAborted(self._gate_closed)
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"proposal {proposal_id} waited {timeout_s:g} s")
                self._changed.wait(left)
            return self._decisions.pop(proposal_id)

    def close_gate(self, reason: str) -> None:
        """Release every station waiting at the approval gate (the campaign is stopping for
        ``reason``): their proposals leave undecided, and none is held again."""
        with self._changed:
            self._gate_closed = reason
            self._waiting.clear()
            self._changed.notify_all()

    def withdraw(self, proposal_id: str) -> None:
        """Take a held proposal off the gate undecided (its station no longer waits)."""
        with self._changed:
            self._waiting.pop(proposal_id, None)
            self._changed.notify_all()

    def _waiting_for(self, proposal_id: str) -> WaitingProposal:
        with self._lock:
            waiting = self._waiting.get(proposal_id)
            if waiting is None:
                raise ValueError(
                    f"no proposal {proposal_id!r} is waiting for approval; waiting: "
                    f"{sorted(self._waiting) or 'none'}"
                )
            return waiting

    def _decide(self, decision: ControlAction) -> None:
        with self._changed:
            if self._waiting.pop(str(decision.proposal_id), None) is None:
                raise ValueError(f"proposal {decision.proposal_id!r} was decided meanwhile")
            self._log.append(decision)
            self._decisions[str(decision.proposal_id)] = decision
            self._changed.notify_all()

    @property
    def pending_injections(self) -> int:
        """Injections waiting for a station."""
        return len(self._injections)

    def _request(self, request: ControlAction) -> None:
        with self._changed:
            self._log.append(request)
            if request.action == "pause":
                self._paused = request
            elif request.action == "resume":
                self._paused = None
            elif request.action == "abort":
                self._aborted = request
            elif request.action == "veto":
                self._vetoes.append(request)
            elif request.action == "inject":
                self._injections.append(request)
            self._changed.notify_all()

    def take_log(self) -> list[ControlAction]:
        """The requests made since the last call, oldest first (to record them)."""
        with self._lock:
            log, self._log = self._log, []
        return log

    def take_veto(self) -> ControlAction | None:
        with self._lock:
            return self._vetoes.popleft() if self._vetoes else None

    def take_injection(self) -> ControlAction | None:
        with self._lock:
            return self._injections.popleft() if self._injections else None

    def wait_while_paused(self) -> None:
        """Block while paused; raise :class:`CampaignAborted` if an abort arrives."""
        with self._changed:
            while True:
                if self._aborted is not None:
                    _aborted_by(self._aborted)
                if self._paused is None:
                    return
                self._changed.wait()


def _aborted_by(abort: ControlAction) -> NoReturn:
    """Stop the waiting thread: ``abort`` is in force."""
    raise CampaignAborted(f"aborted by {abort.who}: {abort.reason or 'no reason given'}")
