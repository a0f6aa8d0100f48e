"""EPICS backends of the instruments: the same device shapes, their signals over Channel Access.

Each EPICS class is built from an in-process shape (a reactor from
:func:`devices.reactor.reactor_class`, :class:`~devices.diffractometer.Diffractometer`,
:class:`~devices.microscope.Microscope`): every component keeps its name and kind and becomes
the EPICS signal that matches it, so ``describe()`` and the run documents do not change with
the backend. A :class:`~devices.signals.LimitedSignal` setpoint becomes an
:class:`EpicsLimitedSignal`; a read-back becomes an :class:`EpicsMeasuredSignal`. Each
instrument adds two PVs of its own: an action PV (``synthesize`` or ``acquire``; a put of 1
with put-completion runs the action) and ``status_message`` (empty after success, else why
the action failed), read after every action because put-completion carries no error.

A component's PV is ``prefix + pv_map.get(component, f"{device}:{component}")``, so a beamline
maps its own PV names in the campaign file without Python.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import ophyd
from ophyd import Component as Cpt
from ophyd import Device, EpicsSignal, EpicsSignalRO, Signal
from ophyd.device import create_device_from_components
from ophyd.status import DeviceStatus, StatusBase
from ophyd.utils.errors import LimitError

from devices.diffractometer import Diffractometer
from devices.microscope import FrameWritingMicroscope
from devices.reactor import ConditionLimits, Reactor, reactor_class
from devices.signals import LimitedSignal, MeasuredSignal

logger = logging.getLogger(__name__)

#: Component -> PV suffix (after the prefix), by device; what a campaign's ``pv_map`` overrides.
PVMap = Mapping[str, str]


class EpicsError(RuntimeError):
    """A PV that could not be reached or did not finish in time; the message names the PV."""


def use_caproto() -> None:
    """Make ophyd talk Channel Access through caproto (pure Python, no libca needed)."""
    if ophyd.get_cl().name != "caproto":
        ophyd.set_cl("caproto")


@dataclass(frozen=True)
class EpicsTimeouts:
    """How long to wait for a PV: to connect or answer a read, and to finish an action."""

    connect_s: float = 5.0
    action_s: float = 86_400.0


def limits_text(limits: tuple[float, float] | None) -> str:
    """Limits as reports print them, ``none`` where a PV sets none."""
    return "none" if limits is None else f"[{limits[0]:g}, {limits[1]:g}]"


def _connected_or_raise(signal: Any, timeout_s: float, purpose: str) -> None:
    try:
        signal.wait_for_connection(timeout=timeout_s)
    except TimeoutError:
        raise EpicsError(
            f"PV {signal.pvname} ({signal.name}) is not connected after {timeout_s:g} s; "
            f"cannot {purpose}. Is the IOC running and the PV name right?"
        ) from None


def put_with_completion(
    signal: EpicsSignal,
    value: Any,
    *,
    device: Any,
    purpose: str,
    timeout_s: float,
    on_complete: Callable[[], None] | None = None,
) -> DeviceStatus:
    """Put ``value`` and return a Status that finishes when the IOC reports completion.

    The Status fails with an :class:`EpicsError` naming the PV if completion does not come
    within ``timeout_s`` or the PV disconnects while waiting. ``on_complete`` runs (off the
    CA threads) after completion; an exception from it fails the Status.
    """
    status = DeviceStatus(device)

    def fail(error: Exception) -> None:
        if not status.done:
            status.set_exception(error)

    def finish() -> None:
        try:
            if on_complete is not None:
                on_complete()
        except Exception as error:
            fail(error)
        else:
            if not status.done:
                status.set_finished()

    def on_connection_change(*, connected: bool = True, **_: Any) -> None:
        if not connected:
            fail(
                EpicsError(
                    f"PV {signal.setpoint_pvname} ({signal.name}) disconnected while "
                    f"waiting to {purpose}"
                )
            )

    timer = threading.Timer(
        timeout_s,
        fail,
        [
            EpicsError(
                f"PV {signal.setpoint_pvname} ({signal.name}) did not report completion within "
                f"{timeout_s:g} s after the put to {purpose}"
            )
        ],
    )
    timer.daemon = True
    _connected_or_raise(signal, signal.connection_timeout, purpose)
    token = signal.subscribe(on_connection_change, event_type=signal.SUB_META, run=False)

    def clean_up(_: StatusBase) -> None:
        timer.cancel()
        signal.unsubscribe(token)

    status.add_callback(clean_up)
    timer.start()
    try:
        signal.put(
            value,
            use_complete=True,
            callback=lambda *_, **__: threading.Thread(target=finish, daemon=True).start(),
        )
    except BaseException:
        clean_up(status)  # refused before sending (a limit): no timer left waiting a day
        raise
    return status


class _SameDescription:
    """Describes an EPICS signal the way the in-process signal of the same component does.

    Keys are those of :meth:`ophyd.Signal.describe` (source, dtype, shape) plus units, with
    the PV as the source; arrays are native-endian, as the simulators make them.
    """

    pvname: str
    name: str

    def _fix_type(self, value: Any) -> Any:
        value = super()._fix_type(value)  # type: ignore[misc]
        if isinstance(value, np.ndarray):
            value = value.astype(value.dtype.newbyteorder("="), copy=False)
        return value

    def _described(self, units: str) -> dict[str, dict[str, Any]]:
        self.get()  # type: ignore[attr-defined]  # fresh value: describe() infers from it
        description = Signal.describe(self)  # type: ignore[arg-type]
        if units:
            description[self.name]["units"] = units
        return description


class EpicsMeasuredSignal(_SameDescription, EpicsSignalRO):
    """A read-back PV (scalar, waveform or string) with the units its component declares."""

    def __init__(self, read_pv: str, *, units: str = "", **kwargs: Any) -> None:
        super().__init__(read_pv, **kwargs)
        self.declared_units = units

    def describe(self) -> dict[str, dict[str, Any]]:
        return self._described(self.declared_units)


class EpicsLimitedSignal(_SameDescription, EpicsSignal):
    """A setpoint PV that refuses, before any put, a value outside the safe range.

    The safe range is the tighter of the configured limits and the PV's own control limits
    (``lower_ctrl_limit``/``upper_ctrl_limit``, i.e. DRVL/DRVH of an ``ao`` record), read
    fresh from the IOC each time so an operator's change is honoured. Puts wait for
    completion, as a controller that reports when the setpoint is reached, and then check
    that the PV took the value: the IOC's own defence, should its limits change after the check.
    """

    def __init__(
        self, read_pv: str, *, limits: tuple[float, float], units: str, **kwargs: Any
    ) -> None:
        super().__init__(read_pv, put_complete=True, **kwargs)
        low, high = (float(v) for v in limits)
        self.configured_limits = (low, high)
        self.declared_units = units

    @property
    def units(self) -> str:
        return self.declared_units

    def pv_limits(self) -> tuple[float, float] | None:
        """The PV's control limits now, or None where the IOC sets none (both zero)."""
        _connected_or_raise(self, self.connection_timeout, "read its control limits")
        try:
            ctrl = self._write_pv.get_ctrlvars(timeout=self.timeout)
        except TimeoutError:
            # The connection dropped between the check above and this read.
            ctrl = None
        if ctrl is None:
            raise EpicsError(
                f"PV {self.setpoint_pvname} ({self.name}) did not return its "
                f"control limits within {self.timeout:g} s"
            )
        low, high = float(ctrl["lower_ctrl_limit"]), float(ctrl["upper_ctrl_limit"])
        return (low, high) if low < high else None

    @property
    def limits(self) -> tuple[float, float]:
        low, high = self.configured_limits
        pv_limits = self.pv_limits()
        if pv_limits is not None:
            low, high = max(low, pv_limits[0]), min(high, pv_limits[1])
        return low, high

    def check_value(self, value: Any) -> None:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{self.name} must be a number, got {value!r}") from None
        low, high = self.limits
        if not low <= number <= high:
            raise LimitError(
                f"{self.name}={number:g} {self.declared_units} is outside the safe range "
                f"[{low:g}, {high:g}] {self.declared_units} (configured "
                f"{limits_text(self.configured_limits)}, PV {self.setpoint_pvname} control "
                f"limits {limits_text(self.pv_limits())}); nothing was sent"
            )

    def check_taken(self, value: float) -> None:
        """Raise :class:`LimitError` if the PV does not hold ``value`` after its put completed.

        An EPICS IOC completes a refused put-callback with ``ECA_PUTFAIL``, which ophyd does
        not pass on, and an ``ao`` record clamps to DRVL/DRVH: the value held tells both.
        """
        held = float(self.get())
        if abs(held - value) > (self.tolerance or 0.0):
            raise LimitError(
                f"PV {self.setpoint_pvname} refused {self.name}={value:g} "
                f"{self.declared_units}: it holds {held:g} after the put; its control "
                f"limits are {limits_text(self.pv_limits())}"
            )

    def set(
        self, value: Any, *, timeout: float | None = None, settle_time: float | None = None
    ) -> DeviceStatus:
        """Put with completion; an unsafe value raises :class:`LimitError` before the put, and
        one the IOC refused fails the Status with :class:`LimitError` once the put is answered."""
        number = float(value)
        return put_with_completion(
            self,
            number,
            device=self,
            purpose=f"set {self.name}={value}",
            timeout_s=self.write_timeout if timeout is None else timeout,
            on_complete=lambda: self.check_taken(number),
        )

    def describe(self) -> dict[str, dict[str, Any]]:
        description = self._described(self.declared_units)
        low, high = self.limits
        description[self.name].update(lower_ctrl_limit=low, upper_ctrl_limit=high)
        return description


class EpicsInstrument(Device):
    """What every EPICS instrument adds to its shape: an action PV and its status message.

    Subclasses name their action component; ``trigger()`` puts 1 to it with completion and
    then checks ``status_message``, so a failure on the IOC fails the Status with its reason.
    """

    action_component: ClassVar[str] = "acquire"
    #: Shape components that stay in-process (not PVs), e.g. the microscope's datum reference.
    local_components: ClassVar[tuple[str, ...]] = ()

    timeouts: ClassVar[EpicsTimeouts] = EpicsTimeouts()

    def action_finished(self) -> None:
        """Runs after the action's put completed: raise if the IOC reported a failure."""
        message = self.status_message.get()
        if message:
            raise EpicsError(f"{self.status_message.pvname}: {message}")

    def trigger(self) -> StatusBase:
        action = getattr(self, self.action_component)
        return put_with_completion(
            action,
            1,
            device=self,
            purpose=f"{self.action_component} on {self.name}",
            timeout_s=self.timeouts.action_s,
            on_complete=self.action_finished,
        )

    def epics_signals(self) -> list[EpicsSignalRO | EpicsSignal]:
        """Every PV-backed signal of the device (for connection checks)."""
        return [
            getattr(self, name)
            for name in self.component_names
            if isinstance(getattr(self, name), EpicsSignalRO | EpicsSignal)
        ]


class EpicsReactor(EpicsInstrument, Reactor):
    """A synthesis reactor over EPICS: condition setpoints, then ``synthesize`` makes a sample."""

    action_component = "synthesize"


class EpicsDiffractometer(EpicsInstrument, Diffractometer):
    """A powder diffractometer over EPICS: ``acquire`` scans, then the pattern PVs are read."""


class EpicsMicroscope(EpicsInstrument, FrameWritingMicroscope):
    """A microscope over EPICS: ``acquire`` images, the frame is read from its waveform PV
    and written to HDF5 exactly as the simulated microscope writes it."""

    local_components = ("image",)

    def action_finished(self) -> None:
        super().action_finished()
        frame = np.asarray(self.image_data.get())
        if frame.size != int(np.prod(self.frame_shape)):
            raise EpicsError(
                f"PV {self.image_data.pvname} holds {frame.size} values; a "
                f"{self.frame_shape[0]}x{self.frame_shape[1]} frame needs "
                f"{int(np.prod(self.frame_shape))}"
            )
        self.store_frame(frame.reshape(self.frame_shape))


_ACTION = (EpicsSignal, {"put_complete": True})
_STATUS = (EpicsSignalRO, {"string": True})

#: PV-only components of each EPICS instrument beyond its shape: name -> (class, kwargs).
_EXTRA_COMPONENTS: dict[type[EpicsInstrument], dict[str, tuple[type, dict[str, Any]]]] = {
    EpicsReactor: {"synthesize": _ACTION, "status_message": _STATUS},
    EpicsDiffractometer: {"acquire": _ACTION, "status_message": _STATUS},
    EpicsMicroscope: {
        "acquire": _ACTION,
        "image_data": (EpicsSignalRO, {}),
        "status_message": _STATUS,
    },
}


def _epics_twin_components(shape: type[Device]) -> dict[str, tuple[type, dict[str, Any]]]:
    """The EPICS signal class and arguments for each PV-backed component of ``shape``."""
    components: dict[str, tuple[type, dict[str, Any]]] = {}
    for name in shape.component_names:
        component = getattr(shape, name)
        if name in getattr(shape, "local_components", ()):
            continue
        kind = {"kind": component.kind}
        if issubclass(component.cls, LimitedSignal):
            components[name] = (
                EpicsLimitedSignal,
                {"limits": component.kwargs["limits"], "units": component.kwargs["units"], **kind},
            )
        elif issubclass(component.cls, MeasuredSignal):
            components[name] = (
                EpicsMeasuredSignal,
                {"units": component.kwargs.get("units", ""), **kind},
            )
        else:
            components[name] = (EpicsMeasuredSignal, {"string": True, **kind})
    return components


def pv_components(
    base: type[EpicsInstrument], condition_limits: ConditionLimits | None = None
) -> list[str]:
    """The component names of ``base`` that a ``pv_map`` may name, in declaration order."""
    shape = _shape(base, condition_limits)
    return [*_epics_twin_components(shape), *_EXTRA_COMPONENTS[base]]


def _shape(base: type[EpicsInstrument], condition_limits: ConditionLimits | None) -> type[Device]:
    if issubclass(base, Reactor):
        if condition_limits is None:
            raise ValueError("an EPICS reactor needs the materials system's condition limits")
        return reactor_class("EpicsReactorShape", condition_limits, base_class=base)
    return base


def epics_device_class(
    base: type[EpicsInstrument],
    device: str,
    pv_map: PVMap,
    *,
    timeouts: EpicsTimeouts,
    condition_limits: ConditionLimits | None = None,
) -> type[EpicsInstrument]:
    """An EPICS class of ``base``'s shape, every PV named by ``pv_map`` or by default.

    Parameters
    ----------
    base
        :class:`EpicsReactor`, :class:`EpicsDiffractometer` or :class:`EpicsMicroscope`.
    device
        The device's name, used in default PV names (``{device}:{component}``).
    pv_map
        Component -> PV suffix after the prefix, overriding the default names.
    timeouts
        Connection/read and action timeouts of every signal.
    condition_limits
        The reactor's conditions and their configured safe ranges (reactor only).
    """
    shape = _shape(base, condition_limits)
    specs = {**_epics_twin_components(shape), **_EXTRA_COMPONENTS[base]}
    unknown = sorted(set(pv_map) - set(specs))
    if unknown:
        raise ValueError(
            f"pv_map of {device} names unknown component(s) {unknown}; it has {list(specs)}"
        )
    signal_timeouts = {
        "connection_timeout": timeouts.connect_s,
        "timeout": timeouts.connect_s,
        "write_timeout": timeouts.action_s,
    }
    components = {
        name: Cpt(
            cls,
            pv_map.get(name, f"{device}:{name}"),
            **{"kind": "omitted", **kwargs, **signal_timeouts},
        )
        for name, (cls, kwargs) in specs.items()
    }
    cls = create_device_from_components(
        f"Epics{shape.__name__}", base_class=shape, docstring=base.__doc__, **components
    )
    cls.timeouts = timeouts
    return cls


def unconnected_pvs(signals: Iterable[Any], timeout_s: float) -> list[Any]:
    """The signals whose PVs do not connect within ``timeout_s`` (they search in parallel)."""
    deadline = time.monotonic() + timeout_s
    missing = []
    for signal in signals:
        try:
            signal.wait_for_connection(timeout=max(deadline - time.monotonic(), 0.01))
        except TimeoutError:
            missing.append(signal)
    return missing


#: The EPICS class of each device a campaign names, by device name.
EPICS_DEVICES: dict[str, type[EpicsInstrument]] = {
    "reactor": EpicsReactor,
    "xrd": EpicsDiffractometer,
    "microscope": EpicsMicroscope,
}
