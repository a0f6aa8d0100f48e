"""Start the simulated-lab IOC (``sdl ioc``) in a child process on a free port, for tests and
benchmarks that must talk real Channel Access and stop the IOC again afterwards."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

#: What ``sdl ioc`` prints once its sockets are bound.
READY_LINE = "IOC ready"


class IOCStartError(RuntimeError):
    """The IOC process exited or stayed silent instead of serving; carries its output."""


@dataclass
class IOCProcess:
    """A running IOC: its process, CA port, PV prefix and the client environment to reach it."""

    process: subprocess.Popen[bytes]
    host: str
    port: int
    prefix: str

    @property
    def client_env(self) -> dict[str, str]:
        """Environment for a CA client that must find this IOC and only this IOC."""
        return {"EPICS_CA_ADDR_LIST": f"{self.host}:{self.port}", "EPICS_CA_AUTO_ADDR_LIST": "NO"}

    def kill(self) -> None:
        """Stop the IOC at once, as a crash would."""
        self.process.kill()
        self.process.wait()


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on ``host`` (CA searches on UDP, serves on TCP)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
            return port


@contextmanager
def running_ioc(
    *,
    prefix: str = "SDL:",
    system: str = "tio2_solgel",
    seed: int = 0,
    speedup: float = math.inf,
    host: str = "127.0.0.1",
    port: int | None = None,
    startup_timeout_s: float = 60.0,
    motor_conditions: Sequence[str] = (),
) -> Iterator[IOCProcess]:
    """Run ``sdl ioc`` in a child process until the block ends; raise if it cannot serve.

    ``port`` defaults to a free one; give a previous IOC's port to restart it in its place.
    ``motor_conditions`` are served as motor records (``sdl ioc --motor-conditions``).
    """
    port = port or free_port(host)
    env = {
        **os.environ,
        "EPICS_CA_SERVER_PORT": str(port),
        "EPICS_CAS_INTF_ADDR_LIST": host,
        "EPICS_CAS_BEACON_ADDR_LIST": host,
        "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
    }
    command = [
        sys.executable,
        "-m",
        "sdl.cli",
        "ioc",
        "--prefix",
        prefix,
        "--system",
        system,
        "--seed",
        str(seed),
        "--speedup",
        str(speedup),
        "--host",
        host,
        *(["--motor-conditions", *motor_conditions] if motor_conditions else []),
    ]
    with tempfile.TemporaryDirectory(prefix="sdl-ioc-") as log_dir:
        log_path = Path(log_dir) / "ioc.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        ioc = IOCProcess(process, host, port, prefix)
        try:
            deadline = time.monotonic() + startup_timeout_s
            while READY_LINE not in log_path.read_text(errors="replace"):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise IOCStartError(
                        f"the IOC did not start on {host}:{port}:\n"
                        + log_path.read_text(errors="replace")
                    )
                time.sleep(0.05)
            yield ioc
        finally:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                ioc.kill()
