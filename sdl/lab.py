"""Builds the instruments a campaign asks for and checks its search space against them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devices.diffractometer import SimulatedDiffractometer
from devices.microscope import SimulatedMicroscope
from devices.reactor import Reactor, reactor_class
from devices.sim_lab import SimulatedLab
from sdl.config import CampaignConfig, CampaignConfigError
from sdl.systems import get_system
from simulators.clock import SimClock


@dataclass
class Instruments:
    """The reactor and the detectors of one campaign, plus the simulated world if any."""

    reactor: Reactor
    detectors: list[Any]
    lab: SimulatedLab | None = None

    @property
    def instrument_hours(self) -> float | None:
        """Instrument time spent so far on the simulated clock (None on real hardware)."""
        return None if self.lab is None else self.lab.clock.elapsed_s / 3600.0


def build_simulated_instruments(config: CampaignConfig, raw_dir: Path) -> Instruments:
    """Simulated reactor and detectors for ``config``, sharing one clock, seed and stage."""
    system = get_system(config.devices.system)
    lab = SimulatedLab(SimClock(config.devices.speedup), seed=config.seed)
    reactor_cls = reactor_class(f"{system.name.title().replace('_', '')}Reactor",
                                system.condition_limits)
    reactor = reactor_cls(name="reactor", lab=lab, model=system.make_model())
    detectors: list[Any] = []
    if "xrd" in config.instruments:
        xrd = SimulatedDiffractometer(name="xrd", lab=lab)
        xrd.exposure_s.put(config.devices.xrd_exposure_s)
        detectors.append(xrd)
    if "microscope" in config.instruments:
        microscope = SimulatedMicroscope(name="microscope", lab=lab, write_dir=raw_dir)
        microscope.target_grain_px.put(config.devices.microscope_target_grain_px)
        detectors.append(microscope)
    instruments = Instruments(reactor=reactor, detectors=detectors, lab=lab)
    check_search_space(config, reactor)
    return instruments


def check_search_space(config: CampaignConfig, reactor: Reactor) -> None:
    """Every searched condition must exist on the reactor, in its units, inside its safe limits."""
    device_limits = reactor.condition_limits()
    problems = []
    for name, parameter in config.search_space.items():
        if name not in device_limits:
            problems.append(
                f"  search_space.{name}: the reactor has no such condition; "
                f"it has {sorted(device_limits)}"
            )
            continue
        low, high, unit = device_limits[name]
        if parameter.unit != unit:
            problems.append(f"  search_space.{name}.unit: the reactor works in {unit!r}, "
                            f"got {parameter.unit!r}")
        if parameter.low < low or parameter.high > high:
            problems.append(
                f"  search_space.{name}: [{parameter.low:g}, {parameter.high:g}] {parameter.unit} "
                f"leaves the reactor's safe range [{low:g}, {high:g}] {unit}"
            )
    for name, value in config.fixed_conditions.items():
        if name not in device_limits:
            problems.append(f"  fixed_conditions.{name}: the reactor has no such condition; "
                            f"it has {sorted(device_limits)}")
        elif not device_limits[name][0] <= value <= device_limits[name][1]:
            low, high, unit = device_limits[name]
            problems.append(f"  fixed_conditions.{name}: {value:g} {unit} is outside the "
                            f"reactor's safe range [{low:g}, {high:g}] {unit}")
    missing = sorted(set(device_limits) - set(config.search_space) - set(config.fixed_conditions))
    if missing:
        problems.append(
            f"  search_space: conditions {missing} are neither searched nor in fixed_conditions"
        )
    if problems:
        raise CampaignConfigError(
            "the search space does not fit the instruments:\n" + "\n".join(problems)
        )
