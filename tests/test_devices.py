"""The simulated instruments: limits, descriptions, Status objects, readings."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from ophyd.utils.errors import LimitError

from devices.hdf5_frames import FRAMES_DATASET
from simulators.tio2 import TIO2_CONDITION_LIMITS


def _synthesise(reactor, conditions):
    for name, value in conditions.items():
        getattr(reactor, name).set(value).wait(5)
    status = reactor.trigger()
    status.wait(10)
    return status


def test_every_condition_has_the_simulators_safe_limits_and_units(reactor):
    description = reactor.describe()
    for name, (low, high, unit) in TIO2_CONDITION_LIMITS.items():
        key = f"reactor_{name}"
        assert description[key]["lower_ctrl_limit"] == low
        assert description[key]["upper_ctrl_limit"] == high
        assert description[key]["units"] == unit


def test_setpoint_outside_limits_is_refused_and_not_applied(reactor):
    before = reactor.temperature_c.get()
    with pytest.raises(LimitError, match=r"reactor_temperature_c=5000 .*outside the safe range"):
        reactor.temperature_c.set(5000.0)
    assert reactor.temperature_c.get() == before


def test_non_numeric_setpoint_is_refused(reactor):
    with pytest.raises(ValueError, match="must be a number"):
        reactor.ph.set("acidic")


def test_reactor_trigger_returns_status_and_puts_a_sample_on_the_stage(
    reactor, lab, good_conditions
):
    status = _synthesise(reactor, good_conditions)
    assert status.done and status.success
    sample = lab.sample_on_stage
    assert sample is not None and sample.sample_id == reactor.sample_id.get()
    assert reactor.synthesis_time_s.get() > good_conditions["duration_h"] * 3600 * 0.9
    assert lab.clock.elapsed_s == pytest.approx(reactor.synthesis_time_s.get())


def test_measuring_before_any_synthesis_fails_the_status(xrd):
    status = xrd.trigger()
    with pytest.raises(RuntimeError, match="no sample on the stage"):
        status.wait(10)


def test_diffractometer_reads_a_described_pattern(reactor, xrd, good_conditions):
    _synthesise(reactor, good_conditions)
    xrd.trigger().wait(10)
    description, reading = xrd.describe(), xrd.read()
    n_points = len(xrd.instrument.two_theta_deg)
    for key in ("xrd_two_theta", "xrd_counts"):
        assert description[key]["dtype"] == "array"
        assert description[key]["shape"] == [n_points]
        assert reading[key]["value"].shape == (n_points,)
    assert description["xrd_two_theta"]["units"] == "deg"
    assert np.all(reading["xrd_counts"]["value"] >= 0) and reading["xrd_counts"]["value"].sum() > 0


def test_microscope_writes_frames_to_hdf5_and_emits_resource_and_datum(
    reactor, microscope, good_conditions
):
    _synthesise(reactor, good_conditions)
    microscope.stage()
    try:
        microscope.trigger().wait(10)
        docs = list(microscope.collect_asset_docs())
    finally:
        microscope.unstage()
    names = [name for name, _ in docs]
    assert names == ["resource", "datum"]
    resource, datum = docs[0][1], docs[1][1]
    assert microscope.image.get() == datum["datum_id"]
    description = microscope.describe()["microscope_image"]
    assert description["external"] == "FILESTORE:" and description["shape"] == [256, 256]
    with h5py.File(f"{resource['root']}/{resource['resource_path']}") as file:
        frames = file[FRAMES_DATASET][()]
    assert frames.shape == (1, 256, 256) and frames.std() > 0


def test_same_seed_gives_the_same_measurement(lab, good_conditions):
    from devices.diffractometer import SimulatedDiffractometer
    from devices.reactor import reactor_class
    from devices.sim_lab import SimulatedLab
    from simulators.tio2 import TiO2SolGel

    patterns = []
    for _ in range(2):
        twin_lab = SimulatedLab(seed=3)
        reactor = reactor_class("TwinReactor", TIO2_CONDITION_LIMITS)(
            name="reactor", lab=twin_lab, model=TiO2SolGel()
        )
        xrd = SimulatedDiffractometer(name="xrd", lab=twin_lab)
        _synthesise(reactor, good_conditions)
        xrd.trigger().wait(10)
        patterns.append(xrd.counts.get())
    np.testing.assert_array_equal(patterns[0], patterns[1])
