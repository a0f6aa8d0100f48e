"""The simulated materials systems a campaign can run on, each named once.

Two systems of different shape keep the framework from being tuned to one landscape:
``tio2_solgel`` (process knobs, kinetics, an amorphous phase) and ``fegapd`` (a ternary
composition spread on an equilibrium phase diagram, where phase mapping is the task).
docs/systems.md says how to add another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from devices.reactor import ConditionLimits, JointLimit, SynthesisModel
from simulators.fegapd import FEGAPD_CONDITION_LIMITS, FeGaPdSpread
from simulators.structures import FEGAPD_PHASES
from simulators.tio2 import TIO2_CONDITION_LIMITS, TiO2SolGel


@dataclass(frozen=True)
class MaterialsSystem:
    """A synthesis simulator with the crystalline phases its samples can contain.

    ``joint_limit`` is a limit coupling several conditions (a composition that must stay in
    its triangle); the reactor refuses conditions that break it, as it refuses one setpoint
    outside its range.
    """

    name: str
    description: str
    make_model: Callable[[], SynthesisModel]
    condition_limits: ConditionLimits
    phases: tuple[str, ...]
    joint_limit: JointLimit | None = None


SYSTEMS: dict[str, MaterialsSystem] = {
    "tio2_solgel": MaterialsSystem(
        name="tio2_solgel",
        description="TiO2 by sol-gel and calcination: amorphous -> anatase/brookite -> rutile",
        make_model=TiO2SolGel,
        condition_limits=TIO2_CONDITION_LIMITS,
        phases=("anatase", "brookite", "rutile"),
    ),
    "fegapd": MaterialsSystem(
        name="fegapd",
        description="Fe-Ga-Pd-like composition spread: x_ga, x_pd (Fe the balance) -> "
        "equilibrium phase mixture, lattice shifts and magnetisation",
        make_model=FeGaPdSpread,
        condition_limits=FEGAPD_CONDITION_LIMITS,
        phases=FEGAPD_PHASES,
        joint_limit=FeGaPdSpread.check_conditions,
    ),
}


def get_system(name: str) -> MaterialsSystem:
    """The materials system called ``name``; a clear error lists the known ones."""
    try:
        return SYSTEMS[name]
    except KeyError:
        known = sorted(SYSTEMS)
        raise ValueError(f"unknown materials system {name!r}; choose one of {known}") from None
