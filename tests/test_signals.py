"""Safe limits and units on device signals; HDF5 frames referenced by Resource/Datum."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from ophyd.utils.errors import LimitError

from devices.hdf5_frames import FRAMES_DATASET, HDF5FrameWriter
from devices.signals import LimitedSignal


def test_limited_signal_accepts_the_edges_and_refuses_beyond():
    signal = LimitedSignal(name="t", limits=(200.0, 1000.0), units="degC")
    signal.put(200.0)
    signal.put(1000.0)
    with pytest.raises(LimitError, match=r"t=1000.5 degC is outside the safe range \[200, 1000\]"):
        signal.put(1000.5)
    assert signal.get() == 1000.0


def test_limited_signal_needs_ordered_limits():
    with pytest.raises(ValueError, match="low < high"):
        LimitedSignal(name="t", limits=(5.0, 5.0), units="h")


def test_frames_append_to_one_file_with_one_datum_each(tmp_path):
    writer = HDF5FrameWriter(tmp_path)
    writer.open((4, 3), "<f4")
    ids = [writer.write(np.full((4, 3), i, dtype="f4")) for i in range(3)]
    writer.close()
    docs = list(writer.collect_asset_docs())
    assert [name for name, _ in docs] == ["resource", "datum", "datum", "datum"]
    resource = docs[0][1]
    assert [doc["datum_id"] for _, doc in docs[1:]] == ids
    assert [doc["datum_kwargs"]["point_number"] for _, doc in docs[1:]] == [0, 1, 2]
    with h5py.File(tmp_path / resource["resource_path"]) as file:
        assert file[FRAMES_DATASET][()][:, 0, 0].tolist() == [0.0, 1.0, 2.0]


def test_writing_before_open_is_an_error(tmp_path):
    with pytest.raises(RuntimeError, match="stage the device first"):
        HDF5FrameWriter(tmp_path).write(np.zeros((2, 2)))
