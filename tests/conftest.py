"""Shared fixtures: a RunEngine, simulated instruments on one lab, a catalog in a temp dir."""

from __future__ import annotations

import pytest
from bluesky import RunEngine

from devices.diffractometer import SimulatedDiffractometer
from devices.microscope import SimulatedMicroscope
from devices.reactor import reactor_class
from devices.sim_lab import SimulatedLab
from sdl.catalog import open_catalog
from simulators.tio2 import TIO2_CONDITION_LIMITS, TiO2SolGel


@pytest.fixture
def RE():
    engine = RunEngine({}, call_returns_result=False)
    yield engine
    if engine.state != "idle":
        engine.halt()


@pytest.fixture
def lab():
    return SimulatedLab(seed=7)


@pytest.fixture
def reactor(lab):
    cls = reactor_class("TestReactor", TIO2_CONDITION_LIMITS)
    return cls(name="reactor", lab=lab, model=TiO2SolGel())


@pytest.fixture
def xrd(lab):
    return SimulatedDiffractometer(name="xrd", lab=lab)


@pytest.fixture
def microscope(lab, tmp_path):
    return SimulatedMicroscope(name="microscope", lab=lab, write_dir=tmp_path / "raw")


@pytest.fixture
def catalog(tmp_path):
    return open_catalog(tmp_path / "data", create=True)


@pytest.fixture
def good_conditions():
    """Conditions inside the TiO2 reactor's safe range that make a crystalline sample."""
    return {"temperature_c": 550.0, "duration_h": 2.0, "ph": 4.0, "h2o_ti_ratio": 20.0}
