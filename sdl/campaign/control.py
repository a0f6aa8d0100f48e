"""Steering a running campaign: pause, resume, abort, veto the next proposal, inject a point.

:class:`CampaignControl` is the one place these requests meet the campaign loop. Any thread
may call it (a dashboard, a control socket, the fault policy); the campaign's own thread
acts on the requests between steps, and a pause also pauses the RunEngine at its next
checkpoint. Every request is kept as a :class:`ControlAction` so the campaign records who
did what, and when, in the catalog.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

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


class CampaignControl:
    """Thread-safe requests to one campaign.

    Parameters
    ----------
    on_pause
        Called (from the requesting thread) when a pause is requested, so the RunEngine can
        be asked to pause at its next checkpoint.
    """

    def __init__(self, on_pause: Callable[[], None] | None = None) -> None:
        self.on_pause = on_pause
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._paused: ControlAction | None = None
        self._aborted: ControlAction | None = None
        self._vetoes: deque[ControlAction] = deque()
        self._injections: deque[ControlAction] = deque()
        self._log: list[ControlAction] = []

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
        if self.on_pause:
            self.on_pause()

    def resume(self, who: str, reason: str = "") -> None:
        """Carry on after a pause."""
        self._request(ControlAction("resume", who, reason))

    def abort(self, who: str, reason: str = "") -> None:
        """Stop the campaign cleanly; it can be resumed later from the catalog."""
        self._request(ControlAction("abort", who, reason))
        if self.on_pause:
            self.on_pause()

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
                    raise CampaignAborted(
                        f"aborted by {self._aborted.who}: "
                        f"{self._aborted.reason or 'no reason given'}"
                    )
                if self._paused is None:
                    return
                self._changed.wait()
