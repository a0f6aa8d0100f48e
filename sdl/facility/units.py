"""``sdl units``: a campaign's facility deployment as systemd units, one per service.

``sdl stack`` runs every service as its own child on one host; a facility runs them under its
service manager instead, each restarted when it fails and each free to live on another host.
This writes, for one campaign, a unit per service (the tiled catalog server, the stream proxy,
one queueserver per station, the analysis service, the agent service), a target that starts
them together, the environment file that holds the tiled API key (owner-only), and the
campaign file they all read. Every service picks up where the campaign is when it starts
again: the agent service resumes from the catalog, the analysis service analyses the raw runs
that ended while it was down, and the agent opens a restarted station's RunEngine environment.
"""

from __future__ import annotations

import os
import secrets
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from sdl.campaign.config import CampaignConfig
from sdl.facility.commands import (
    API_KEY_VARIABLE,
    TILED_KEY_VARIABLE,
    USER_GROUP_PERMISSIONS,
    proxy_command,
    queue_prefix,
    service_command,
    station_command,
    station_environment,
    tiled_command,
)


@dataclass(frozen=True)
class UnitSettings:
    """Where each service listens; a facility gives fixed ports, so that services find each
    other after any restart. Station ``i`` controls on ``station_port + 2i`` and publishes
    its status on the port after it."""

    stations: int = 1
    redis: str = "127.0.0.1:6379"
    postgres: str = "postgresql://postgres@127.0.0.1:5432/sdl"
    host: str = "127.0.0.1"
    tiled_port: int = 8000
    stream_in_port: int = 5577
    stream_out_port: int = 5578
    station_port: int = 60615
    user: str | None = None

    @property
    def tiled_uri(self) -> str:
        return f"http://{self.host}:{self.tiled_port}"

    def station_address(self, index: int) -> str:
        return f"tcp://{self.host}:{self.station_port + 2 * index}"


def write_units(config: CampaignConfig, settings: UnitSettings, out: Path) -> list[Path]:
    """Write the units of ``config``'s deployment into ``out``; the files written. An
    environment file already there keeps its API key, so clients keep working."""
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    data_dir = Path(config.data_dir).resolve()
    for folder in (data_dir, data_dir / "data", data_dir / "raw"):
        folder.mkdir(parents=True, exist_ok=True)
    name = f"sdl-{config.name}"
    campaign_file = out / "campaign.yaml"
    located = config.model_copy(update={"data_dir": str(data_dir)})
    campaign_file.write_text(yaml.safe_dump(located.model_dump(mode="json")))
    environment_file = _write_environment(out / f"{name}.env")
    permissions = out / "user_group_permissions.yaml"
    permissions.write_text(yaml.safe_dump(USER_GROUP_PERMISSIONS))

    host = settings.host
    stream_in = f"tcp://{host}:{settings.stream_in_port}"
    stream_out = f"tcp://{host}:{settings.stream_out_port}"
    unit = _UnitWriter(name, data_dir, environment_file, settings.user)
    services = {
        "tiled": unit.service(
            "the tiled catalog server (PostgreSQL)",
            tiled_command(settings.postgres, data_dir, host, settings.tiled_port),
            after=["postgresql.service"],
        ),
        "stream": unit.service(
            "the document stream's proxy",
            proxy_command(host, settings.stream_in_port, settings.stream_out_port),
        ),
    }
    stations = {}
    for index in range(settings.stations):
        station = f"station-{index}"
        station_dir = out / station
        station_dir.mkdir(exist_ok=True)
        control = settings.station_address(index)
        info = f"tcp://{host}:{settings.station_port + 2 * index + 1}"
        prefix = queue_prefix(config.name, out, station)
        services[station] = unit.service(
            f"{station}'s bluesky-queueserver (Redis {settings.redis})",
            station_command(station_dir, permissions, settings.redis, prefix, control, info),
            after=["redis-server.service", f"{name}-tiled.service", f"{name}-stream.service"],
            environment=station_environment(campaign_file, station, settings.tiled_uri, stream_in),
            stop_signal="SIGINT",
        )
        stations[station] = control
    services["analysis"] = unit.service(
        "the analysis service",
        service_command(
            "analysis-service",
            campaign_file,
            settings.tiled_uri,
            stream_out,
            "--stream-in",
            stream_in,
        ),  # fmt: skip
        after=[f"{name}-tiled.service", f"{name}-stream.service"],
    )
    services["agent"] = unit.service(
        "the agent service (the campaign's closed loop; it ends with the campaign)",
        service_command(
            "agent-service",
            campaign_file,
            settings.tiled_uri,
            stream_out,
            *(f"--station={station}={address}" for station, address in stations.items()),
            f"--lock-database={settings.postgres}",
        ),
        after=[f"{name}-{service}.service" for service in services],
        stop_signal="SIGINT",
    )
    written = [campaign_file, environment_file, permissions]
    for service, text in services.items():
        path = out / f"{name}-{service}.service"
        path.write_text(text)
        written.append(path)
    target = out / f"{name}.target"
    target.write_text(
        f"[Unit]\nDescription=SDL campaign {config.name}: every service of its deployment\n"
        f"Wants={' '.join(f'{name}-{service}.service' for service in services)}\n\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )
    return [*written, target]


@dataclass(frozen=True)
class _UnitWriter:
    name: str
    data_dir: Path
    environment_file: Path
    user: str | None

    def service(
        self,
        description: str,
        command: list[str],
        *,
        after: Sequence[str] = (),
        environment: dict[str, str] | None = None,
        stop_signal: str = "SIGTERM",
    ) -> str:
        """One service's unit: restarted on failure, stopped with its target."""
        lines = [
            "[Unit]",
            f"Description=SDL campaign {self.name.removeprefix('sdl-')}: {description}",
            f"After=network-online.target {' '.join(after)}".rstrip(),
            "Wants=network-online.target",
            f"PartOf={self.name}.target",
            "",
            "[Service]",
            "Type=simple",
            *([f"User={self.user}"] if self.user else []),
            f"WorkingDirectory={self.data_dir}",
            f"EnvironmentFile={self.environment_file}",
            "Environment=PYTHONUNBUFFERED=1",
            *(
                f"Environment={key}={shlex.quote(value)}"
                for key, value in (environment or {}).items()
            ),
            f"ExecStart={shlex.join(command)}",
            "Restart=on-failure",
            "RestartSec=5",
            f"KillSignal={stop_signal}",
            "TimeoutStopSec=30",
            "",
            "[Install]",
            f"WantedBy={self.name}.target",
            "",
        ]
        return "\n".join(lines)


def _write_environment(path: Path) -> Path:
    """The owner-only file of the tiled API key, for the server and every client service."""
    key = secrets.token_hex(16)
    if path.exists():
        for line in path.read_text().splitlines():
            if line.startswith(f"{API_KEY_VARIABLE}="):
                key = line.split("=", 1)[1]
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(f"{API_KEY_VARIABLE}={key}\n{TILED_KEY_VARIABLE}={key}\n")
    os.chmod(path, 0o600)
    return path
