"""Stations: one reactor with its instruments, run by its own RunEngine (here or in a queueserver).

A campaign feeds one or more stations; each takes one experiment at a time, measures the
sample and has it analysed, and reports how it went as :class:`Measured` (the features) or
:class:`Failed` (the ``on_fault`` kind and why), so the closed loop is the same whether the
station's RunEngine lives in this process (:class:`LocalStation`, which analyses the run
itself) or in bluesky-queueserver (:class:`sdl.facility.queue_station.QueueStation`, whose
runs the analysis service analyses).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, cast

from bluesky import RunEngine
from bluesky.run_engine import get_bluesky_event_loop
from bluesky.utils import FailedStatus, RunEngineInterrupted, TransitionError

from devices.epics import EpicsError
from plans.experiment import device_error, error_text
from sdl.analysis.microscopy.unet import load_model, segment_grains_unet
from sdl.analysis.pipeline import RawRun, SampleAnalysis
from sdl.analysis.xrd.calibration import calibration_at
from sdl.analysis.xrd.classifier import XRDClassifier
from sdl.campaign.config import CampaignConfig
from sdl.campaign.control import CampaignAborted
from sdl.campaign.systems import get_system
from sdl.lab.instruments import Instruments
from sdl.lab.watchdog import ExpectedDuration, ExperimentHung, Watchdog
from sdl.records.vocabulary import DocumentCallback
from simulators.faults import InstrumentFault, SetpointMissed

logger = logging.getLogger(__name__)

#: Fault kind of each error an instrument may raise (checked in order; subclasses first).
FAULT_KINDS: tuple[tuple[type[BaseException], str], ...] = (
    (ExperimentHung, "hang"),
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

    def settle(self) -> None:
        """Before the campaign resumes: let whatever the campaign sent the station before it
        stopped end, so the catalog holds its outcome when it is read back."""

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


def build_analysis(config: CampaignConfig) -> SampleAnalysis:
    """The analysis the campaign asks for, with its trained models loaded once."""
    settings = config.analysis
    segmenter = None
    if settings.segmenter == "unet" and settings.unet_model is not None:  # the config checks
        segmenter = partial(segment_grains_unet, load_model(settings.unet_model))
    classifier = XRDClassifier.load(settings.xrd_classifier) if settings.xrd_classifier else None
    return SampleAnalysis(
        config.instruments,
        get_system(config.devices.system).phases,
        zero_tolerance_deg=settings.xrd_zero_tolerance_deg,
        segmenter=segmenter,
        classifier=classifier,
        xrd_calibration=calibration_at(settings.xrd_instrument),
        xrd_phases=settings.xrd_phase_set(),
    )


class LocalStation:
    """A station whose RunEngine runs in this process, in the calling thread; it analyses
    each raw run as soon as the run ends.

    Parameters
    ----------
    name
        How the station is named in run metadata and logs.
    instruments
        Its reactor and detectors.
    analysis
        Turns a finished raw run into features (shared by stations: its models load once).
    emit
        Receives every document the station records: its RunEngine's and the analysis runs'
        (the catalog writer).
    checkpoint
        Called while a plan is paused; raises :class:`CampaignAborted` to abort it.
    expected
        What an experiment takes: a plan that runs far longer is aborted as hung (the
        campaign's watchdog; None: none).
    """

    def __init__(
        self,
        name: str,
        instruments: Instruments,
        analysis: SampleAnalysis,
        emit: DocumentCallback,
        checkpoint: Callable[[], None],
        expected: ExpectedDuration | None = None,
    ) -> None:
        self.name = name
        self.instruments = instruments
        self.analysis = analysis
        self._emit = emit
        self._checkpoint = checkpoint
        # A beamline's ophyd-async devices are bound to the loop their profile connected on.
        loop = get_bluesky_event_loop() if instruments.beamline.uses_loop else None
        self.RE = RunEngine({}, loop=loop, call_returns_result=False)
        self.RE.context_managers = []  # Ctrl-C is the campaign's to handle
        self.RE.subscribe(emit)
        self._expected = expected
        self._hung: str | None = None  # why the watchdog aborted the running plan

    def attempt(self, conditions: Mapping[str, float], md: Mapping[str, Any]) -> Measured | Failed:
        documents: list[tuple[str, Mapping[str, Any]]] = []
        token = self.RE.subscribe(lambda name, doc: documents.append((name, doc)))
        plan = self.instruments.experiment(conditions, md)
        try:
            uid = self._watched(plan, conditions)
        except (CampaignAborted, KeyboardInterrupt):
            raise
        except Exception as error:
            kind = fault_kind(error)
            if kind is None:
                raise
            return Failed(kind, error_text(error), documents[0][1]["uid"] if documents else None)
        finally:
            self.RE.unsubscribe(token)
        analysed = self.analysis.analyse(RawRun.from_documents(documents))
        if analysed.problem_kind is not None:
            return Failed(analysed.problem_kind, analysed.reason, uid)
        for name, doc in analysed.documents():
            self._emit(name, doc)
        return Measured(uid, analysed.features, analysed.raw.instrument_time_s)

    def pause(self) -> None:
        if self.RE.state == "running":
            self.RE.request_pause(defer=True)

    def settle(self) -> None:
        """Nothing to wait for: this station's plans end with the process that ran them."""

    @property
    def state(self) -> str:
        return str(self.RE.state)

    def _watched(self, plan: Any, conditions: Mapping[str, float]) -> str:
        """Run ``plan`` under the campaign's watchdog: aborted, and :class:`ExperimentHung`
        raised, once it has run far longer than an experiment at ``conditions`` should."""
        if self._expected is None:
            return self._run_plan(plan)
        self._hung = None
        with Watchdog(self._expected, conditions, self._runs, self._abort_hung, self.name) as dog:
            uid = self._run_plan(plan)
        self._expected.record(dog.running_s, conditions)
        return uid

    def _runs(self) -> bool:
        return bool(self.RE.state == "running")

    def _abort_hung(self, reason: str) -> None:
        logger.warning("%s; aborting its plan", reason)
        self._hung = reason
        with contextlib.suppress(TransitionError):  # it ended meanwhile
            self.RE.abort(reason)

    def _run_plan(self, plan: Any) -> str:
        """Run a plan on the RunEngine, riding out pauses; Ctrl-C or an abort stops it."""
        try:
            # With call_returns_result=False the RunEngine returns the runs' uids.
            (uid,) = cast(tuple[str, ...], self.RE(plan))
            return uid
        except RunEngineInterrupted:
            if self._hung is not None:
                raise ExperimentHung(self._hung) from None
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
