"""Images go to HDF5 files and into the run as Resource/Datum references, as area detectors do."""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from simulators.hdf5_layout import FRAMES_DATASET


class HDF5FrameWriter:
    """Appends frames to one HDF5 file per staging and queues the asset documents for them.

    The owning device calls :meth:`open` in ``stage()``, :meth:`write` in ``trigger()`` and
    :meth:`close` in ``unstage()``, and yields :meth:`collect_asset_docs` from its own.
    """

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self._file: h5py.File | None = None
        self._resource_uid = ""
        self._frame_count = 0
        self._asset_docs: deque[tuple[str, dict[str, Any]]] = deque()

    def open(self, frame_shape: tuple[int, ...], dtype: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._resource_uid = str(uuid.uuid4())
        file_name = f"{self._resource_uid}.h5"
        self._file = h5py.File(self.directory / file_name, "w")
        self._file.create_dataset(
            FRAMES_DATASET,
            shape=(0, *frame_shape),
            maxshape=(None, *frame_shape),
            dtype=dtype,
            chunks=(1, *frame_shape),
        )
        self._frame_count = 0
        self._asset_docs.append(
            (
                "resource",
                {
                    "uid": self._resource_uid,
                    "spec": "AD_HDF5",
                    "root": str(self.directory.resolve()),
                    "resource_path": file_name,
                    "resource_kwargs": {},
                    "path_semantics": "posix",
                },
            )
        )

    def write(self, frame: np.ndarray) -> str:
        """Append one frame; return the datum id that the image signal must read back."""
        if self._file is None:
            raise RuntimeError("HDF5FrameWriter.write() before open(): stage the device first")
        dataset = self._file[FRAMES_DATASET]
        dataset.resize(self._frame_count + 1, axis=0)
        dataset[self._frame_count] = frame
        self._file.flush()
        datum_id = f"{self._resource_uid}/{self._frame_count}"
        self._asset_docs.append(
            (
                "datum",
                {
                    "resource": self._resource_uid,
                    "datum_id": datum_id,
                    "datum_kwargs": {"point_number": self._frame_count},
                },
            )
        )
        self._frame_count += 1
        return datum_id

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def collect_asset_docs(self) -> Iterator[tuple[str, dict[str, Any]]]:
        while self._asset_docs:
            yield self._asset_docs.popleft()
