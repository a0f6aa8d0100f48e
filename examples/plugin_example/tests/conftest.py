"""Shared fixtures: the film simulator, the spectrometer's settings, a lab with a film on it."""

from __future__ import annotations

import numpy as np
import pytest
from devices.sim_lab import SimulatedLab
from simulators.clock import SimClock

from sdl_plugin_example.film import PerovskiteFilm, PerovskiteFilmSample
from sdl_plugin_example.spectrometer import UVVisInstrument

#: Conditions of a well-made film: converted, not decomposed, band gap near 1.75 eV.
GOOD_CONDITIONS = {
    "bromide_fraction": 0.35,
    "anneal_temperature_c": 120.0,
    "spin_speed_rpm": 3000.0,
}


@pytest.fixture
def film_model() -> PerovskiteFilm:
    return PerovskiteFilm()


@pytest.fixture
def instrument() -> UVVisInstrument:
    return UVVisInstrument()


@pytest.fixture
def good_film(film_model: PerovskiteFilm) -> PerovskiteFilmSample:
    return film_model.synthesize(GOOD_CONDITIONS, np.random.default_rng(0), "good-film")


@pytest.fixture
def lab(good_film: PerovskiteFilmSample) -> SimulatedLab:
    """An instant lab (infinite clock speed-up) with a well-made film on its stage."""
    lab = SimulatedLab(SimClock(float("inf")), seed=0)
    lab.sample_on_stage = good_film
    return lab
