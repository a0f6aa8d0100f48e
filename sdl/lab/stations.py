"""Stations: one reactor with its instruments, run by its own RunEngine (here or in a queueserver).

A campaign feeds one or more stations; each takes one experiment at a time and reports how
it went as :class:`Measured` or :class:`Failed`, so the closed loop is the same whether the
station's RunEngine lives in this process (:class:`LocalStation`) or in bluesky-queueserver
(:class:`sdl.facility.queue_station.QueueStation`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, cast

from bluesky import RunEngine
from bluesky.utils import FailedStatus, RunEngineInterrupted

from devices.epics import EpicsError
from plans.experiment import device_error, error_text, synthesize_and_measure
from sdl.analysis.pipeline import RunDocuments, instrument_time_s
from sdl.campaign.control import CampaignAborted
from sdl.lab.instruments import Instruments
from simulators.faults import InstrumentFault, SetpointMissed

#: Fault kind of each error an instrument may raise (checked in order; subclasses first).
FAULT_KINDS: tuple[tuple[type[BaseException], str], ...] = (
    (EpicsError, "disconnect"),
    (TimeoutError, "timeout"),
    (SetpointMissed, "setpoint_miss"),
    (InstrumentFault, "instrument_error"),
)


@dataclass(frozen=True)
class Measured:
    """An experiment that ran and was analysed: its raw run, features and instrument time."""

    raw_uid: str
    features: dict[str, float]
    instrument_time_s: float


@dataclass(frozen=True)
class Failed:
    """An attempt that went wrong: the ``on_fault`` kind, why, and the raw run if one exists."""

    kind: str
    reason: str
    raw_uid: str | None = None


class Station(Protocol):
    """What the closed loop needs of a station."""

    name: str

    def attempt(self, conditions: Mapping[str, float], md: Mapping[str, Any]) -> Measured | Failed:
        """Make and measure one sample at ``conditions``; ``md`` goes into the raw run."""

    def pause(self) -> None:
        """Pause the running plan at its next checkpoint (the campaign resumes it)."""

    @property
    def state(self) -> str:
        """Its RunEngine's state (idle, running, paused), for people watching."""


def fault_kind(error: BaseException) -> str | None:
    """The ``on_fault`` kind of an instrument's error, or None if no instrument raised it.

    Any error a device reports through its Status is at least an ``instrument_error``.
    """
    cause = device_error(error)
    for error_type, kind in FAULT_KINDS:
        if isinstance(cause, error_type):
            return kind
    return "instrument_error" if isinstance(error, FailedStatus) else None


def fault_kind_of_reason(reason: str) -> str:
    """The ``on_fault`` kind of a failed run's stop reason (``"ErrorType: message"``).

    Used where only the documents of a run are seen (a queueserver's RunEngine).
    """
    error_type_name = reason.split(":", 1)[0].strip()
    for error_type, kind in FAULT_KINDS:
        if error_type_name == error_type.__name__ or any(
            cls.__name__ == error_type_name for cls in _subclasses(error_type)
        ):
            return kind
    return "instrument_error"


def _subclasses(cls: type) -> list[type]:
    found: list[type] = []
    direct_subclasses: list[type] = cls.__subclasses__()
    for direct in direct_subclasses:
        found += [direct, *_subclasses(direct)]
    return found


Evaluate = Callable[[Mapping[str, Any], Mapping[str, Any]], "dict[str, float] | Failed"]


class LocalStation:
    """A station whose RunEngine runs in this process, in the calling thread.

    Parameters
    ----------
    name
        How the station is named in run metadata and logs.
    instruments
        Its reactor and detectors.
    emit
        Receives every document the RunEngine produces (the catalog writer).
    checkpoint
        Called while a plan is paused; raises :class:`CampaignAborted` to abort it.
    evaluate
        Turns a finished raw run (start document, primary data) into features or a failure.
    """

    def __init__(
        self,
        name: str,
        instruments: Instruments,
        emit: Callable[[str, Mapping[str, Any]], Any],
        checkpoint: Callable[[], None],
        evaluate: Evaluate,
    ) -> None:
        self.name = name
        self.instruments = instruments
        self._checkpoint = checkpoint
        self._evaluate = evaluate
        self.RE = RunEngine({}, call_returns_result=False)
        self.RE.context_managers = []  # Ctrl-C is the campaign's to handle
        self.RE.subscribe(emit)
        self.latest_run = RunDocuments()
        self.RE.subscribe(self.latest_run)

    def attempt(self, conditions: Mapping[str, float], md: Mapping[str, Any]) -> Measured | Failed:
        try:
            uid = self._run_plan(
                synthesize_and_measure(
                    self.instruments.reactor, self.instruments.detectors, conditions, md=md
                )
            )
        except (CampaignAborted, KeyboardInterrupt):
            raise
        except Exception as error:
            kind = fault_kind(error)
            if kind is None:
                raise
            start = self.latest_run.start if self.latest_run.started else {}
            same = start.get("_id") == md["_id"] and start.get("attempt") == md["attempt"]
            return Failed(kind, error_text(error), start["uid"] if same else None)
        data = self.latest_run.primary_data()
        evaluated = self._evaluate(self.latest_run.start, data)
        if isinstance(evaluated, Failed):
            return Failed(evaluated.kind, evaluated.reason, uid)
        return Measured(uid, evaluated, instrument_time_s(data))

    def pause(self) -> None:
        if self.RE.state == "running":
            self.RE.request_pause(defer=True)

    @property
    def state(self) -> str:
        return str(self.RE.state)

    def _run_plan(self, plan: Any) -> str:
        """Run a plan on the RunEngine, riding out pauses; Ctrl-C or an abort stops it."""
        try:
            # With call_returns_result=False the RunEngine returns the runs' uids.
            (uid,) = cast(tuple[str, ...], self.RE(plan))
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
