"""The EPICS backend over real Channel Access: caproto IOCs serving the simulators on 127.0.0.1."""

from __future__ import annotations

import os
import re
import uuid
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
import pytest
import yaml
from caproto.sync.client import read as ca_read
from caproto.sync.client import write as ca_write
from ophyd.utils.errors import LimitError

from devices.epics import EpicsLimitedSignal
from sdl.campaign.config import CampaignConfig, CampaignConfigError, parse_campaign
from sdl.cli import main
from sdl.facility.ioc_process import IOCStartError, running_ioc
from sdl.lab.device_check import check_devices
from sdl.lab.instruments import build_epics_instruments, build_simulated_instruments
from sdl.loop.runner import CampaignRunner
from sdl.records.catalog import campaign_runs, open_catalog

pytestmark = pytest.mark.epics

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tio2_bo.yaml"


@contextmanager
def serving_ioc(**options):
    """``running_ioc(**options)`` with the CA client environment set to reach it (and the
    monkeypatch that set it), or the test skipped where caproto cannot serve."""
    context = running_ioc(**options)
    try:
        ioc = context.__enter__()
    except IOCStartError as error:
        pytest.skip(f"caproto cannot serve Channel Access on 127.0.0.1: {error}")
    try:
        with pytest.MonkeyPatch.context() as env:
            for key, value in ioc.client_env.items():
                env.setenv(key, value)
            yield ioc, env
    finally:
        context.__exit__(None, None, None)


@pytest.fixture(scope="module")
def ioc():
    """One IOC for the module, with a prefix no other test's IOC shares (CA caches names)."""
    with serving_ioc(prefix=f"T{uuid.uuid4().hex[:6]}:") as (ioc, _):
        yield ioc


@contextmanager
def narrowed_drive_limit(pv: str, high: float):
    """Lower the ``.DRVH`` of an ``ao`` setpoint on the IOC for the block, as an operator would."""
    full = ca_read(f"{pv}.DRVH").data[0]
    ca_write(f"{pv}.DRVH", high, notify=True)
    try:
        yield
    finally:
        ca_write(f"{pv}.DRVH", full, notify=True)


def campaign(
    data_dir: Path, backend: str, prefix: str = "SDL:", on_fault=None, **epics
) -> CampaignConfig:
    """The demo campaign, small, with a random agent, on the given backend."""
    data = yaml.safe_load(EXAMPLE.read_text())
    data.update(data_dir=str(data_dir), budget=2, agent={"name": "random"}, on_fault=on_fault or {})
    data["devices"] = {
        "backend": backend,
        "system": "tio2_solgel",
        "epics": {"prefix": prefix, "timeout_s": 2.0, **epics},
    }
    return parse_campaign(data)


def test_epics_devices_describe_like_the_simulated_ones(ioc, tmp_path):
    sim = build_simulated_instruments(campaign(tmp_path, "sim"), tmp_path / "sim")
    epics = build_epics_instruments(campaign(tmp_path, "epics", ioc.prefix), tmp_path / "ca")
    for sim_device, ca_device in zip(
        [sim.reactor, *sim.detectors], [epics.reactor, *epics.detectors], strict=True
    ):
        sim_keys, ca_keys = sim_device.describe(), ca_device.describe()
        assert set(ca_keys) == set(sim_keys)
        for key, description in sim_keys.items():
            assert set(ca_keys[key]) == set(description), key
            for field in ("dtype", "shape", "units", "lower_ctrl_limit", "upper_ctrl_limit"):
                assert ca_keys[key].get(field) == description.get(field), (key, field)


def test_devices_set_trigger_and_read_over_ca(ioc, tmp_path, good_conditions):
    instruments = build_epics_instruments(campaign(tmp_path, "epics", ioc.prefix), tmp_path)
    reactor = instruments.reactor
    for name, value in good_conditions.items():
        getattr(reactor, name).set(value).wait(5)
    reactor.trigger().wait(30)
    reading = reactor.read()
    assert reading["reactor_temperature_c"]["value"] == good_conditions["temperature_c"]
    assert len(reading["reactor_sample_id"]["value"]) == 12
    assert reading["reactor_synthesis_time_s"]["value"] > 0
    xrd, microscope = instruments.detectors
    microscope.stage()
    try:
        xrd.trigger().wait(30)
        microscope.trigger().wait(30)
        assert xrd.read()["xrd_counts"]["value"].shape == (2048,)
        assert microscope.read()["microscope_image"]["value"].endswith("/0")
        assert [name for name, _ in microscope.collect_asset_docs()] == ["resource", "datum"]
    finally:
        microscope.unstage()


def test_value_beyond_the_pvs_control_limit_is_refused_before_any_put(ioc, tmp_path):
    reactor = build_epics_instruments(campaign(tmp_path, "epics", ioc.prefix), tmp_path).reactor
    pv = reactor.temperature_c.pvname
    before = ca_read(pv).data[0]
    with narrowed_drive_limit(pv, 900.0):
        assert reactor.condition_limits()["temperature_c"][:2] == (200.0, 900.0)
        with pytest.raises(LimitError, match="temperature_c=950.*nothing was sent"):
            reactor.temperature_c.set(950.0)
        assert ca_read(pv).data[0] == before


def test_campaign_over_ca_stores_the_same_documents_as_in_process(ioc, tmp_path):
    shapes = {}
    for backend in ("sim", "epics"):
        config = campaign(tmp_path / backend, backend, ioc.prefix)
        result = CampaignRunner(config).run()
        assert len(result.records) == 2 and not any(r.failed for r in result.records)
        assert result.instrument_hours > 0
        run = campaign_runs(open_catalog(config.data_dir), config.name, "experiment")[0]
        primary = run["primary"]
        shapes[backend] = {
            key: np.asarray(primary[key].read()).shape
            for key in primary
            if not key.startswith("ts_")
        }
    assert shapes["epics"] == shapes["sim"]
    assert shapes["epics"]["microscope_image"][-2:] == (256, 256)


def test_dry_run_reports_a_misnamed_pv(ioc, tmp_path):
    config = campaign(
        tmp_path, "epics", ioc.prefix, pv_map={"reactor": {"temperature_c": "reactor:temprature_c"}}
    )
    check = check_devices(config, tmp_path)
    assert not check.ok
    (missing,) = [p for p in check.problems if p.startswith("missing")]
    assert f"{ioc.prefix}reactor:temprature_c" in missing
    assert "devices.epics.pv_map.reactor.temperature_c" in missing
    assert any(
        line.startswith(f"not connected  {ioc.prefix}reactor:temprature_c") for line in check.pvs
    )
    assert any(f"connected      {ioc.prefix}xrd:counts" in line for line in check.pvs)


def test_pv_map_of_an_unknown_component_is_a_config_error(tmp_path):
    with pytest.raises(CampaignConfigError, match=r"pv_map.reactor: unknown component.*'temp'"):
        campaign(tmp_path, "epics", pv_map={"reactor": {"temp": "TC1:SP"}})


def test_ioc_killed_mid_campaign_names_the_pv_and_keeps_the_catalog(ioc, tmp_path, monkeypatch):
    with running_ioc(prefix=f"K{uuid.uuid4().hex[:6]}:") as doomed:
        monkeypatch.setenv(
            "EPICS_CA_ADDR_LIST", f"{os.environ['EPICS_CA_ADDR_LIST']} {doomed.host}:{doomed.port}"
        )
        config = campaign(tmp_path, "epics", doomed.prefix)
        runner = CampaignRunner(config)
        runner.on_experiment = lambda result: doomed.kill()
        result = runner.run()
    assert doomed.prefix + "reactor:" in result.stopped and len(result.records) == 1
    runs = campaign_runs(open_catalog(config.data_dir), config.name, "experiment")
    assert runs[0].metadata["stop"]["exit_status"] == "success"
    assert np.asarray(runs[0]["primary"]["xrd_counts"].read()).shape == (1, 2048)
    assert len(campaign_runs(open_catalog(config.data_dir), config.name, "analysis")) == 1


def test_ioc_restarted_mid_campaign_is_retried_by_policy(ioc, tmp_path, monkeypatch):
    prefix = f"R{uuid.uuid4().hex[:6]}:"
    with running_ioc(prefix=prefix) as first:
        monkeypatch.setenv(
            "EPICS_CA_ADDR_LIST", f"{os.environ['EPICS_CA_ADDR_LIST']} {first.host}:{first.port}"
        )
        config = campaign(
            tmp_path,
            "epics",
            prefix,
            on_fault={"disconnect": {"action": "retry", "retries": 5, "retry_delay_s": 2.0}},
        )
        runner = CampaignRunner(config)
        restarted = []

        def crash_then_restart(result):
            if not restarted:
                first.kill()
                restarted.append(running_ioc(prefix=prefix, port=first.port))
                restarted[0].__enter__()

        runner.on_experiment = crash_then_restart
        try:
            result = runner.run()
        finally:
            for context in restarted:
                context.__exit__(None, None, None)
    assert len(result.records) == 2 and not any(r.failed for r in result.records)
    runs = campaign_runs(open_catalog(config.data_dir), config.name, "experiment")
    # An attempt cut off mid-run stays in the catalog marked failed; the finished ones count.
    finished = [run for run in runs if run.metadata["stop"]["exit_status"] == "success"]
    assert {run.metadata["stop"]["exit_status"] for run in runs} <= {"success", "fail"}
    assert [run.metadata["start"]["iteration"] for run in finished] == [0, 1]
    assert [run.metadata["start"]["uid"] for run in finished] == [r.raw_uid for r in result.records]


def test_ioc_setpoints_carry_the_units_and_limits_the_devices_describe(ioc, tmp_path):
    sim = build_simulated_instruments(campaign(tmp_path, "sim"), tmp_path)
    setpoints = 0
    for device in (sim.reactor, *sim.detectors):
        described = {**device.describe(), **device.describe_configuration()}
        for key, description in described.items():
            if "lower_ctrl_limit" not in description:
                continue
            pv = f"{ioc.prefix}{device.name}:{key.removeprefix(device.name + '_')}"
            limits = (description["lower_ctrl_limit"], description["upper_ctrl_limit"])
            assert ca_read(f"{pv}.EGU").data[0].decode() == description["units"], pv
            assert (ca_read(f"{pv}.DRVL").data[0], ca_read(f"{pv}.DRVH").data[0]) == limits, pv
            assert (ca_read(f"{pv}.LOPR").data[0], ca_read(f"{pv}.HOPR").data[0]) == limits, pv
            setpoints += 1
    assert setpoints == len(sim.reactor.condition_names) + 2
    assert check_devices(campaign(tmp_path, "epics", ioc.prefix), tmp_path).ok


def test_out_of_limits_put_is_answered_with_an_error(ioc, tmp_path, monkeypatch):
    reactor = build_epics_instruments(campaign(tmp_path, "epics", ioc.prefix), tmp_path).reactor
    pv = reactor.temperature_c.pvname
    before = ca_read(pv).data[0]
    assert ca_write(pv, 5000.0, notify=True).status.name == "ECA_PUTFAIL"
    # A client whose view of the limits is stale sends the put; the IOC's answer fails it.
    monkeypatch.setattr(EpicsLimitedSignal, "limits", property(lambda s: s.configured_limits))
    with narrowed_drive_limit(pv, 900.0):
        status = reactor.temperature_c.set(950.0)
        with pytest.raises(
            LimitError,
            match=rf"PV {pv} refused reactor_temperature_c=950 .*limits are \[200, 900\]",
        ):
            status.wait()
    assert ca_read(pv).data[0] == before


def test_put_refused_by_the_ioc_mid_campaign_keeps_the_catalog(ioc, tmp_path, monkeypatch):
    monkeypatch.setattr(EpicsLimitedSignal, "limits", property(lambda s: s.configured_limits))
    config = campaign(
        tmp_path, "epics", ioc.prefix, on_fault={"instrument_error": {"action": "abort"}}
    )
    runner = CampaignRunner(config)
    pv = f"{ioc.prefix}reactor:temperature_c"
    with ExitStack() as narrowed:
        runner.on_experiment = lambda result: narrowed.enter_context(
            narrowed_drive_limit(pv, 250.0)
        )
        result = runner.run()
    assert len(result.records) == 1 and f"PV {pv} refused" in result.stopped
    runs = campaign_runs(open_catalog(config.data_dir), config.name, "experiment")
    assert [run.metadata["stop"]["exit_status"] for run in runs] == ["success", "fail"]
    assert f"PV {pv} refused" in runs[1].metadata["stop"]["reason"]
    assert np.asarray(runs[0]["primary"]["xrd_counts"].read()).shape == (1, 2048)


def test_check_devices_prints_units_and_limits_and_flags_a_mismatched_ioc(ioc, tmp_path, capsys):
    path = tmp_path / "campaign.yaml"
    config = campaign(tmp_path, "epics", ioc.prefix)
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    pv = f"{ioc.prefix}reactor:temperature_c"
    ca_write(f"{pv}.EGU", "K", notify=True)
    try:
        with narrowed_drive_limit(pv, 900.0):
            assert main(["check-devices", str(path)]) == 1
    finally:
        ca_write(f"{pv}.EGU", "degC", notify=True)
    lines = capsys.readouterr().out.splitlines()
    pv_line = rf"connected +{pv} \(reactor.temperature_c\) = [\d.]+ K, control limits \[200, 900\]"
    assert any(re.fullmatch(pv_line, line) for line in lines)
    exposure = rf"connected +{ioc.prefix}xrd:exposure_s .* s, control limits \[0.01, 10\]"
    assert any(re.fullmatch(exposure, line) for line in lines)
    problems = [line for line in lines if line.startswith("PROBLEM")]
    assert (
        f"PROBLEM units: {pv} (reactor.temperature_c) reports 'K'; the device expects 'degC'"
        in problems
    )
    assert any(
        line.startswith(f"PROBLEM limits: {pv} (reactor.temperature_c) control limits (DRVL/DRVH)")
        and "[200, 900] differ from the device's safe range [200, 1000] degC" in line
        for line in problems
    )
