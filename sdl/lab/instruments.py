"""Builds the instruments a campaign asks for and checks its search space against them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from devices.diffractometer import SimulatedDiffractometer
from devices.epics import (
    EPICS_DEVICES,
    EpicsError,
    EpicsTimeouts,
    epics_device_class,
    unconnected_pvs,
    use_caproto,
)
from devices.magnetometer import SimulatedMagnetometer
from devices.microscope import SimulatedMicroscope
from devices.reactor import Reactor, reactor_class
from devices.sim_lab import SimulatedLab
from plans.experiment import synthesize_and_measure
from sdl.analysis.features import BUILTIN_INSTRUMENTS, plugin_instruments
from sdl.campaign.config import CampaignConfig, CampaignConfigError, condition_problems
from sdl.campaign.systems import get_system
from sdl.lab.beamline import BeamlineDevices, beamline_devices, mover_limits
from sdl.plugins import InstrumentPlugin, check_device
from simulators.clock import SimClock
from simulators.faults import FaultInjector, FaultSpec


@dataclass
class Instruments:
    """The reactor and the detectors of one campaign (and the simulated lab's faults), with
    the beamline's own devices where the campaign file names some."""

    reactor: Reactor
    detectors: list[Any]
    faults: FaultInjector | None = None
    beamline: BeamlineDevices = field(default_factory=BeamlineDevices)
    #: The beamline's device data keys -> the keys the analysis reads (start document).
    role_keys: dict[str, str] = field(default_factory=dict)

    def condition_limits(self) -> dict[str, tuple[float, float, str]]:
        """Safe range and unit of every condition, as the devices that set them report."""
        movers = {name: mover_limits(mover) for name, mover in self.beamline.movers.items()}
        return {**self.reactor.condition_limits(), **movers}

    def check_conditions(self, conditions: Mapping[str, float]) -> None:
        """Raise ``ValueError`` (``LimitError``) if any device must not be sent these."""
        for name, value in conditions.items():
            if name in self.beamline.movers:
                self.beamline.check_condition(name, value)
        self.reactor.check_conditions(conditions)

    def experiment(self, conditions: Mapping[str, float], md: Mapping[str, Any]) -> Any:
        """The plan of one experiment at ``conditions`` on these instruments."""
        return synthesize_and_measure(
            self.reactor,
            self.detectors,
            conditions,
            md={**md, **({"role_keys": self.role_keys} if self.role_keys else {})},
            movers=self.beamline.movers,
            baseline=self.beamline.baseline,
        )


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
    ours = our_instruments(config)
    detectors: list[Any] = []
    if "xrd" in ours:
        detectors.append(SimulatedDiffractometer(name="xrd", lab=lab))
    if "microscope" in ours:
        detectors.append(SimulatedMicroscope(name="microscope", lab=lab, write_dir=raw_dir))
    if "magnetometer" in ours:
        detectors.append(SimulatedMagnetometer(name="magnetometer", lab=lab))
    for plugin in plugin_instruments(config.instruments):
        detectors.append(plugin_device(plugin, plugin.simulated, lab=lab, raw_dir=raw_dir))
    apply_detector_settings(config, detectors)
    return with_beamline(config, Instruments(reactor=reactor, detectors=detectors, faults=faults))


def our_instruments(config: CampaignConfig) -> list[str]:
    """The campaign's built-in instruments that no beamline device serves."""
    beamline = config.devices.beamline
    served = beamline.detectors if beamline is not None else {}
    return [
        name for name in config.instruments if name in BUILTIN_INSTRUMENTS and name not in served
    ]


def with_beamline(config: CampaignConfig, instruments: Instruments) -> Instruments:
    """``instruments`` with the beamline's devices the campaign names, the search space
    checked against every device that sets a condition."""
    if config.devices.beamline is not None:
        beamline = beamline_devices(config.devices.beamline)
        instruments.beamline = beamline
        instruments.detectors += beamline.detectors.values()
        instruments.role_keys = config.devices.beamline.role_keys()
    check_search_space(config, instruments)
    return instruments


def detector_settings(config: CampaignConfig) -> dict[str, tuple[str, float]]:
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
    settings = detector_settings(config)
    for detector in detectors:
        if detector.name not in settings:
            continue
        component, value = settings[detector.name]
        getattr(detector, component).set(value).wait(timeout_s)


def epics_devices(config: CampaignConfig, raw_dir: Path) -> tuple[Any, list[Any]]:
    """The EPICS reactor and detectors that ``config`` names, searching for their PVs."""
    use_caproto()
    epics = config.devices.epics
    timeouts = EpicsTimeouts(connect_s=epics.timeout_s, action_s=epics.action_timeout_s)
    beamline = config.devices.beamline
    moved = beamline.conditions if beamline is not None else {}
    limits = {
        name: limits
        for name, limits in get_system(config.devices.system).condition_limits.items()
        if name not in moved
    }

    def make(device: str, **kwargs: Any) -> Any:
        pv_names = {str(name): names for name, names in epics.pv_map.items()}.get(device, {})
        cls = epics_device_class(
            EPICS_DEVICES[device], device, pv_names, timeouts=timeouts, condition_limits=limits
        )
        return cls(epics.prefix, name=device, **kwargs)

    reactor = make("reactor")
    detectors = [
        make(name, **({"write_dir": raw_dir} if name == "microscope" else {}))
        for name in our_instruments(config)
    ]
    for plugin in plugin_instruments(
        config.instruments
    ):  # validation made sure each has an EPICS device
        make_epics = cast(Callable[..., Any], plugin.epics)
        detectors.append(plugin_device(plugin, make_epics, prefix=epics.prefix, raw_dir=raw_dir))
    return reactor, detectors


def plugin_device(plugin: InstrumentPlugin, make: Callable[..., Any], **kwargs: Any) -> Any:
    """A plug-in's device, refused unless bluesky can trigger and read it."""
    device = make(name=plugin.name, **kwargs)
    check_device(device, plugin.name)
    return device


def pv_label(signal: Any) -> str:
    """A PV's name and the component it serves, as reports name it."""
    return f"{signal.pvname} ({signal.parent.name}.{signal.attr_name})"


def build_epics_instruments(config: CampaignConfig, raw_dir: Path) -> Instruments:
    """EPICS reactor and detectors for ``config``, connected, with the settings applied.

    Raises
    ------
    EpicsError
        Listing every PV that did not connect within ``devices.epics.timeout_s``.
    """
    reactor, detectors = epics_devices(config, raw_dir)
    signals = [
        s
        for device in (reactor, *detectors)
        for s in (device.epics_signals() if hasattr(device, "epics_signals") else [])
    ]
    missing = unconnected_pvs(signals, config.devices.epics.timeout_s)
    if missing:
        raise EpicsError(
            "PVs not connected (run `sdl check-devices` for a full report): "
            + ", ".join(pv_label(s) for s in missing)
        )
    apply_detector_settings(config, detectors, config.devices.epics.action_timeout_s)
    return with_beamline(config, Instruments(reactor=reactor, detectors=detectors))


#: The instrument builder of each ``devices.backend``.
BACKENDS: dict[str, Callable[[CampaignConfig, Path], Instruments]] = {
    "sim": build_simulated_instruments,
    "epics": build_epics_instruments,
}


def build_instruments(config: CampaignConfig, raw_dir: Path) -> Instruments:
    """The campaign's instruments on the backend its ``devices.backend`` names."""
    return BACKENDS[config.devices.backend](config, raw_dir)


def check_search_space(config: CampaignConfig, instruments: Instruments) -> None:
    """Every searched condition must exist on the devices, in their units, inside the safe
    limits they report (an EPICS reactor's PV limits or a beamline motor's soft limits may be
    narrower than the configured ones, which the campaign file was checked against)."""
    problems = condition_problems(config, instruments.condition_limits())
    if problems:
        raise CampaignConfigError(
            "the search space does not fit the instruments:\n"
            + "\n".join(f"  {'.'.join(map(str, loc))}: {message}" for loc, message, _ in problems)
        )
