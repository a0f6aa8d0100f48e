"""The simulated materials systems a campaign can run on, each named once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from devices.reactor import ConditionLimits, SynthesisModel
from simulators.tio2 import TIO2_CONDITION_LIMITS, TiO2SolGel


@dataclass(frozen=True)
class MaterialsSystem:
    """A synthesis simulator with the crystalline phases its samples can contain."""

    name: str
    description: str
    make_model: Callable[[], SynthesisModel]
    condition_limits: ConditionLimits
    phases: tuple[str, ...]


SYSTEMS: dict[str, MaterialsSystem] = {
    "tio2_solgel": MaterialsSystem(
        name="tio2_solgel",
        description="TiO2 by sol-gel and calcination: amorphous -> anatase/brookite -> rutile",
        make_model=TiO2SolGel,
        condition_limits=TIO2_CONDITION_LIMITS,
        phases=("anatase", "brookite", "rutile"),
    ),
}


def get_system(name: str) -> MaterialsSystem:
    """The materials system called ``name``; a clear error lists the known ones."""
    try:
        return SYSTEMS[name]
    except KeyError:
        known = sorted(SYSTEMS)
        raise ValueError(f"unknown materials system {name!r}; choose one of {known}") from None
