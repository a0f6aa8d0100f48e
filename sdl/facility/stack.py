"""``sdl stack``: the whole facility deployment on this host, up for one campaign, then down.

Brings up, in order: a tiled server on PostgreSQL (the catalog), the ZeroMQ document proxy,
one bluesky-queueserver per station (Redis-backed queues, our startup module
:mod:`sdl.facility.qserver_startup`), the analysis service and the agent service
(:mod:`sdl.facility.services`), each its own process, every socket on 127.0.0.1 unless told
otherwise. When the agent service finishes the campaign (or on Ctrl-C) everything is stopped
again. Logs go to
``DATA_DIR/stack/``; the addresses and the tiled API key to the owner-only file
``DATA_DIR/NAME.stack.json``, so any tiled or databroker client can read the campaign back.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import httpx
import yaml
from bluesky_queueserver_api.zmq import REManagerAPI

from sdl.campaign.config import CampaignConfig
from sdl.facility.commands import (
    API_KEY_VARIABLE,
    READY_LINE,
    SUMMARY_LINE,
    TILED_KEY_VARIABLE,
    USER_GROUP_PERMISSIONS,
    queue_prefix,
    service_command,
    station_command,
    station_environment,
    tiled_command,
)
from sdl.facility.stream import StreamProxy
from sdl.loop.control_server import write_private_json

logger = logging.getLogger(__name__)


#: How often the stack starts a service again that keeps dying, before it gives up on it.
MAX_RESTARTS = 5


class StackError(RuntimeError):
    """A service the stack needs is missing or did not come up; the message says which."""


@dataclass(frozen=True)
class StackSettings:
    """Where the services the stack relies on are, and how many stations to run."""

    stations: int = 1
    redis: str = "127.0.0.1:6379"
    postgres: str = "postgresql://postgres@127.0.0.1:5432/sdl"
    host: str = "127.0.0.1"
    startup_timeout_s: float = 180.0


def free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _redis_problem(address: str) -> str | None:
    import redis

    host, _, port = address.partition(":")
    try:
        redis.Redis(host=host, port=int(port or 6379), socket_connect_timeout=3).ping()
    except (redis.RedisError, OSError, ValueError) as error:
        return (
            f"Redis is not answering at {address} ({error}); bluesky-queueserver keeps "
            "its queues there. Start redis-server, or name another with --redis HOST:PORT"
        )
    return None


async def _ensure_database(uri: str, *, create: bool) -> None:
    """Check that the database at ``uri`` can be used: it answers, or (when it does not exist
    yet) the server does; with ``create`` a missing database is created."""
    import asyncpg

    parts = urlsplit(uri)
    database = parts.path.lstrip("/")
    try:
        connection = await asyncpg.connect(uri, timeout=5)
    except asyncpg.InvalidCatalogNameError:
        admin = await asyncpg.connect(parts._replace(path="/postgres").geturl(), timeout=5)
        try:
            if create:
                await admin.execute(f'CREATE DATABASE "{database}"')
                logger.info("created PostgreSQL database %s", database)
        finally:
            await admin.close()
        return
    await connection.close()


async def _drop_database(uri: str) -> None:
    import asyncpg

    parts = urlsplit(uri)
    admin = await asyncpg.connect(parts._replace(path="/postgres").geturl(), timeout=5)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{parts.path.lstrip("/")}" WITH (FORCE)')
    finally:
        await admin.close()


def create_database(uri: str) -> None:
    """Create the PostgreSQL database at ``uri`` unless it exists (``createdb``)."""
    asyncio.run(_ensure_database(uri, create=True))


def drop_database(uri: str) -> None:
    """Delete the PostgreSQL database at ``uri`` (a scratch catalog), connections and all."""
    asyncio.run(_drop_database(uri))


def _postgres_problem(uri: str) -> str | None:
    try:
        asyncio.run(_ensure_database(uri, create=False))
    except Exception as error:
        return (
            f"PostgreSQL is not usable at {uri} ({type(error).__name__}: {error}); the "
            "catalog's tiled server stores it there. Start PostgreSQL, or name another "
            "database with --postgres postgresql://USER@HOST:PORT/DATABASE"
        )
    return None


def preflight(settings: StackSettings) -> list[str]:
    """What is missing for the stack to come up (empty when Redis and PostgreSQL answer);
    it changes nothing, so a refused start leaves nothing behind."""
    return [
        problem
        for problem in (_redis_problem(settings.redis), _postgres_problem(settings.postgres))
        if problem
    ]


class ServiceProcess(subprocess.Popen):
    """A service's process, with the file its output goes to."""

    def __init__(self, command: list[str], log_path: Path, **popen: Any) -> None:
        super().__init__(command, **popen)
        self.log_path = log_path


@dataclass
class _Station:
    """A station's queueserver while the stack brings it up."""

    name: str
    control: str
    process: ServiceProcess
    api: REManagerAPI

    def open_environment(self, timeout_s: float) -> None:
        """Once its manager answers, open the RunEngine environment (the worker imports
        :mod:`sdl.facility.qserver_startup`) without waiting for it to finish."""
        _wait_until(
            lambda: self.api.status()["manager_state"] == "idle",
            f"{self.name}'s queueserver",
            timeout_s,
            self.process,
        )
        self.api.queue_clear()
        self.api.environment_open()

    def await_environment(self, timeout_s: float) -> None:
        _wait_until(
            lambda: (
                self.api.status()["worker_environment_exists"]
                and self.api.status()["manager_state"] == "idle"
            ),
            f"{self.name}'s RunEngine environment (startup module sdl.facility.qserver_startup)",
            timeout_s,
            self.process,
        )


def _wait_until(ready: Any, what: str, timeout_s: float, process: ServiceProcess) -> None:
    log = process.log_path
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StackError(f"{what} exited with status {process.returncode}; see {log}")
        try:
            if ready():
                return
        except Exception as error:  # not up yet
            logger.debug("%s not ready: %s", what, error)
        time.sleep(0.5)
    raise StackError(f"{what} did not come up within {timeout_s:g} s; see {log}")


class Stack:
    """The processes of one campaign's deployment; a context manager that stops them all.

    Parameters
    ----------
    config
        The campaign; its ``data_dir`` holds the raw files, the logs and the connection file.
    settings
        Stations, Redis and PostgreSQL.
    """

    def __init__(self, config: CampaignConfig, settings: StackSettings) -> None:
        self.settings = settings
        self.data_dir = Path(config.data_dir).resolve()
        self.config = config.model_copy(update={"data_dir": str(self.data_dir)})
        self.run_dir = self.data_dir / "stack"
        self.api_key = secrets.token_hex(16)
        self.tiled_uri = ""
        self.proxy: StreamProxy | None = None
        self.stations: dict[str, str] = {}
        self._exit = ExitStack()
        self._logs: list[IO[str]] = []
        self._processes: dict[str, ServiceProcess] = {}
        self._restarts: dict[str, tuple[list[str], int, Mapping[str, str]]] = {}
        self._restarted: dict[str, int] = {}
        self._stopping = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, name="sdl-stack-supervisor")

    @property
    def campaign_file(self) -> Path:
        return self.run_dir / "campaign.yaml"

    @property
    def connection_file(self) -> Path:
        return self.data_dir / f"{self.config.name}.stack.json"

    def __enter__(self) -> Stack:
        problems = preflight(self.settings)
        if problems:
            raise StackError("the stack cannot start:\n  " + "\n  ".join(problems))
        create_database(self.settings.postgres)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.campaign_file.write_text(yaml.safe_dump(self.config.model_dump(mode="json")))
        try:
            tiled = self._spawn_tiled()
            self.proxy = self._exit.enter_context(self._proxy())
            # Every process starts at once; each is waited for only where another needs it.
            managers = [self._spawn_station(f"station-{i}") for i in range(self.settings.stations)]
            self._await_tiled(tiled)  # the stations' RunEngines write to it
            for station in managers:
                station.open_environment(self.settings.startup_timeout_s)
            for station in managers:
                station.await_environment(self.settings.startup_timeout_s)
                self.stations[station.name] = station.control
            self._supervisor.start()
            self._write_connection_file()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()  # nothing is started again while the stack stops
        if self._supervisor.is_alive():
            self._supervisor.join()
        self._exit.close()
        for log in self._logs:
            log.close()
        self.connection_file.unlink(missing_ok=True)

    def service_command(self, service: str, *extra: str) -> list[str]:
        """The command line of ``sdl analysis-service`` or ``sdl agent-service`` on this stack."""
        assert self.proxy is not None
        return service_command(
            service, self.campaign_file, self.tiled_uri, self.proxy.out_address, *extra
        )

    def start_services(self, dashboard: bool = False) -> ServiceProcess:
        """Start the analysis and agent services together; the agent's process is returned once
        the analysis service follows the stream (it catches up on any run that ended first)."""
        analysis = self._spawn_analysis_service()
        options = [f"--station={name}={address}" for name, address in self.stations.items()]
        options += [f"--lock-database={self.settings.postgres}"]
        options += ["--dashboard"] if dashboard else []
        agent = self._spawn(
            "agent-service",
            self.service_command("agent-service", *options),
            stop_signal=signal.SIGINT,
            restart=False,
        )
        self._printed(analysis, READY_LINE, "the analysis service")
        return agent

    def dashboard_address(self, agent: ServiceProcess) -> str:
        """The dashboard line the agent service (started with ``dashboard``) prints."""
        return self._printed(agent, "dashboard", "the agent service's dashboard")

    def agent_summary(self, agent: ServiceProcess) -> str:
        """What the agent service printed after its campaign ended: the summary, the report
        and where the catalog is (empty if it printed none)."""
        text = agent.log_path.read_text()
        return text.split(SUMMARY_LINE + "\n", 1)[1] if SUMMARY_LINE in text else ""

    def start_analysis_service(self) -> ServiceProcess:
        """Start the analysis service and wait until it follows the stream, so that it sees
        the first experiment."""
        service = self._spawn_analysis_service()
        self._printed(service, READY_LINE, "the analysis service")
        return service

    def _spawn_analysis_service(self) -> ServiceProcess:
        assert self.proxy is not None
        return self._spawn(
            "analysis-service",
            self.service_command("analysis-service", "--stream-in", self.proxy.in_address),
        )

    def _printed(self, process: ServiceProcess, prefix: str, what: str) -> str:
        """The first line starting with ``prefix`` that ``process`` writes to its log."""
        log = process.log_path
        line: list[str] = []

        def printed() -> bool:
            line[:] = [text for text in log.read_text().splitlines() if text.startswith(prefix)]
            return bool(line)

        _wait_until(printed, what, self.settings.startup_timeout_s, process)
        return line[0]

    def _environment(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            API_KEY_VARIABLE: self.api_key,
            TILED_KEY_VARIABLE: self.api_key,
            "PYTHONUNBUFFERED": "1",
            **extra,
        }

    def _spawn(
        self,
        name: str,
        command: list[str],
        stop_signal: int = signal.SIGTERM,
        *,
        restart: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> ServiceProcess:
        """Start service ``name``; with ``restart``, started again whenever it dies while the
        stack is up, as a service manager would (the agent service's end is the campaign's)."""
        log_path = self.run_dir / f"{name}.log"
        # A restart appends; a new stack starts the log afresh (its lines are read for
        # readiness, the dashboard's address and the summary).
        log = log_path.open("a" if name in self._processes else "w")
        self._logs.append(log)
        process = ServiceProcess(
            command,
            log_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self._environment(**(env or {})),
            cwd=self.data_dir,
            start_new_session=True,  # its own process group, children and all
        )
        if name not in self._processes:
            self._exit.callback(self._stop, name, stop_signal)
        self._processes[name] = process
        if restart:
            self._restarts[name] = (command, stop_signal, env or {})
        logger.info("started %s (pid %d), log %s", name, process.pid, log_path)
        return process

    def _stop(self, name: str, stop_signal: int) -> None:
        _stop_process(self._processes[name], name, stop_signal)

    def _supervise(self) -> None:
        """Start again each service that died (checked every second) until the stack stops."""
        while not self._stopping.wait(1.0):
            for name, (command, stop_signal, env) in list(self._restarts.items()):
                process = self._processes[name]
                if process.poll() is None or self._stopping.is_set():
                    continue
                self._restarted[name] = self._restarted.get(name, 0) + 1
                if self._restarted[name] > MAX_RESTARTS:
                    logger.error(
                        "%s exited with status %s after %d restarts; not starting it again "
                        "(log %s)",
                        name,
                        process.returncode,
                        MAX_RESTARTS,
                        process.log_path,
                    )
                    del self._restarts[name]
                    continue
                logger.warning(
                    "%s exited with status %s; starting it again (log %s)",
                    name,
                    process.returncode,
                    process.log_path,
                )
                _kill_group(process)  # a queueserver's manager and worker outlive its watchdog
                self._spawn(name, command, stop_signal, env=env)

    def process(self, name: str) -> ServiceProcess:
        """Service ``name``'s process now (``tiled``, ``station-0``, ``analysis-service``...)."""
        return self._processes[name]

    def _spawn_tiled(self) -> ServiceProcess:
        port = free_port(self.settings.host)
        for folder in ("data", "raw"):
            (self.data_dir / folder).mkdir(parents=True, exist_ok=True)
        command = tiled_command(self.settings.postgres, self.data_dir, self.settings.host, port)
        process = self._spawn("tiled", command)
        self.tiled_uri = f"http://{self.settings.host}:{port}"
        return process

    def _await_tiled(self, process: ServiceProcess) -> None:
        _wait_until(
            lambda: httpx.get(f"{self.tiled_uri}/api/v1/").status_code == 200,
            "the tiled server",
            self.settings.startup_timeout_s,
            process,
        )

    @contextmanager
    def _proxy(self) -> Any:
        proxy = StreamProxy(self.settings.host).start()
        try:
            yield proxy
        finally:
            proxy.close()

    def _spawn_station(self, name: str) -> _Station:
        host = self.settings.host
        control = f"tcp://{host}:{free_port(host)}"
        station_dir = self.run_dir / name
        station_dir.mkdir(exist_ok=True)
        permissions = self.run_dir / "user_group_permissions.yaml"
        permissions.write_text(yaml.safe_dump(USER_GROUP_PERMISSIONS))
        assert self.proxy is not None
        prefix = queue_prefix(self.config.name, self.run_dir, name)
        self._exit.callback(_forget_queue, self.settings.redis, prefix)  # after it stops
        info = f"tcp://{host}:{free_port(host)}"
        process = self._spawn(
            name,
            station_command(station_dir, permissions, self.settings.redis, prefix, control, info),
            stop_signal=signal.SIGINT,
            env=station_environment(
                self.campaign_file, name, self.tiled_uri, self.proxy.in_address
            ),
        )
        api = REManagerAPI(zmq_control_addr=control)
        self._exit.callback(_close_environment, api)
        return _Station(name, control, process, api)

    def _write_connection_file(self) -> None:
        assert self.proxy is not None
        write_private_json(
            self.connection_file,
            {
                "campaign": self.config.name,
                "tiled_uri": self.tiled_uri,
                "api_key": self.api_key,
                "stream_in": self.proxy.in_address,
                "stream_out": self.proxy.out_address,
                "stations": self.stations,
                "logs": str(self.run_dir),
            },
        )


def _close_environment(api: REManagerAPI) -> None:
    """Close a station's RunEngine environment (its worker process) before the manager."""
    try:
        if api.status()["worker_environment_exists"]:
            api.environment_close()
            api.wait_for_idle(timeout=30)
    except Exception as error:
        logger.warning("could not close a station's environment cleanly: %s", error)
    finally:
        api.close()


def _forget_queue(address: str, prefix: str) -> None:
    """Delete a stopped station's queue from Redis: the campaign's state is in the catalog."""
    import redis

    host, _, port = address.partition(":")
    client = redis.Redis(host=host, port=int(port or 6379), socket_connect_timeout=3)
    keys = list(client.scan_iter(match=f"{prefix}_*"))
    if keys:
        client.delete(*keys)


def _stop_process(process: subprocess.Popen, name: str, stop_signal: int) -> None:
    if process.poll() is None:
        process.send_signal(stop_signal)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            logger.warning("%s did not stop within 20 s; killing it", name)
            process.kill()
            process.wait()
    _kill_group(process)
    logger.info("%s stopped (exit status %s)", name, process.returncode)


def _kill_group(process: subprocess.Popen) -> None:
    """Kill whatever is left of a stopped service's process group (as systemd kills a unit's
    control group), so that a restart finds its ports free."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # nothing left
