"""The campaign's catalog: a tiled catalog in a local SQLite file, no server to install.

Layout of a data directory::

    catalog.db    tiled's SQLite catalog (run metadata, the node tree)
    tables.db     SQLite tabular storage (event data: scalars, patterns)
    data/         tiled-managed array storage (zarr)
    raw/          files the instruments write (HDF5 micrographs), registered by reference

Any tiled or databroker client can read it back; :func:`open_catalog` is the shortcut.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from bluesky_tiled_plugins import TiledWriter
from tiled.client import from_context
from tiled.queries import Key

from sdl.records.errors import CatalogError
from sdl.records.lock import exclusive
from sdl.records.vocabulary import CAMPAIGN_ID, FEATURES_STREAM, PURPOSE, ExitStatus, Purpose

CATALOG_FILE = "catalog.db"
TABLES_FILE = "tables.db"
#: Held while a process opens (and perhaps initialises) the catalog.
INIT_LOCK_FILE = ".catalog-init.lock"
#: Folders outside ``data_dir`` whose files the catalog serves (a beamline's detector data),
#: one per line: the catalog server's own configuration, which every reader of it needs.
READABLE_FILE = "readable-storage.txt"


def check_catalog_file(path: Path) -> None:
    """Raise :class:`CatalogError` unless ``path`` is a readable tiled SQLite catalog."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            db.execute("SELECT count(*) FROM nodes").fetchone()
    except sqlite3.Error as error:
        raise CatalogError(
            f"{path} is not a readable tiled catalog ({error}). Nothing was changed; restore "
            "it from a backup, or move the data directory aside to start a new campaign."
        ) from None


def raw_dir(data_dir: Path | str, campaign: str | None = None) -> Path:
    """Where instruments write their files for the catalog in ``data_dir``: one folder per
    ``campaign``, so that a file no run refers to is known to be that campaign's."""
    raw = Path(data_dir) / "raw"
    return raw if campaign is None else raw / campaign


def open_catalog(
    data_dir: Path | str, *, create: bool = False, readable: Iterable[Path | str] = ()
) -> Any:
    """A tiled client of the catalog in ``data_dir``, served in-process (no port is opened).

    Parameters
    ----------
    data_dir
        The campaign's data directory.
    create
        Make an empty catalog if there is none; otherwise a missing catalog is an error.
    readable
        Folders outside ``data_dir`` where runs' files are (a beamline's detectors write
        their own); remembered in ``data_dir``, so every later reader serves them too.
    """
    data_dir = Path(data_dir).resolve()
    catalog_path = data_dir / CATALOG_FILE
    if catalog_path.exists():
        check_catalog_file(catalog_path)
    elif not create:
        raise CatalogError(f"no catalog in {data_dir} (expected {catalog_path})")
    unwritable = f"cannot write a catalog in {data_dir}: choose a data_dir you may write to"
    try:
        for folder in (data_dir / "data", raw_dir(data_dir)):
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CatalogError(f"{unwritable} ({error.strerror}: {error.filename})") from None
    if create and not os.access(data_dir, os.W_OK):
        raise CatalogError(unwritable)
    # The server side (seconds of imports) only where a catalog is served in-process.
    from tiled.catalog import from_uri as catalog_from_uri
    from tiled.client.context import Context
    from tiled.server.app import build_app

    # Two processes starting on a new folder at once must not both initialise it.
    with exclusive(data_dir / INIT_LOCK_FILE):
        adapter = catalog_from_uri(
            f"sqlite:///{catalog_path}",
            writable_storage=[data_dir / "data", f"sqlite:///{data_dir / TABLES_FILE}"],
            readable_storage=[raw_dir(data_dir), *readable_folders(data_dir, readable)],
            # Initialising runs `tiled catalog init` in a subprocess (seconds): only when needed.
            init_if_not_exists=create and not catalog_path.exists(),
        )
    # tiled's app logs its version at INFO on a logger it pins to INFO; in-process that is
    # noise on every campaign's console.
    logging.getLogger("tiled.server.app").setLevel(logging.WARNING)
    app = build_app(adapter)
    app.add_middleware(_StreamCloseAnswered)
    return from_context(Context.from_app(app))


class _StreamCloseAnswered:
    """Answers the "end of stream" requests tiled's writer sends for every node of a run
    (nine an experiment) without routing them.

    The in-process server has no streaming cache and no webhooks, so tiled does nothing with
    them but authenticate, look the node up in the database and answer: tens of ms each, on
    the loop's time (``benchmarks/loop_speed.py``).
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "DELETE"
            and "/api/v1/stream/close/" in scope["path"]
        ):
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await self.app(scope, receive, send)


def readable_folders(data_dir: Path, add: Iterable[Path | str] = ()) -> list[Path]:
    """The folders outside ``data_dir`` its catalog serves files from, ``add`` remembered."""
    listed = data_dir / READABLE_FILE
    folders = listed.read_text().split("\n") if listed.exists() else []
    new = [str(Path(f).resolve()) for f in add if str(Path(f).resolve()) not in folders]
    if new:  # replaced whole, never half-written
        temporary = listed.with_name(f".{listed.name}.new")
        temporary.write_text("\n".join([*folders, *new]).strip() + "\n")
        os.replace(temporary, listed)
    return [Path(folder) for folder in (*folders, *new) if folder]


def make_writer(client: Any) -> TiledWriter:
    """A Bluesky callback that writes every document it is given into ``client``."""
    return TiledWriter(client)


def campaign_runs(client: Any, campaign_id: str, purpose: Purpose) -> list[Any]:
    """Runs of one campaign with the given purpose, in the order they started."""
    results = client.search(Key(f"start.{CAMPAIGN_ID}") == campaign_id).search(
        Key(f"start.{PURPOSE}") == purpose
    )
    runs = list(results.values())
    return sorted(runs, key=lambda run: run.metadata["start"]["time"])


def exit_status(run: Any) -> ExitStatus | None:
    """A run's exit status, or None if it never stopped."""
    stop = run.metadata.get("stop")  # absent if the process died during the run
    return stop["exit_status"] if stop else None


def recorded_features(run: Any) -> dict[str, float]:
    """The features an analysis run recorded (its one ``features`` event)."""
    features = run[FEATURES_STREAM].read()
    return {key: float(np.asarray(features[key])[0]) for key in features.data_vars}


class BackgroundWriter:
    """Writes documents to the catalog on its own thread, in the order they were given.

    The loop then never waits for the catalog while instruments work: it hands each document
    over and goes on. ``after(name, doc)`` is called once a document is in the catalog. A
    write that fails is logged and kept as :attr:`error`, and nothing after it is written, so
    the catalog never holds a run with a hole in it; the campaign checks :attr:`error`
    between steps and stops. :meth:`flush` waits until every document given before the call
    is written: the campaign flushes before it counts an experiment as finished, so what a
    person was shown as done is in the catalog.
    """

    def __init__(
        self,
        write: Callable[[str, Mapping[str, Any]], Any],
        after: Callable[[str, Mapping[str, Any]], Any] | None = None,
    ) -> None:
        self._write = write
        self._after = after
        self._documents: queue.SimpleQueue[tuple[str, Mapping[str, Any]] | None] = (
            queue.SimpleQueue()
        )
        self._progress = threading.Condition()
        self._given = 0  # documents handed over so far
        self._handled = 0  # of those, written (or passed over after an error)
        self.error: BaseException | None = None
        self._inline = False
        self._thread = threading.Thread(target=self._work, name="sdl-catalog-writer", daemon=True)
        self._thread.start()

    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:
        if self._inline:
            self._write_one((name, doc))
            return
        with self._progress:
            self._given += 1
        self._documents.put((name, doc))

    def flush(self) -> None:
        """Wait until every document given before this call is written (or :attr:`error`
        says why it was not); documents given meanwhile by other threads are not waited for."""
        with self._progress:
            target = self._given
            self._progress.wait_for(lambda: self._handled >= target)

    @contextlib.contextmanager
    def inline(self) -> Any:
        """Write in the calling thread for a while: for work that reads the catalog between
        its writes (SQLite refuses a read while another thread writes)."""
        self.flush()
        self._inline = True
        try:
            yield
        finally:
            self._inline = False

    def close(self) -> None:
        self.flush()
        self._documents.put(None)
        self._thread.join()

    def _work(self) -> None:
        while (item := self._documents.get()) is not None:
            try:
                self._write_one(item)
            finally:
                with self._progress:
                    self._handled += 1
                    self._progress.notify_all()

    def _write_one(self, item: tuple[str, Mapping[str, Any]]) -> None:
        if self.error is not None:
            return
        try:
            self._write(*item)
            if self._after is not None:
                self._after(*item)
        except Exception as error:
            logging.getLogger(__name__).exception(
                "could not write a %s document to the catalog; writing stops", item[0]
            )
            self.error = error


def orphaned_files(client: Any, name: str, directory: Path) -> list[Path]:
    """Files in campaign ``name``'s instrument folder that none of its runs refers to.

    A device writes its file before the run's documents that refer to it reach the
    catalog; a crash in between leaves the file behind.
    """
    files = sorted(path for path in directory.glob("*") if path.is_file())
    if not files:
        return []
    referenced: set[Path] = set()
    for run in campaign_runs(client, name, Purpose.EXPERIMENT):
        referenced |= _referenced_files(run)
    return [path for path in files if path.resolve() not in referenced]


def _referenced_files(run: Any) -> set[Path]:
    """The files an experiment run's external data (images) live in."""
    if "primary" not in run:
        return set()
    stream = run["primary"]
    files = set()
    for key, data_key in stream.metadata["data_keys"].items():
        if data_key.get("external") and key in stream:
            for source in stream[key].data_sources():
                files |= {Path(urlsplit(asset.data_uri).path) for asset in source.assets}
    return files
