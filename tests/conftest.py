"""Shared fixtures: a RunEngine, simulated instruments on one lab, a catalog in a temp dir."""

from __future__ import annotations

import shutil

import pytest
from bluesky import RunEngine

from devices.diffractometer import SimulatedDiffractometer
from devices.microscope import SimulatedMicroscope
from devices.reactor import reactor_class
from devices.sim_lab import SimulatedLab
from sdl.records.catalog import CATALOG_FILE, TABLES_FILE, open_catalog
from simulators.tio2 import TIO2_CONDITION_LIMITS, TiO2SolGel


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Whole campaigns first: under pytest-xdist, a long test handed out last keeps one
    worker busy while the others have nothing left to do."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


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


@pytest.fixture(scope="session")
def _empty_catalog(tmp_path_factory):
    """An empty catalog made once: creating one costs seconds, copying it milliseconds."""
    path = tmp_path_factory.mktemp("empty-catalog")
    open_catalog(path, create=True)
    return path


@pytest.fixture
def data_dir(tmp_path, _empty_catalog):
    """A campaign data directory holding a fresh, empty catalog."""
    path = tmp_path / "data"
    path.mkdir()
    for name in (CATALOG_FILE, TABLES_FILE):  # tables.db appears with the first table
        if (_empty_catalog / name).exists():
            shutil.copy(_empty_catalog / name, path / name)
    return path
