"""Builds the instruments a campaign asks for and checks its search space against them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from devices.diffractometer import SimulatedDiffractometer
from devices.epics import (
    EPICS_DEVICES,
    EpicsError,
    EpicsInstrument,
    EpicsLimitedSignal,
    EpicsTimeouts,
    epics_device_class,
    unconnected_pvs,
    use_caproto,
)
from devices.magnetometer import SimulatedMagnetometer
from devices.microscope import SimulatedMicroscope
from devices.reactor import Reactor, reactor_class
from devices.sim_lab import SimulatedLab
from sdl.campaign.config import CampaignConfig, CampaignConfigError, condition_problems
from sdl.campaign.systems import get_system
from simulators.clock import SimClock
from simulators.faults import FaultInjector, FaultSpec


@dataclass
class Instruments:
    """The reactor and the detectors of one campaign (and the simulated lab's faults)."""

    reactor: Reactor
    detectors: list[Any]
    faults: FaultInjector | None = None


def build_simulated_instruments(config: CampaignConfig, raw_dir: Path) -> Instruments:
    """Simulated reactor and detectors for ``config``, sharing one clock, seed and stage."""
    system = get_system(config.devices.system)
    faults = FaultInjector(
        {
            kind: FaultSpec(spec.rate, tuple(spec.at), tuple(spec.devices), spec.step)
            for kind, spec in config.devices.faults.items()
        },
        seed=config.seed,
    )
    lab = SimulatedLab(
        SimClock(config.devices.speedup),
        seed=config.seed,
        faults=faults,
        action_timeout_s=config.devices.action_timeout_s,
    )
    reactor_cls = reactor_class(
        f"{system.name.title().replace('_', '')}Reactor",
        system.condition_limits,
        joint_limit=system.joint_limit,
    )
    reactor = reactor_cls(name="reactor", lab=lab, model=system.make_model())
    detectors: list[Any] = []
    if "xrd" in config.instruments:
        detectors.append(SimulatedDiffractometer(name="xrd", lab=lab))
    if "microscope" in config.instruments:
        detectors.append(SimulatedMicroscope(name="microscope", lab=lab, write_dir=raw_dir))
    if "magnetometer" in config.instruments:
        detectors.append(SimulatedMagnetometer(name="magnetometer", lab=lab))
    apply_detector_settings(config, detectors)
    instruments = Instruments(reactor=reactor, detectors=detectors, faults=faults)
    check_search_space(config, reactor)
    return instruments


def _detector_settings(config: CampaignConfig) -> dict[str, tuple[str, float]]:
    """Detector name -> (component, value) of the settings a campaign file fixes."""
    return {
        "xrd": ("exposure_s", config.devices.xrd_exposure_s),
        "microscope": ("target_grain_px", config.devices.microscope_target_grain_px),
    }


def apply_detector_settings(
    config: CampaignConfig, detectors: list[Any], timeout_s: float | None = None
) -> None:
    """Set each detector's configured setting (exposure, magnification), within its limits.

    Detectors without a setting in the campaign file (the magnetometer) keep their own.
    """
    settings = _detector_settings(config)
    for detector in detectors:
        if detector.name not in settings:
            continue
        component, value = settings[detector.name]
        getattr(detector, component).set(value).wait(timeout_s)


def _epics_devices(config: CampaignConfig, raw_dir: Path) -> tuple[Any, list[Any]]:
    """The EPICS reactor and detectors that ``config`` names, searching for their PVs."""
    use_caproto()
    epics = config.devices.epics
    timeouts = EpicsTimeouts(connect_s=epics.timeout_s, action_s=epics.action_timeout_s)
    limits = get_system(config.devices.system).condition_limits

    def make(device: str, **kwargs: Any) -> Any:
        pv_names = {str(name): names for name, names in epics.pv_map.items()}.get(device, {})
        cls = epics_device_class(
            EPICS_DEVICES[device], device, pv_names, timeouts=timeouts, condition_limits=limits
        )
        return cls(epics.prefix, name=device, **kwargs)

    reactor = make("reactor")
    detectors = [
        make(name, **({"write_dir": raw_dir} if name == "microscope" else {}))
        for name in config.instruments
    ]
    return reactor, detectors


def _pv_label(signal: Any) -> str:
    return f"{signal.pvname} ({signal.parent.name}.{signal.attr_name})"


def build_epics_instruments(config: CampaignConfig, raw_dir: Path) -> Instruments:
    """EPICS reactor and detectors for ``config``, connected, with the settings applied.

    Raises
    ------
    EpicsError
        Listing every PV that did not connect within ``devices.epics.timeout_s``.
    """
    reactor, detectors = _epics_devices(config, raw_dir)
    signals = [s for device in (reactor, *detectors) for s in device.epics_signals()]
    missing = unconnected_pvs(signals, config.devices.epics.timeout_s)
    if missing:
        raise EpicsError(
            "PVs not connected (run `sdl check-devices` for a full report): "
            + ", ".join(_pv_label(s) for s in missing)
        )
    apply_detector_settings(config, detectors, config.devices.epics.action_timeout_s)
    check_search_space(config, reactor)
    return Instruments(reactor=reactor, detectors=detectors)


#: The instrument builder of each ``devices.backend``.
BACKENDS: dict[str, Callable[[CampaignConfig, Path], Instruments]] = {
    "sim": build_simulated_instruments,
    "epics": build_epics_instruments,
}


def build_instruments(config: CampaignConfig, raw_dir: Path) -> Instruments:
    """The campaign's instruments on the backend its ``devices.backend`` names."""
    return BACKENDS[config.devices.backend](config, raw_dir)


@dataclass
class DeviceCheck:
    """What a dry run over the PVs found: lines that passed and problems to fix before motion."""

    passed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_devices(config: CampaignConfig, raw_dir: Path) -> DeviceCheck:
    """Connect to and read every PV of the campaign's EPICS devices; nothing is written.

    Reports PVs that are missing (with the ``pv_map`` entry that would rename them), unit
    mismatches, control limits that leave no room for the search space or the detector
    settings, action PVs without write access and waveforms of the wrong length.
    """
    check = DeviceCheck()
    reactor, detectors = _epics_devices(config, raw_dir)
    devices = [reactor, *detectors]
    signals = [s for device in devices for s in device.epics_signals()]
    missing = set(unconnected_pvs(signals, config.devices.epics.timeout_s))
    for signal in signals:
        label = _pv_label(signal)
        if signal in missing:
            check.problems.append(
                f"missing: {label} did not connect; fix the name or map it with "
                f"devices.epics.pv_map.{signal.parent.name}.{signal.attr_name}"
            )
            continue
        try:
            value = signal.get()
        except Exception as error:
            check.problems.append(f"unreadable: {label}: {error}")
            continue
        check.passed.append(f"ok: {label} = {_summary(value)}")
        check.problems += _signal_problems(signal, label, value)
    if not missing & set(reactor.epics_signals()):
        try:
            check_search_space(config, reactor)
        except CampaignConfigError as error:
            check.problems.append(str(error))
    settings = _detector_settings(config)
    for detector in detectors:
        component, value = settings[detector.name]
        signal = getattr(detector, component)
        if signal not in missing:
            try:
                signal.check_value(value)
            except ValueError as error:
                check.problems.append(f"devices setting: {error}")
    return check


def _summary(value: Any) -> str:
    array = np.asarray(value)
    return f"array of {array.size}" if array.ndim else repr(value)


def _signal_problems(signal: Any, label: str, value: Any) -> list[str]:
    """Units, limits, write access and waveform length of one connected PV."""
    problems = []
    pv_units = signal.metadata.get("units") or ""
    declared = getattr(signal, "declared_units", "")
    if declared and pv_units and pv_units != declared:
        problems.append(f"units: {label} reports {pv_units!r}; the device expects {declared!r}")
    if isinstance(signal, EpicsLimitedSignal):
        low, high = signal.limits
        if not low < high:
            problems.append(
                f"limits: {label} leaves no safe range: configured "
                f"{list(signal.configured_limits)}, PV {signal.pv_limits()}"
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


def check_search_space(config: CampaignConfig, reactor: Reactor) -> None:
    """Every searched condition must exist on the reactor, in its units, inside the safe limits
    the device reports (an EPICS reactor's PV limits may be narrower than the configured ones,
    which the campaign file was checked against)."""
    problems = condition_problems(config, reactor.condition_limits())
    if problems:
        raise CampaignConfigError(
            "the search space does not fit the instruments:\n"
            + "\n".join(f"  {'.'.join(map(str, loc))}: {message}" for loc, message, _ in problems)
        )
