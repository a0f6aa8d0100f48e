"""`sdl units`: the facility deployment as systemd units, and the services they describe, run
here as a service manager would run them (no systemd in a test: the unit's own ExecStart,
Environment, EnvironmentFile and WorkingDirectory), a killed agent service started again."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest
import redis
from test_distributed import POSTGRES, _campaign, _wait
from tiled.client import from_uri

from sdl.cli import main
from sdl.facility.commands import queue_prefix
from sdl.facility.stack import (
    StackSettings,
    create_database,
    drop_database,
    free_port,
    preflight,
)
from sdl.facility.units import UnitSettings, write_units
from sdl.records.catalog import campaign_runs

EXAMPLE = Path(__file__).parent.parent / "examples" / "tio2_bo.yaml"


def _service(unit: Path) -> dict[str, list[str]]:
    """A unit's ``[Service]`` settings, each key with its values in order."""
    settings: dict[str, list[str]] = {}
    section = ""
    for line in unit.read_text().splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line and section == "Service":
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def _start(unit: Path, log: Path) -> subprocess.Popen:
    """Start a unit's service as systemd would: its command, environment and folder."""
    service = _service(unit)
    environment = dict(os.environ)
    for path in service["EnvironmentFile"]:
        environment.update(line.split("=", 1) for line in Path(path).read_text().splitlines())
    for assignment in service.get("Environment", []):
        key, value = assignment.split("=", 1)
        environment[key] = shlex.split(value)[0]
    (command,) = service["ExecStart"]
    return subprocess.Popen(
        shlex.split(command),
        env=environment,
        cwd=service["WorkingDirectory"][0],
        stdout=log.open("a"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _answers(url: str) -> bool:
    try:
        return httpx.get(url).status_code == 200
    except httpx.HTTPError:
        return False


def _stop(process: subprocess.Popen, sig: int = signal.SIGINT) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # as systemd empties the unit's control group
    except ProcessLookupError:
        pass
    process.wait()


def test_a_unit_per_service_restarted_on_failure_and_the_key_kept_private(tmp_path):
    config = _campaign(tmp_path)
    out = str(tmp_path / "u")
    command = ["units", str(EXAMPLE), "--out", out, "--stations=2", "--data-dir", str(tmp_path)]
    assert main(command) == 0
    name = "sdl-tio2-photoactive-bo"
    units = sorted(p.name for p in (tmp_path / "u").glob(f"{name}*"))
    assert units == sorted(
        [f"{name}.env", f"{name}.target"]
        + [f"{name}-{s}.service" for s in ("tiled", "stream", "station-0", "station-1")]
        + [f"{name}-{s}.service" for s in ("analysis", "agent")]
    )
    env = tmp_path / "u" / f"{name}.env"
    assert env.stat().st_mode & 0o077 == 0
    key = env.read_text()
    for unit in (tmp_path / "u").glob("*.service"):
        service = _service(unit)
        assert service["Restart"] == ["on-failure"]
        assert key.split("=", 1)[1].split()[0] not in unit.read_text()  # never on a command line
        assert Path(shlex.split(service["ExecStart"][0])[0]).is_file()
    agent = _service(tmp_path / "u" / f"{name}-agent.service")["ExecStart"][0]
    assert "--station=station-1=tcp://127.0.0.1:60617" in agent
    # Written again (new ports, say), the key stays: clients holding it keep working.
    write_units(config, UnitSettings(tiled_port=8001), tmp_path / "u2")
    first = (tmp_path / "u2" / "sdl-distributed-test.env").read_text()
    write_units(config, UnitSettings(tiled_port=8002), tmp_path / "u2")
    assert (tmp_path / "u2" / "sdl-distributed-test.env").read_text() == first


@pytest.mark.slow
@pytest.mark.services
def test_the_units_services_run_a_campaign_and_a_killed_agent_resumes_it(tmp_path):
    if preflight(StackSettings(postgres=f"{POSTGRES}/test")):
        pytest.skip("the units' services need Redis and PostgreSQL on 127.0.0.1")
    database = f"{POSTGRES}/sdl_test_{uuid.uuid4().hex[:12]}"
    create_database(database)  # docs/facility.md: createdb
    config = _campaign(
        tmp_path,
        budget=2,
        agent={"name": "random"},
        devices={"backend": "sim", "system": "tio2_solgel", "speedup": 2000.0},
    )
    host = "127.0.0.1"
    settings = UnitSettings(
        postgres=database,
        tiled_port=free_port(host),
        stream_in_port=free_port(host),
        stream_out_port=free_port(host),
        station_port=free_port(host),
    )
    out = tmp_path / "units"
    write_units(config, settings, out)
    unit = {s: out / f"sdl-distributed-test-{s}.service" for s in ("tiled", "stream")}
    unit |= {s: out / f"sdl-distributed-test-{s}.service" for s in ("station-0", "analysis")}
    running = {s: _start(path, tmp_path / f"{s}.log") for s, path in unit.items()}
    agent_unit = out / "sdl-distributed-test-agent.service"
    try:
        _wait(lambda: _answers(f"{settings.tiled_uri}/api/v1/"), "tiled", timeout_s=300)
        key = (out / "sdl-distributed-test.env").read_text().splitlines()[0].split("=", 1)[1]
        client = from_uri(settings.tiled_uri, api_key=key)
        agent = _start(agent_unit, tmp_path / "agent.log")
        _wait(
            lambda: bool(campaign_runs(client, config.name, "experiment")),
            "the first experiment",
            timeout_s=300,
        )
        os.killpg(agent.pid, signal.SIGKILL)
        agent.wait()
        time.sleep(1.0)
        agent = _start(agent_unit, tmp_path / "agent.log")  # Restart=on-failure
        assert agent.wait(timeout=600) == 0, (tmp_path / "agent.log").read_text()[-3000:]
        experiments = campaign_runs(client, config.name, "experiment")
        analysed = {
            run.metadata["start"]["raw_uid"]
            for run in campaign_runs(client, config.name, "analysis")
        }
    finally:
        for process in running.values():
            _stop(process)
        drop_database(database)
        queues = redis.Redis(socket_connect_timeout=3)
        prefix = queue_prefix(config.name, out, "station-0")
        for stale in queues.scan_iter(match=f"{prefix}_*"):
            queues.delete(stale)
    succeeded = [
        run.metadata["start"]["uid"]
        for run in experiments
        if (run.metadata.get("stop") or {}).get("exit_status") == "success"
    ]
    assert len(succeeded) == config.budget  # the resumed campaign kept to the budget
    assert set(succeeded) <= analysed
