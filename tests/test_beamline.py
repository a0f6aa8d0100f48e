"""A beamline's own devices in a campaign: named by import path, checked, and run in one plan
with ours (ophyd and ophyd-async, simulated backends and Channel Access to motor-record and
areaDetector IOCs on 127.0.0.1)."""

from __future__ import annotations

import copy
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from caproto.sync.client import read as ca_read
from caproto.sync.client import write as ca_write

from sdl.campaign.beamline import BeamlineConfig
from sdl.campaign.config import CampaignConfigError, parse_campaign
from sdl.lab.beamline import BeamlineError, beamline_devices
from sdl.lab.device_check import check_devices
from sdl.lab.instruments import build_epics_instruments
from sdl.loop.runner import CampaignRunner
from sdl.plugins import PluginError
from sdl.records.catalog import campaign_runs, open_catalog
from tests.test_epics import serving_ioc

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "beamline"
DEMO = Path(__file__).resolve().parents[1] / "examples" / "tio2_bo.yaml"

#: A profile of the test's own: devices on ophyd-async's and ophyd's simulated backends.
SIM_PROFILE = """
from ophyd import Component, Device, Signal
from ophyd_async.core import init_devices
from ophyd_async.sim import SimMotor


class Gauge(Device):
    pressure_mbar = Component(Signal, value=1e-6)


ring_current = Signal(name="ring_current", value=400.0)
gauge = Gauge(name="gauge")
with init_devices():
    stage_x = SimMotor()
"""


def example(**devices) -> dict:
    """The example beamline campaign as plain data, its devices section updated."""
    data = yaml.safe_load((EXAMPLE / "campaign.yaml").read_text())
    data["devices"].update(devices)
    return data


def refused(data: dict, *fragments: str) -> None:
    with pytest.raises(CampaignConfigError) as error:
        parse_campaign(data)
    for fragment in fragments:
        assert fragment in str(error.value)


def test_example_campaign_validates_without_importing_the_profile():
    config = parse_campaign(example())
    assert "sim_beamline" not in sys.modules  # validation connects to no hardware
    assert config.devices.beamline.role_keys() == {
        "sem_image": "microscope_image",
        "sem_pixel_size": "microscope_pixel_size_nm",
        "sem_exposure": "microscope_acquisition_time_s",
    }


def test_a_role_must_map_the_readings_its_analysis_needs():
    data = example()
    del data["devices"]["beamline"]["detectors"]["microscope"]["keys"]["pixel_size_nm"]
    refused(
        data, "devices.beamline.detectors.microscope.keys", "map the required ['pixel_size_nm']"
    )
    data = example()
    data["devices"]["beamline"]["detectors"]["spectrometer"] = {"device": "uv", "keys": {}}
    refused(data, "no analysis reads a role 'spectrometer'", "'microscope'")


def test_beamline_names_are_checked_against_the_campaign():
    data = example()
    data["devices"]["beamline"]["conditions"]["pressure_bar"] = "gauge"
    refused(data, "devices.beamline.conditions.pressure_bar", "has no condition 'pressure_bar'")
    data = example()
    data["instruments"] = ["xrd"]
    refused(data, "devices.beamline.detectors.microscope", "does not measure microscope")
    data = example()
    data["devices"]["beamline"]["baseline"] = ["stage x"]
    refused(data, "'stage x' is not a device reference")
    data = example(backend="sim")
    refused(data, "a beamline device may set a condition only with backend: epics")


@pytest.fixture
def sim_profile(tmp_path, monkeypatch):
    """A profile module of simulated devices, importable for the test, forgotten after it."""
    name = f"profile_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(SIM_PROFILE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_a_device_that_cannot_serve_its_part_is_refused_saying_why(sim_profile):
    with pytest.raises(BeamlineError, match=r"condition 'ph'.*Gauge is not bluesky-Movable"):
        beamline_devices(BeamlineConfig(profile=sim_profile, conditions={"ph": "gauge"}))
    detector = {"device": "stage_x", "keys": {}}
    with pytest.raises(PluginError, match=r"not bluesky-Triggerable \(trigger\)"):
        beamline_devices(BeamlineConfig(profile=sim_profile, detectors={"microscope": detector}))
    with pytest.raises(BeamlineError, match=r"has no 'stage_y'"):
        beamline_devices(BeamlineConfig(profile=sim_profile, baseline=["stage_y"]))
    with pytest.raises(BeamlineError, match=r"module 'no_such_beamline' could not be imported"):
        beamline_devices(BeamlineConfig(baseline=["no_such_beamline:stage_x"]))


@pytest.mark.slow
def test_ophyd_async_simulated_devices_join_the_runs(sim_profile, tmp_path):
    data = yaml.safe_load(DEMO.read_text())
    data.update(data_dir=str(tmp_path), budget=2, agent={"name": "random"})
    data["devices"]["beamline"] = {
        "profile": sim_profile,
        "baseline": ["stage_x", f"{sim_profile}:ring_current"],
    }
    config = parse_campaign(data)
    result = CampaignRunner(config).run()
    assert len(result.records) == 2 and not any(r.failed for r in result.records)
    for run in campaign_runs(open_catalog(config.data_dir), config.name, "experiment"):
        baseline = run["baseline"]
        assert np.asarray(baseline["stage_x"].read()).shape == (2,)  # before and after
        assert list(np.asarray(baseline["ring_current"].read())) == [400.0, 400.0]


@pytest.fixture(scope="module")
def beamline(tmp_path_factory):
    """The simulated lab's IOC with the furnace and water pump as motor records, and the
    example profile importable against it (its camera writing into a temporary folder)."""
    options = {"motor_conditions": ("temperature_c", "h2o_ti_ratio")}
    with serving_ioc(prefix=f"B{uuid.uuid4().hex[:6]}:", **options) as (ioc, env):
        camera_dir = tmp_path_factory.mktemp("camera")
        env.setenv("SIM_BEAMLINE_PREFIX", ioc.prefix)
        env.setenv("SIM_BEAMLINE_DATA", str(camera_dir))
        env.syspath_prepend(str(EXAMPLE))
        yield Beamline(ioc.prefix, camera_dir)
        sys.modules.pop("sim_beamline", None)


@dataclass(frozen=True)
class Beamline:
    """Where the test's beamline is: its PV prefix and the folder its camera writes to."""

    prefix: str
    camera_dir: Path


def beamline_campaign(beamline: Beamline, data_dir: Path, budget: int = 3):
    data = copy.deepcopy(example())
    data.update(data_dir=str(data_dir), budget=budget, agent={"name": "random"})
    data["devices"]["epics"] = {"prefix": beamline.prefix, "timeout_s": 5.0}
    data["devices"]["beamline"]["files"] = [str(beamline.camera_dir)]
    return parse_campaign(data)


@pytest.mark.epics
@pytest.mark.slow
def test_campaign_on_a_beamline_profile_over_channel_access(beamline, tmp_path):
    config = beamline_campaign(beamline, tmp_path)
    result = CampaignRunner(config).run()
    assert len(result.records) == 3 and not any(r.failed for r in result.records)
    for record in result.records:
        assert record.features["grain_size_nm"] > 0  # the camera's frame, analysed
        assert record.instrument_time_s > 0
    runs = campaign_runs(open_catalog(config.data_dir), config.name, "experiment")
    for run, record in zip(runs, result.records, strict=True):
        primary = run["primary"]
        # The motors went where the agent asked: the furnace (ophyd-async) and the pump (ophyd).
        assert float(primary["furnace"].read()[0]) == pytest.approx(
            record.conditions["temperature_c"], abs=1e-3
        )
        assert float(primary["water_pump"].read()[0]) == pytest.approx(
            record.conditions["h2o_ti_ratio"], abs=1e-3
        )
        assert "reactor_temperature_c" not in primary  # the reactor no longer sets it
        # The areaDetector's frame, read back from the catalog through its Resource/Datum.
        image = np.asarray(primary["sem_image"].read())
        assert image.shape == (1, 1, 256, 256) and image.std() > 0
        assert run.metadata["start"]["role_keys"]["sem_image"] == "microscope_image"
        assert "stage_x" in run["baseline"]
    # Resumed from the catalog, the camera's exposure still counts in each experiment's time.
    resumed = CampaignRunner(beamline_campaign(beamline, tmp_path, budget=4)).run()
    assert len(resumed.records) == 4
    for before, after in zip(result.records, resumed.records[:3], strict=False):
        assert after.instrument_time_s == pytest.approx(before.instrument_time_s)
        assert after.features == pytest.approx(before.features, nan_ok=True)


@pytest.mark.epics
def test_check_devices_lists_the_beamline_devices_with_units_and_limits(beamline, tmp_path):
    check = check_devices(beamline_campaign(beamline, tmp_path), tmp_path)
    assert check.ok, check.problems
    lines = "\n".join(check.pvs)
    assert "furnace sets temperature_c" in lines and "limits [200, 1000]" in lines
    assert "water_pump sets h2o_ti_ratio" in lines and "mol/mol" in lines
    assert "sem serves microscope (SEMCamera)" in lines
    assert "stage_x read as baseline" in lines


@pytest.mark.epics
def test_a_motor_narrowed_on_the_ioc_refuses_what_leaves_its_limits(beamline, tmp_path):
    pv = f"{beamline.prefix}reactor:temperature_c"
    full = ca_read(f"{pv}.HLM").data[0]
    instruments = build_epics_instruments(beamline_campaign(beamline, tmp_path), tmp_path)
    conditions = {"temperature_c": 700.0, "duration_h": 1.0, "ph": 3.0, "h2o_ti_ratio": 10.0}
    instruments.check_conditions(conditions)
    ca_write(f"{pv}.HLM", 600.0, notify=True)
    try:
        with pytest.raises(ValueError, match=r"temperature_c=700 degC is outside furnace's limits"):
            instruments.check_conditions(conditions)
        # The search space [250, 950] no longer fits the furnace: refused before any motion.
        with pytest.raises(CampaignConfigError, match=r"safe range \[200, 600\] degC"):
            build_epics_instruments(beamline_campaign(beamline, tmp_path), tmp_path)
    finally:
        ca_write(f"{pv}.HLM", full, notify=True)


@pytest.mark.epics
def test_a_motor_in_other_units_is_refused(beamline, tmp_path):
    pv = f"{beamline.prefix}reactor:h2o_ti_ratio"
    ca_write(f"{pv}.EGU", "mL", notify=True)
    try:
        with pytest.raises(CampaignConfigError, match=r"h2o_ti_ratio.unit.*works in 'mL'"):
            build_epics_instruments(beamline_campaign(beamline, tmp_path), tmp_path)
    finally:
        ca_write(f"{pv}.EGU", "mol/mol", notify=True)
