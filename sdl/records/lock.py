"""One writer per campaign: a second process on the same campaign stops at once, naming the first.

Both locks here are released by the operating system or by the database the moment their
holder dies, so a lock left by a killed process never blocks a restart: it is recognised as
stale because nobody holds it any more.

* :func:`data_dir_lock` takes ``fcntl.flock`` on ``DATA_DIR/NAME.lock``: the embedded
  SQLite catalog, and every deployment whose writers share the data directory.
* :func:`postgres_lock` takes a session-level advisory lock in the catalog's PostgreSQL
  database: writers on different hosts that share only the catalog.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import getpass
import hashlib
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sdl.records.errors import CampaignLocked

logger = logging.getLogger(__name__)


def holder_description() -> dict[str, Any]:
    """Who this process is, for the message another process shows when it finds the lock."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "user": getpass.getuser(),
        "since": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "command": " ".join(sys.argv)[:300],
    }


def _describe(holder: dict[str, Any]) -> str:
    return (
        f"process {holder.get('pid', '?')} of {holder.get('user', '?')} on "
        f"{holder.get('host', '?')} (since {holder.get('since', '?')}: "
        f"{holder.get('command') or 'no command line'})"
    )


def lock_file(data_dir: Path | str, campaign: str) -> Path:
    """The file whose lock marks ``campaign`` in ``data_dir`` as running."""
    return Path(data_dir) / f"{campaign}.lock"


@contextlib.contextmanager
def data_dir_lock(data_dir: Path | str, campaign: str) -> Iterator[None]:
    """Hold the campaign's lock file in ``data_dir`` for the duration of the block.

    Raises
    ------
    CampaignLocked
        Another process holds it; the message names that process.
    """
    path = lock_file(data_dir, campaign)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise CampaignLocked(
                f"campaign {campaign!r} in {Path(data_dir)} is already being run by "
                f"{_describe(_read_holder(fd))}; stop it first (sdl control ... abort), or "
                "choose another name or data_dir"
            ) from None
        left = _read_holder(fd)
        if left:
            logger.info("took over the lock of campaign %s left by %s", campaign, _describe(left))
        _write_holder(fd, holder_description())
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # an empty file: nobody left it behind
    finally:
        os.close(fd)  # closing releases the lock


def _read_holder(fd: int) -> dict[str, Any]:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 4096).decode("utf-8", errors="replace")
    try:
        holder = json.loads(text)
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _write_holder(fd: int, holder: dict[str, Any]) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps(holder).encode())
    os.fsync(fd)


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold ``path``'s lock for the block, waiting for it if another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def advisory_key(campaign: str) -> int:
    """A stable signed 64-bit key for PostgreSQL's advisory locks, from the campaign name."""
    digest = hashlib.blake2b(f"sdl-campaign:{campaign}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextlib.contextmanager
def postgres_lock(uri: str, campaign: str, timeout_s: float = 30.0) -> Iterator[None]:
    """Hold a PostgreSQL advisory lock on ``campaign`` for the duration of the block.

    The lock lives in the database session of one connection kept open on a thread of its
    own; the database drops it with the connection when this process dies.

    Raises
    ------
    CampaignLocked
        Another session holds it; the message names that session's process and host.
    """
    import asyncpg  # tiled's own PostgreSQL driver

    key = advisory_key(campaign)
    holder = holder_description()
    name = f"sdl {campaign} pid {holder['pid']} on {holder['host']}"[:63]
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="sdl-campaign-lock", daemon=True)
    thread.start()

    def call(coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout_s)

    connection = None
    try:
        connection = call(
            asyncpg.connect(
                uri.replace("postgresql+asyncpg://", "postgresql://"),
                server_settings={"application_name": name},
                timeout=timeout_s,
            )
        )
        if not call(connection.fetchval("SELECT pg_try_advisory_lock($1)", key)):
            holders = call(
                connection.fetch(
                    "SELECT a.application_name, a.client_addr, a.backend_start "
                    "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.locktype = 'advisory' AND l.granted "
                    "AND l.classid = (($1::bigint >> 32) & 4294967295)::oid "
                    "AND l.objid = ($1::bigint & 4294967295)::oid",
                    key,
                )
            )
            who = "; ".join(
                f"{row['application_name'] or 'a session'} from {row['client_addr'] or 'local'} "
                f"(since {row['backend_start']:%Y-%m-%d %H:%M:%S})"
                for row in holders
            )
            raise CampaignLocked(
                f"campaign {campaign!r} is already being run against this catalog by "
                f"{who or 'another session'}; stop it first, or choose another name"
            )
        yield
    finally:
        if connection is not None:
            with contextlib.suppress(Exception):
                call(connection.close())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()
