"""Plug-ins: materials systems, instruments (with their analysis) and agents added from
outside sdl.

A campaign file names a plug-in by the name a package registers it under, a Python entry
point (``[project.entry-points."sdl.systems"]`` or ``"sdl.instruments"`` in its
``pyproject.toml``, read with :mod:`importlib.metadata`), or by its import path
(``"my_lab.uvvis:UVVIS"``). docs/plugins.md walks through ``examples/plugin_example``.

* A materials system is a :class:`~sdl.campaign.systems.MaterialsSystem`: its conditions'
  limits and the simulator that makes a sample from them (``synthesize``, ``duration_s``).
* An instrument is an :class:`InstrumentPlugin`: the device (anything bluesky can trigger
  and read), the features its analysis step turns the device's readings into, and that step.
* An agent is a factory: called with the campaign's ``parameters`` (each a mapping of
  ``name``, ``low``, ``high``, ``unit``, ``log_scale``), ``objectives`` (``name``,
  ``direction``), ``seed`` and the campaign file's ``agent.options``, it returns an object with
  bluesky-adaptive's ``Optimizer`` surface (``suggest``, ``ingest``, ``get_best_points``),
  which :class:`agents.external.OptimizerAgent` runs.

A plug-in that does not have this shape is refused when the campaign file is validated, with
a message that says what is missing.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

#: Entry-point groups sdl reads plug-ins from.
SYSTEMS_GROUP = "sdl.systems"
INSTRUMENTS_GROUP = "sdl.instruments"
AGENTS_GROUP = "sdl.agents"


class PluginError(ValueError):
    """A plug-in that cannot be loaded or does not have the shape its role needs."""


@dataclass(frozen=True)
class InstrumentPlugin:
    """An instrument added from outside sdl, and the analysis step for its readings.

    Attributes
    ----------
    name
        The device's name in the campaign's runs: its readings are the data keys
        ``{name}_{component}`` of the experiment's ``primary`` event.
    features
        The features :attr:`analyse` returns (each may come with a ``{feature}_std``).
    simulated
        Makes the simulated device: called with ``name``, ``lab`` (the campaign's
        :class:`~devices.sim_lab.SimulatedLab`: its clock, random streams, faults and the
        sample on the stage) and ``raw_dir`` (where it may write files). The device must be
        bluesky-``Triggerable`` and ``Readable``; a ``{component}_time_s`` reading counts as
        instrument time.
    analyse
        The analysis step: this device's readings of one sample (data key -> value, the
        ``{name}_`` prefix included) -> features with uncertainties. ``ValueError`` for data
        it cannot analyse (the fault policy's ``analysis_error``).
    epics
        Makes the device on real hardware (``name``, ``prefix``, ``raw_dir``), for
        ``devices.backend: epics``; None: simulated only.
    description
        One line for people choosing instruments.
    """

    name: str
    features: tuple[str, ...]
    simulated: Callable[..., Any]
    analyse: Callable[[Mapping[str, Any]], Mapping[str, float]]
    epics: Callable[..., Any] | None = None
    description: str = ""

    def features_of(self, data: Mapping[str, Any]) -> dict[str, float]:
        """The analysis step on one event's data (only this device's keys are passed on)."""
        prefix = f"{self.name}_"
        readings = {key: value for key, value in data.items() if key.startswith(prefix)}
        if not readings:
            raise ValueError(f"the run has no readings of instrument {self.name!r}")
        try:
            return {name: float(value) for name, value in self.analyse(readings).items()}
        except ValueError:
            raise
        except Exception as error:  # a plug-in's bug is this run's analysis error, not a crash
            raise ValueError(
                f"the {self.name} analysis step failed: {type(error).__name__}: {error}"
            ) from error


def registered(group: str) -> list[str]:
    """Names of the plug-ins installed packages register in ``group``."""
    return sorted({entry.name for entry in importlib.metadata.entry_points(group=group)})


@cache  # a campaign file is checked in several places; entry points are read once
def load_plugin(group: str, name: str) -> Any | None:
    """The plug-in registered as ``name`` in ``group``, or at import path ``name``
    (``module:attribute``); None if ``name`` is neither."""
    entries = [
        entry for entry in importlib.metadata.entry_points(group=group) if entry.name == name
    ]
    if entries:
        try:
            return entries[0].load()
        except Exception as error:
            raise PluginError(
                f"plug-in {name!r} ({entries[0].value}) could not be loaded: "
                f"{type(error).__name__}: {error}"
            ) from error
    if ":" not in name:
        return None
    module, _, attribute = name.partition(":")
    try:
        return getattr(importlib.import_module(module), attribute)
    except Exception as error:  # a plug-in's own import error, whatever it is
        raise PluginError(
            f"{name!r} could not be imported: {type(error).__name__}: {error}"
        ) from error


def instrument_plugin(name: str) -> InstrumentPlugin | None:
    """The instrument plug-in ``name`` (registered or an import path), checked for its
    shape; None if ``name`` names none."""
    plugin = load_plugin(INSTRUMENTS_GROUP, name)
    if plugin is None:
        return None
    if not isinstance(plugin, InstrumentPlugin):
        raise PluginError(
            f"instrument plug-in {name!r} is a {type(plugin).__name__}, not an "
            "sdl.plugins.InstrumentPlugin (name, features, simulated, analyse)"
        )
    missing = [
        field
        for field, ok in (
            ("features", bool(plugin.features)),
            ("simulated (a callable making the device)", callable(plugin.simulated)),
            ("analyse (a callable: readings -> features)", callable(plugin.analyse)),
        )
        if not ok
    ]
    if missing:
        raise PluginError(f"instrument plug-in {name!r} lacks {', '.join(missing)}")
    return plugin


def agent_factory(name: str) -> Callable[..., Any] | None:
    """The agent plug-in ``name``'s factory (registered or an import path); None if ``name``
    names none."""
    factory = load_plugin(AGENTS_GROUP, name)
    if factory is not None and not callable(factory):
        raise PluginError(
            f"agent plug-in {name!r} is a {type(factory).__name__}, not a factory: it must be "
            "called with parameters, objectives, seed and options to make an optimizer"
        )
    return factory


def lacking(device: Any, *protocols: type) -> list[str]:
    """The bluesky protocols (``bluesky.protocols``) ``device`` does not satisfy, each
    with the members it needs, e.g. ``"Movable (set)"``; empty if it satisfies them all."""
    members = {"Triggerable": "trigger", "Movable": "set", "Readable": "read, describe, name"}
    return [
        f"{protocol.__name__} ({members.get(protocol.__name__, '...')})"
        for protocol in protocols
        if not isinstance(device, protocol)
    ]


def check_device(device: Any, instrument: str) -> None:
    """Refuse a device that bluesky cannot trigger and read, saying what it lacks."""
    from bluesky.protocols import Readable, Triggerable

    missing = lacking(device, Triggerable, Readable)
    if missing:
        raise PluginError(
            f"instrument {instrument!r}: its device {type(device).__name__} is not "
            f"bluesky-{' or '.join(missing)}; a detector must be triggerable and readable"
        )
