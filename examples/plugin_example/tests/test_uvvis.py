"""The perovskite film simulator, the simulated UV-Vis spectrometer and its Tauc analysis."""

from __future__ import annotations

import importlib.metadata

import numpy as np
import pytest
from bluesky import RunEngine
from bluesky import plans as bp
from bluesky.protocols import Readable, Triggerable
from devices.sim_lab import SimulatedLab
from sdl.plugins import InstrumentPlugin
from simulators.clock import SimClock
from simulators.faults import FaultInjector, FaultSpec, InstrumentFault

from sdl_plugin_example.film import (
    FILM_CONDITION_LIMITS,
    PerovskiteFilm,
    converted_fraction,
    decomposed_fraction,
    thickness_nm,
    urbach_energy_mev,
)
from sdl_plugin_example.optics import band_gap_ev
from sdl_plugin_example.spectrometer import UVVisInstrument
from sdl_plugin_example.tauc import analyse_spectrum
from sdl_plugin_example.uvvis import UVVIS, SimulatedUVVis


def spectrum_readings(instrument: UVVisInstrument, absorbance: np.ndarray) -> dict:
    return {"uvvis_wavelength_nm": instrument.wavelength_nm, "uvvis_absorbance": absorbance}


def well_made_conditions(rng: np.random.Generator, count: int) -> list[dict[str, float]]:
    """Conditions across the composition range whose anneal converts without decomposing."""
    return [
        {
            "bromide_fraction": float(rng.uniform(0, 1)),
            "anneal_temperature_c": float(rng.uniform(100, 150)),
            "spin_speed_rpm": float(rng.uniform(1000, 6000)),
        }
        for _ in range(count)
    ]


def test_band_gap_rises_monotonically_with_bromide_fraction_from_iodide_to_bromide():
    fractions = np.linspace(0, 1, 101)
    gaps = band_gap_ev(fractions)
    assert np.all(np.diff(gaps) > 0)
    # MAPbI3 1.57 eV and MAPbBr3 2.29 eV (Noh et al. 2013; 2.31 eV in crystals).
    assert gaps[0] == pytest.approx(1.57, abs=0.02)
    assert gaps[-1] == pytest.approx(2.30, abs=0.02)
    # Bowed below Vegard's straight line, by b / 4 = 0.08 eV at x = 0.5.
    assert (gaps[0] + gaps[-1]) / 2 - gaps[50] == pytest.approx(0.33 / 4, abs=1e-9)


def test_synthesized_films_band_gap_follows_the_bromide_fraction(film_model):
    rng = np.random.default_rng(1)
    films = [
        film_model.synthesize(
            {"bromide_fraction": x, "anneal_temperature_c": 120.0, "spin_speed_rpm": 3000.0},
            rng,
            f"film-{x:.1f}",
        )
        for x in np.linspace(0, 1, 11)
    ]
    gaps = [film.band_gap_ev for film in films]
    assert np.all(np.diff(gaps) > 0)
    assert 1.55 <= gaps[0] < 1.60 and 2.25 < gaps[-1] <= 2.30


def test_thickness_falls_as_the_inverse_square_root_of_spin_speed():
    assert thickness_nm(1000.0) / thickness_nm(4000.0) == pytest.approx(2.0)
    assert thickness_nm(4000.0) == pytest.approx(400.0)


def test_anneal_orders_the_film_until_it_decomposes():
    temperatures_c = np.linspace(60, 250, 191)
    urbach_mev = np.array(
        [
            urbach_energy_mev(0.0, converted_fraction(t), decomposed_fraction(t, 0.0))
            for t in temperatures_c
        ]
    )
    best = int(np.argmin(urbach_mev))
    assert 100 < temperatures_c[best] < 160  # an optimum inside the hot plate's range
    assert urbach_mev[best] < 17.0  # near the 15 meV of an ordered film (De Wolf et al. 2014)
    assert urbach_mev[0] > urbach_mev[best] + 20 and urbach_mev[-1] > urbach_mev[best] + 20
    # Bromide-rich films survive hotter anneals (Misra et al. 2015).
    assert decomposed_fraction(200.0, 1.0) < decomposed_fraction(200.0, 0.0)


def test_synthesis_refuses_conditions_it_lacks(film_model):
    with pytest.raises(ValueError, match="spin_speed_rpm"):
        film_model.synthesize({"bromide_fraction": 0.2}, np.random.default_rng(0), "bad")


def test_analysis_recovers_the_band_gap_within_its_reported_uncertainty(film_model, instrument):
    rng = np.random.default_rng(2)
    errors, stds = [], []
    for index, conditions in enumerate(well_made_conditions(rng, 50)):
        film = film_model.synthesize(conditions, rng, f"film-{index}")
        features = analyse_spectrum(spectrum_readings(instrument, instrument.absorbance(film, rng)))
        errors.append(features["band_gap_ev"] - film.band_gap_ev)
        stds.append(features["band_gap_ev_std"])
    errors, stds = np.array(errors), np.array(stds)
    assert np.all(stds > 0)
    assert np.mean(np.abs(errors) <= 2 * stds) >= 0.85  # calibrated: ~95 % expected
    assert abs(np.mean(errors)) < 1e-3  # no bias beyond 1 meV
    assert np.max(np.abs(errors)) < 5e-3


def test_analysis_recovers_the_urbach_energy(film_model, instrument):
    rng = np.random.default_rng(3)
    for index, conditions in enumerate(well_made_conditions(rng, 10)):
        film = film_model.synthesize(conditions, rng, f"film-{index}")
        features = analyse_spectrum(spectrum_readings(instrument, instrument.absorbance(film, rng)))
        assert features["urbach_energy_mev"] == pytest.approx(film.urbach_energy_mev, rel=0.05)
        assert features["urbach_energy_mev_std"] > 0
        assert 0.5 < features["absorbance_max"] < 3.5


def test_analysis_refuses_a_flat_spectrum(instrument):
    rng = np.random.default_rng(4)
    flat = 0.05 + rng.normal(0, 1e-4, instrument.wavelength_nm.size)
    with pytest.raises(ValueError, match="no absorption edge"):
        analyse_spectrum(spectrum_readings(instrument, flat))


def test_analysis_refuses_nan_and_mismatched_spectra(instrument, good_film):
    absorbance = instrument.absorbance(good_film, np.random.default_rng(5))
    absorbance[100] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        analyse_spectrum(spectrum_readings(instrument, absorbance))
    with pytest.raises(ValueError, match="one length"):
        analyse_spectrum(spectrum_readings(instrument, absorbance[:-1]))
    with pytest.raises(ValueError, match="need one reading ending in 'absorbance'"):
        analyse_spectrum({"uvvis_wavelength_nm": instrument.wavelength_nm})


def test_simulated_device_reads_back_a_spectrum_of_matching_length(lab, tmp_path):
    uvvis = SimulatedUVVis(name="uvvis", lab=lab, raw_dir=tmp_path)
    assert isinstance(uvvis, Readable) and isinstance(uvvis, Triggerable)
    uvvis.trigger().wait(timeout=10)
    reading = uvvis.read()
    assert set(reading) == {"uvvis_wavelength_nm", "uvvis_absorbance", "uvvis_measurement_time_s"}
    wavelength = reading["uvvis_wavelength_nm"]["value"]
    absorbance = reading["uvvis_absorbance"]["value"]
    assert wavelength.shape == absorbance.shape == (751,)
    assert reading["uvvis_measurement_time_s"]["value"] == pytest.approx(90.0)
    assert uvvis.describe()["uvvis_absorbance"]["shape"] == [751]
    assert lab.clock.elapsed_s == pytest.approx(90.0)


def test_the_plugin_analyses_what_the_device_reads(lab, good_film):
    uvvis = SimulatedUVVis(name="uvvis", lab=lab)
    uvvis.trigger().wait(timeout=10)
    data = {key: entry["value"] for key, entry in uvvis.read().items()}
    features = UVVIS.features_of({**data, "reactor_sample_id": "good-film"})
    assert set(features) == {
        "band_gap_ev",
        "band_gap_ev_std",
        "urbach_energy_mev",
        "urbach_energy_mev_std",
        "absorbance_max",
    }
    assert features["band_gap_ev"] == pytest.approx(good_film.band_gap_ev, abs=2e-3)
    assert 1.70 < features["band_gap_ev"] < 1.80


def test_a_bluesky_plan_records_the_spectrum_in_the_primary_stream(lab):
    documents = []
    RunEngine({})(
        bp.count([SimulatedUVVis(name="uvvis", lab=lab)]), lambda _, d: documents.append(d)
    )
    (event,) = [d for d in documents if "data" in d and "seq_num" in d]
    assert event["data"]["uvvis_absorbance"].shape == event["data"]["uvvis_wavelength_nm"].shape


def test_an_injected_instrument_error_strikes_the_scan(good_film):
    faults = FaultInjector({"instrument_error": FaultSpec(at=(0,), devices=("uvvis",))})
    lab = SimulatedLab(SimClock(float("inf")), seed=0, faults=faults)
    lab.sample_on_stage = good_film
    status = SimulatedUVVis(name="uvvis", lab=lab).trigger()
    with pytest.raises(InstrumentFault):
        status.wait(timeout=10)


def test_the_package_registers_its_system_and_instrument():
    systems = importlib.metadata.entry_points(group="sdl.systems", name="perovskite_film")
    instruments = importlib.metadata.entry_points(group="sdl.instruments", name="uvvis")
    (system,) = [entry.load() for entry in systems]
    (instrument,) = [entry.load() for entry in instruments]
    assert isinstance(instrument, InstrumentPlugin) and instrument is UVVIS
    assert dict(system.condition_limits) == FILM_CONDITION_LIMITS
    assert isinstance(system.make_model(), PerovskiteFilm)
