"""The simulated materials systems a campaign can run on, each named once.

Two systems of different shape keep the framework from being tuned to one landscape:
``tio2_solgel`` (process knobs, kinetics, an amorphous phase) and ``fegapd`` (a ternary
composition spread on an equilibrium phase diagram, where phase mapping is the task).
docs/systems.md says how to add another.

A system is light data: its limits and phase names are what a campaign file is checked
against, and its simulator is imported only when a campaign builds it (pymatgen and scipy
load in seconds).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from physics.phases import FEGAPD_PHASES, TIO2_POLYMORPHS
from sdl.plugins import SYSTEMS_GROUP, PluginError, load_plugin, registered
from simulators.fegapd_limits import FEGAPD_CONDITION_LIMITS, composition_from_conditions
from simulators.tio2 import TIO2_CONDITION_LIMITS

if TYPE_CHECKING:
    from devices.reactor import ConditionLimits, JointLimit, SynthesisModel


@dataclass(frozen=True)
class MaterialsSystem:
    """A synthesis simulator with the crystalline phases its samples can contain.

    ``model`` is the simulator's class as ``"module:Class"``, imported by :meth:`make_model`.
    ``joint_limit`` is a limit coupling several conditions (a composition that must stay in
    its triangle); the reactor refuses conditions that break it, as it refuses one setpoint
    outside its range.
    """

    name: str
    description: str
    model: str
    condition_limits: ConditionLimits
    phases: tuple[str, ...]
    joint_limit: JointLimit | None = None

    def make_model(self) -> SynthesisModel:
        """A new simulator of this system; ``PluginError`` if it cannot synthesise."""
        module, _, class_name = self.model.partition(":")
        model: SynthesisModel = getattr(importlib.import_module(module), class_name)()
        missing = [
            name
            for name in ("synthesize", "duration_s")
            if not callable(getattr(model, name, None))
        ]
        if missing:
            raise PluginError(
                f"materials system {self.name!r}: its simulator {self.model} has no {missing} "
                "(a simulator needs synthesize(conditions, rng, sample_id) and "
                "duration_s(conditions))"
            )
        return model


SYSTEMS: dict[str, MaterialsSystem] = {
    "tio2_solgel": MaterialsSystem(
        name="tio2_solgel",
        description="TiO2 by sol-gel and calcination: amorphous -> anatase/brookite -> rutile",
        model="simulators.tio2:TiO2SolGel",
        condition_limits=TIO2_CONDITION_LIMITS,
        phases=TIO2_POLYMORPHS,
    ),
    "fegapd": MaterialsSystem(
        name="fegapd",
        description="Fe-Ga-Pd-like composition spread: x_ga, x_pd (Fe the balance) -> "
        "equilibrium phase mixture, lattice shifts and magnetisation",
        model="simulators.fegapd:FeGaPdSpread",
        condition_limits=FEGAPD_CONDITION_LIMITS,
        phases=FEGAPD_PHASES,
        joint_limit=composition_from_conditions,
    ),
}


def get_system(name: str) -> MaterialsSystem:
    """The materials system called ``name``: ours, or a plug-in registered under that name or
    at that import path (:mod:`sdl.plugins`); a clear error lists the known ones."""
    if name in SYSTEMS:
        return SYSTEMS[name]
    plugin = load_plugin(SYSTEMS_GROUP, name)
    if plugin is None:
        known = sorted({*SYSTEMS, *registered(SYSTEMS_GROUP)})
        raise ValueError(
            f"unknown materials system {name!r}; choose one of {known}, or give a plug-in's "
            "import path (package.module:SYSTEM)"
        )
    if not isinstance(plugin, MaterialsSystem):
        raise PluginError(
            f"materials system plug-in {name!r} is a {type(plugin).__name__}, not an "
            "sdl.campaign.systems.MaterialsSystem (name, description, model, condition_limits, "
            "phases)"
        )
    return plugin
