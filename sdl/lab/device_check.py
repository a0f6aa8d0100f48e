"""``sdl check-devices``: a dry run over a campaign's PVs that writes nothing.

Each PV is listed with its connection state, value, units and (for setpoints) control
limits, so a person sees what the IOC serves before anything moves. Where a PV disagrees
with what the device or the campaign expects (missing, other units, limits other than the
materials system's safe range, an action without write access, a frame of the wrong size),
a problem names the PV and the fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from devices.epics import EpicsInstrument, EpicsLimitedSignal, limits_text, unconnected_pvs
from sdl.campaign.config import CampaignConfig, CampaignConfigError
from sdl.lab.beamline import BeamlineDevices, BeamlineError, awaited, beamline_devices, mover_limits
from sdl.lab.instruments import (
    Instruments,
    check_search_space,
    detector_settings,
    epics_devices,
    pv_label,
)


@dataclass
class DeviceCheck:
    """What a dry run over the PVs found: one line per PV and problems to fix before motion."""

    pvs: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_devices(config: CampaignConfig, raw_dir: Path) -> DeviceCheck:
    """Connect to and read every PV of the campaign's EPICS devices; nothing is written."""
    check = DeviceCheck()
    reactor, detectors = epics_devices(config, raw_dir)
    signals = [s for device in (reactor, *detectors) for s in device.epics_signals()]
    missing = set(unconnected_pvs(signals, config.devices.epics.timeout_s))
    for signal in signals:
        label = pv_label(signal)
        if signal in missing:
            check.pvs.append(f"not connected  {label}")
            check.problems.append(
                f"missing: {label} did not connect; fix the name or map it with "
                f"devices.epics.pv_map.{signal.parent.name}.{signal.attr_name}"
            )
            continue
        try:
            value = signal.get()
        except Exception as error:
            check.pvs.append(f"connected      {label}: unreadable")
            check.problems.append(f"unreadable: {label}: {error}")
            continue
        check.pvs.append(f"connected      {label} = {_described(signal, value)}")
        check.problems += _signal_problems(signal, label, value)
    instruments = Instruments(reactor=reactor, detectors=detectors)
    if config.devices.beamline is not None:
        try:
            instruments.beamline = beamline_devices(config.devices.beamline)
        except BeamlineError as error:
            check.problems.append(f"beamline: {error}")
    check.pvs += _beamline_lines(instruments.beamline)
    if not missing & set(reactor.epics_signals()):
        try:
            check_search_space(config, instruments)
        except (CampaignConfigError, BeamlineError) as error:
            check.problems.append(str(error))
    settings = detector_settings(config)
    for detector in detectors:
        if detector.name not in settings:  # a plug-in's device: its settings are its own
            continue
        component, value = settings[detector.name]
        signal = getattr(detector, component)
        if signal not in missing:
            try:
                signal.check_value(value)
            except ValueError as error:
                check.problems.append(f"devices setting: {error}")
    return check


def _beamline_lines(beamline: BeamlineDevices) -> list[str]:
    """One line per beamline device: what it serves, where a mover is and its limits."""
    lines = []
    for condition, mover in beamline.movers.items():
        low, high, units = mover_limits(mover)
        position = next(iter(awaited(mover.read()).values()))["value"]
        lines.append(
            f"beamline       {mover.name} sets {condition}: at {position:g} {units or '(no units)'}"
            f", limits {limits_text((low, high) if math.isfinite(low) else None)}"
        )
    lines += [
        f"beamline       {device.name} serves {role} ({type(device).__name__})"
        for role, device in beamline.detectors.items()
    ]
    lines += [f"beamline       {device.name} read as baseline" for device in beamline.baseline]
    return lines


def _described(signal: Any, value: Any) -> str:
    """The value with the PV's own units and, for a setpoint, its control limits."""
    array = np.asarray(value)
    text = f"array of {array.size}" if array.ndim else repr(value)
    if array.dtype.kind in "iuf":
        text += f" {_pv_units(signal) or '(no units)'}"
    if isinstance(signal, EpicsLimitedSignal):
        text += f", control limits {limits_text(signal.pv_limits())}"
    return text


def _pv_units(signal: Any) -> str:
    return str(signal.metadata.get("units") or "")


def _signal_problems(signal: Any, label: str, value: Any) -> list[str]:
    """Units, limits, write access and waveform length of one connected PV."""
    problems = []
    pv_units = _pv_units(signal)
    declared = getattr(signal, "declared_units", "")
    if declared and pv_units != declared:
        problems.append(
            f"units: {label} reports {pv_units or 'no units'!r}; the device expects {declared!r}"
        )
    if isinstance(signal, EpicsLimitedSignal):
        pv_limits, safe = signal.pv_limits(), signal.configured_limits
        if pv_limits is None or not all(map(math.isclose, pv_limits, safe)):
            problems.append(
                f"limits: {label} control limits (DRVL/DRVH) {limits_text(pv_limits)} differ "
                f"from the device's safe range {limits_text(safe)} {declared}; set them to match"
            )
    if (
        isinstance(signal.parent, EpicsInstrument)
        and (signal.attr_name == signal.parent.action_component)
        and not signal.write_access
    ):
        problems.append(f"access: {label} is not writable; the action cannot be started")
    if signal.attr_name == "image_data":
        expected = int(np.prod(signal.parent.frame_shape))
        if np.asarray(value).size != expected:
            problems.append(
                f"shape: {label} holds {np.asarray(value).size} values; a "
                f"{signal.parent.frame_shape} frame needs {expected}"
            )
    return problems
