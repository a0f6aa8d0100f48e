"""A beamline's own devices, found by the names a campaign file gives them and checked.

The devices are the beamline's objects, ophyd or ophyd-async, used as they are: a condition
is moved with ``bps.mv`` on its device, a role's detector is triggered and read, and its
data keys keep their names in the run (the start document's ``role_keys`` tells the analysis
which of them it reads). ophyd-async devices live on bluesky's event loop, so the loop is
started before the profile is imported and every RunEngine of the campaign runs on it.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import math
from dataclasses import dataclass, field
from typing import Any

from bluesky.protocols import Movable, Readable
from bluesky.run_engine import call_in_bluesky_event_loop, get_bluesky_event_loop

from sdl.campaign.beamline import BeamlineConfig
from sdl.plugins import PluginError, check_device, lacking


class BeamlineError(PluginError):
    """A beamline device that cannot be found or cannot serve what the campaign asks of it."""


def bluesky_loop() -> asyncio.AbstractEventLoop:
    """bluesky's event loop, running (started here if no RunEngine started it yet)."""
    loop = get_bluesky_event_loop()
    if loop is None or not loop.is_running():
        from bluesky import RunEngine

        # A RunEngine starts the loop on its thread, as ophyd-async's init_devices needs.
        RunEngine({}, loop=loop, context_managers=[])
        loop = get_bluesky_event_loop()
    return loop


def awaited(value: Any) -> Any:
    """``value``, or what it resolves to on bluesky's loop (ophyd-async's methods are async)."""
    if inspect.isawaitable(value):
        return call_in_bluesky_event_loop(value)
    return value


def load_device(reference: str, profile: str | None) -> Any:
    """The object ``reference`` names: ``module:attr.sub`` or, in ``profile``, ``attr.sub``."""
    module_name, _, path = reference.rpartition(":")
    module_name = module_name or profile or ""
    if not module_name:
        raise BeamlineError(
            f"device {reference!r}: name its module ('package.module:{reference}') or set "
            "devices.beamline.profile"
        )
    bluesky_loop()  # the profile may make ophyd-async devices at import
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as error:  # the profile's own import error, whatever it is
        raise BeamlineError(
            f"device {reference!r}: module {module_name!r} could not be imported: "
            f"{type(error).__name__}: {error}"
        ) from error
    for part in path.split("."):
        if not hasattr(target, part):
            raise BeamlineError(f"device {reference!r}: {module_name} has no {path!r}")
        target = getattr(target, part)
    return target


def mover_limits(device: Any) -> tuple[float, float, str]:
    """The soft limits and units a movable device reports (infinite where it sets none,
    limits of 0 and 0 as EPICS writes "none").

    ophyd positioners (``EpicsMotor``, ``PVPositioner``) give ``limits`` and ``egu``;
    ophyd-async motors their ``low_limit_travel``/``high_limit_travel``/``motor_egu``
    signals; anything else the control limits and units of its first data key.
    """
    if hasattr(device, "limits") and hasattr(device, "egu"):
        low, high = (float(v) for v in device.limits)
        units = str(device.egu)
    elif all(hasattr(device, a) for a in ("low_limit_travel", "high_limit_travel", "motor_egu")):
        low, high, units = (
            awaited(getattr(device, a).get_value())
            for a in ("low_limit_travel", "high_limit_travel", "motor_egu")
        )
    else:
        key = next(iter(awaited(device.describe()).values()))
        control = key.get("limits", {}).get("control", {})
        low = float(key.get("lower_ctrl_limit", control.get("low", 0.0)) or 0.0)
        high = float(key.get("upper_ctrl_limit", control.get("high", 0.0)) or 0.0)
        units = str(key.get("units", ""))
    low, high = float(low), float(high)
    return (low, high, units.strip()) if low < high else (-math.inf, math.inf, units.strip())


@dataclass
class BeamlineDevices:
    """The beamline's devices a campaign uses, by what they do in it."""

    movers: dict[str, Any] = field(default_factory=dict)
    detectors: dict[str, Any] = field(default_factory=dict)
    baseline: list[Any] = field(default_factory=list)

    @property
    def uses_loop(self) -> bool:
        """Whether the campaign's RunEngines must run on bluesky's loop, where these live."""
        return bool(self.movers or self.detectors or self.baseline)

    def check_condition(self, name: str, value: float) -> None:
        """Raise ``ValueError`` if ``value`` is outside the mover's limits as it reports
        them now (a beamline may narrow them between experiments)."""
        low, high, units = mover_limits(self.movers[name])
        if not low <= value <= high:
            raise ValueError(
                f"{name}={value:g} {units} is outside {self.movers[name].name}'s limits "
                f"[{low:g}, {high:g}] {units}; nothing was sent"
            )


def beamline_devices(config: BeamlineConfig) -> BeamlineDevices:
    """Find and check every device ``config`` names; :class:`BeamlineError` says what a
    device lacks (a mover must be bluesky-Movable and Readable, a detector Triggerable and
    Readable, a baseline device Readable)."""
    devices = BeamlineDevices()
    for condition, reference in config.conditions.items():
        mover = load_device(reference, config.profile)
        _require(mover, f"condition {condition!r}: {reference}", Movable, Readable)
        devices.movers[condition] = mover
    for role, detector in config.detectors.items():
        device = load_device(detector.device, config.profile)
        check_device(device, f"{role} ({detector.device})")
        devices.detectors[role] = device
    for reference in config.baseline:
        device = load_device(reference, config.profile)
        _require(device, f"baseline {reference}", Readable)
        devices.baseline.append(device)
    return devices


def _require(device: Any, what: str, *protocols: type) -> None:
    missing = lacking(device, *protocols)
    if missing:
        raise BeamlineError(
            f"{what}: {type(device).__name__} is not bluesky-{' or '.join(missing)}"
        )
