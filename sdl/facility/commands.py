"""The command lines of a facility deployment's services, one place for both ways to run them.

``sdl stack`` starts these commands as its children on one host; ``sdl units`` writes them
into systemd units, so that the facility's service manager starts, restarts and stops each
one, on whichever host it belongs. Secrets never go on a command line (any user of the host
can read those): the tiled API key travels in the environment.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from urllib.parse import urlsplit

#: Where this Python's console scripts (tiled, start-re-manager) are.
BIN = Path(sys.executable).parent

#: Where services find the tiled server's API key.
API_KEY_VARIABLE = "SDL_TILED_API_KEY"

#: What the analysis service prints once it follows the stream.
READY_LINE = "analysis service ready"

#: What the agent service prints before its summary (which ``sdl stack`` passes on).
SUMMARY_LINE = "campaign summary:"

#: Where ``tiled serve`` finds it.
TILED_KEY_VARIABLE = "TILED_SINGLE_USER_API_KEY"

#: The queueserver startup module of a station (its RunEngine, devices and plan).
STARTUP_MODULE = "sdl.facility.qserver_startup"

#: Queueserver permissions: the campaign's own plan and devices only.
USER_GROUP_PERMISSIONS = {
    "user_groups": {
        "root": {
            "allowed_plans": [None],
            "forbidden_plans": [":^_"],
            "allowed_devices": [None],
            "forbidden_devices": [":^_:?.*"],
            "allowed_functions": [None],
            "forbidden_functions": [":^_"],
        },
        "primary": {
            "allowed_plans": [":^sdl_experiment$"],
            "forbidden_plans": [None],
            "allowed_devices": [":?.*:depth=5"],
            "forbidden_devices": [None],
            "allowed_functions": [None],
            "forbidden_functions": [None],
        },
    }
}


def tiled_command(postgres: str, data_dir: Path, host: str, port: int) -> list[str]:
    """``tiled serve catalog`` on the PostgreSQL database ``postgres`` (created tables on
    first start), writing arrays under ``data_dir/data`` and serving the instruments' files
    from ``data_dir/raw``; its API key from ``TILED_SINGLE_USER_API_KEY``."""
    catalog = urlsplit(postgres)._replace(scheme="postgresql+asyncpg").geturl()
    return [
        str(BIN / "tiled"),
        "serve",
        "catalog",
        catalog,
        "--init",
        "-w",
        str(data_dir / "data"),
        "-w",
        postgres,
        "-r",
        str(data_dir / "raw"),
        "--host",
        host,
        "--port",
        str(port),
    ]


def proxy_command(host: str, in_port: int, out_port: int) -> list[str]:
    """``sdl stream-proxy``: the document stream's forwarder on fixed ports."""
    return [
        sys.executable,
        "-m",
        "sdl.cli",
        "stream-proxy",
        "--host",
        host,
        f"--in-port={in_port}",
        f"--out-port={out_port}",
    ]


def queue_prefix(campaign: str, run_dir: Path, station: str) -> str:
    """A station's names in Redis: two deployments of one campaign name (from two data
    directories) on one Redis must not share a station's queue."""
    deployment = hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:10]
    return f"sdl_{campaign}_{deployment}_{station}"


def station_command(
    station_dir: Path, permissions: Path, redis: str, prefix: str, control: str, info: str
) -> list[str]:
    """A station's bluesky-queueserver (``start-re-manager``) with our startup module."""
    return [
        str(BIN / "start-re-manager"),
        "--startup-module",
        STARTUP_MODULE,
        "--existing-plans-devices",
        str(station_dir / "existing_plans_and_devices.yaml"),
        "--update-existing-plans-devices",
        "ENVIRONMENT_OPEN",
        "--user-group-permissions",
        str(permissions),
        "--redis-addr",
        redis,
        "--redis-name-prefix",
        prefix,
        "--zmq-control-addr",
        control,
        "--zmq-info-addr",
        info,
        "--zmq-publish-console",
        "OFF",
    ]


def station_environment(
    campaign_file: Path, station: str, tiled_uri: str, stream_in: str
) -> dict[str, str]:
    """What :mod:`sdl.facility.qserver_startup` reads (the API key aside)."""
    return {
        "SDL_CAMPAIGN": str(campaign_file),
        "SDL_STATION": station,
        "SDL_TILED_URI": tiled_uri,
        "SDL_STREAM": stream_in,
    }


def service_command(
    service: str, campaign_file: Path, tiled_uri: str, stream_out: str, *extra: str
) -> list[str]:
    """``sdl analysis-service`` or ``sdl agent-service`` for the campaign at ``campaign_file``."""
    return [
        sys.executable,
        "-m",
        "sdl.cli",
        service,
        str(campaign_file),
        "--tiled",
        tiled_uri,
        "--stream-out",
        stream_out,
        *extra,
    ]
