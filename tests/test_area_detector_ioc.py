"""The areaDetector-style IOC, driven over loopback Channel Access by ophyd's own area-detector
classes (SimDetectorCam, HDF5Plugin with FileStoreHDF5IterativeWrite, SingleTrigger)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np
import pytest
from area_detector_handlers.handlers import AreaDetectorHDF5Handler
from bluesky.plans import count
from caproto import CAStatus
from caproto.asyncio.server import start_server
from caproto.sync.client import read as ca_read
from caproto.sync.client import write as ca_write
from event_model import Filler
from ophyd import Component as Cpt
from ophyd import EpicsSignalRO
from ophyd.areadetector import DetectorBase, SimDetectorCam, SingleTrigger
from ophyd.areadetector.filestore_mixins import FileStoreHDF5IterativeWrite
from ophyd.areadetector.plugins import HDF5Plugin
from ophyd.utils.errors import LimitError

from devices.epics import use_caproto
from devices.hdf5_frames import FRAMES_DATASET
from sdl.facility.ioc_process import free_port
from sdl.records.catalog import make_writer, open_catalog, raw_dir
from simulators.area_detector_ioc import AreaDetectorPVs
from simulators.clock import SimClock

pytestmark = pytest.mark.epics

HOST = "127.0.0.1"
FRAME_SHAPE = (48, 64)
PIXEL_SIZE_NM = 5.0
#: Only a guard against hangs: every wait here ends in milliseconds when things work.
HANG_GUARD_S = 60.0


class FrameSource:
    """Seeded frames, every one kept to compare with what comes back; fails on demand."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng(2024)
        self.frames: list[np.ndarray] = []
        self.failure = ""

    def __call__(self) -> tuple[np.ndarray, float]:
        if self.failure:
            raise RuntimeError(self.failure)
        frame = (1000 * self.rng.random(FRAME_SHAPE)).astype(np.float32)
        self.frames.append(frame)
        return frame, PIXEL_SIZE_NM


class FileStoreHDF5Plugin(HDF5Plugin, FileStoreHDF5IterativeWrite):
    pass


class Camera(SingleTrigger, DetectorBase):
    cam = Cpt(SimDetectorCam, "cam1:")
    hdf5 = Cpt(FileStoreHDF5Plugin, "HDF1:", write_path_template="/")
    pixel_size = Cpt(EpicsSignalRO, "cam1:PixelSize_RBV")


@contextmanager
def serving(pvdb: dict):
    """Serve ``pvdb`` from a thread of this process until the block ends."""
    started = threading.Event()
    running: dict = {}

    async def on_started(async_lib) -> None:
        started.set()

    async def serve() -> None:
        running["loop"], running["stop"] = asyncio.get_running_loop(), asyncio.Event()
        server = asyncio.create_task(start_server(pvdb, interfaces=[HOST], startup_hook=on_started))
        stop = asyncio.create_task(running["stop"].wait())
        await asyncio.wait([server, stop], return_when=asyncio.FIRST_COMPLETED)
        if server.done():  # it could not serve
            running["error"] = server.exception()
            started.set()
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(HANG_GUARD_S), "the IOC did not start"
    if "error" in running:
        pytest.skip(f"caproto cannot serve Channel Access on {HOST}: {running['error']}")
    try:
        yield
    finally:
        running["loop"].call_soon_threadsafe(running["stop"].set)
        thread.join(HANG_GUARD_S)


@pytest.fixture
def ioc(monkeypatch):
    """The camera IOC on a free port of 127.0.0.1, with a prefix of its own (CA caches names)."""
    port = free_port(HOST)
    for key, value in {
        "EPICS_CA_SERVER_PORT": str(port),
        "EPICS_CAS_INTF_ADDR_LIST": HOST,
        "EPICS_CAS_BEACON_ADDR_LIST": HOST,
        "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
        "EPICS_CA_ADDR_LIST": f"{HOST}:{port}",
        "EPICS_CA_AUTO_ADDR_LIST": "NO",
    }.items():
        monkeypatch.setenv(key, value)
    use_caproto()
    # Exposures pass in real time (0.1 s by default): ophyd's SingleTrigger loses its Status
    # to an acquisition that ends before trigger() returns.
    group = AreaDetectorPVs(
        prefix=f"T{uuid.uuid4().hex[:6]}:", frame_source=FrameSource(), clock=SimClock(1.0)
    )
    with serving(group.pvdb):
        yield group


def camera(ioc: AreaDetectorPVs, write_dir: Path) -> Camera:
    """The camera, its plugin primed with one frame as ``HDF5Plugin.stage()`` requires."""
    det = Camera(ioc.prefix, name="det", read_attrs=["hdf5", "pixel_size"])
    det.wait_for_connection(timeout=HANG_GUARD_S)
    det.hdf5.write_path_template = str(write_dir)
    det.hdf5.enable.set("Enable").wait(HANG_GUARD_S)
    # HDF5Plugin.warmup() does this with seconds of sleeps; put-completion says when it is done.
    acquired = threading.Event()
    det.cam.acquire.put(1, use_complete=True, callback=acquired.set)
    assert acquired.wait(HANG_GUARD_S)
    return det


def documents_of(RE, plan) -> list[tuple[str, dict]]:
    documents: list[tuple[str, dict]] = []
    RE(plan, lambda name, doc: documents.append((name, doc)))
    return documents


@pytest.mark.parametrize("num_images", [1, 3])
def test_count_stores_frames_in_hdf5_and_the_documents_point_to_them(ioc, tmp_path, RE, num_images):
    (tmp_path / "frames").mkdir()
    det = camera(ioc, tmp_path / "frames")
    det.cam.stage_sigs["num_images"] = num_images
    documents = documents_of(RE, count([det], num=2))

    taken = ioc.frame_source.frames[1:]  # the first primed the plugin
    assert len(taken) == 2 * num_images
    (resource,) = [doc for name, doc in documents if name == "resource"]
    assert resource["spec"] == "AD_HDF5"
    assert resource["resource_kwargs"] == {"frame_per_point": num_images}
    file_path = Path(resource["root"]) / resource["resource_path"]
    with h5py.File(file_path, "r") as file:
        np.testing.assert_array_equal(file[FRAMES_DATASET][()], np.stack(taken))
    datums = [doc for name, doc in documents if name == "datum"]
    assert [datum["datum_kwargs"] for datum in datums] == [{"point_number": 0}, {"point_number": 1}]

    (descriptor,) = [doc for name, doc in documents if name == "descriptor"]
    image_key = descriptor["data_keys"]["det_image"]
    assert list(image_key["shape"]) == [num_images, *FRAME_SHAPE]
    assert image_key["external"] == "FILESTORE:" and image_key["dtype_numpy"] == "<f4"

    events = []
    with Filler({"AD_HDF5": AreaDetectorHDF5Handler}, inplace=False) as filler:
        for name, doc in documents:
            name, doc = filler(name, doc)
            if name == "event":
                events.append(doc)
    for point, event in enumerate(events):
        expected = np.stack(taken[point * num_images : (point + 1) * num_images])
        np.testing.assert_array_equal(event["data"]["det_image"], expected)
        assert event["data"]["det_pixel_size"] == PIXEL_SIZE_NM
    assert det.cam.detector_state.get(as_string=True) == "Idle"
    assert det.hdf5.capture.get() == 0  # unstaged: the file is closed


def test_missing_directories_are_created_as_create_directory_allows(ioc, tmp_path):
    def put_path(path: Path, create_directory: int) -> bool:
        ca_write(f"{ioc.prefix}HDF1:CreateDirectory", create_directory, notify=True)
        ca_write(f"{ioc.prefix}HDF1:FilePath", str(path), notify=True)
        assert ca_read(f"{ioc.prefix}HDF1:FilePath_RBV").data.tobytes().decode() == f"{path}/"
        return ca_read(f"{ioc.prefix}HDF1:FilePathExists_RBV").data[0] == b"Yes"

    assert not put_path(tmp_path / "a" / "b", 0)
    assert not put_path(tmp_path / "a" / "b", -1) and not (tmp_path / "a").exists()
    assert put_path(tmp_path / "a" / "b", -2) and (tmp_path / "a" / "b").is_dir()


def test_acquire_time_beyond_its_drive_limits_is_refused_at_once(ioc, tmp_path):
    det = camera(ioc, tmp_path)
    assert det.cam.acquire_time.limits == (1e-3, 60.0)
    # ophyd checks a SignalWithRBV against the IOC's limits only when asked; otherwise it
    # would wait for a read-back that never comes until the set()'s own timeout.
    det.cam.acquire_time.use_limits = True
    with pytest.raises(LimitError):
        det.cam.acquire_time.set(1e6).wait(HANG_GUARD_S)
    # The IOC's own answer, to a client that waits for put-completion: ECA_PUTFAIL, not silence.
    response = ca_write(f"{ioc.prefix}cam1:AcquireTime", 1e6, notify=True, timeout=HANG_GUARD_S)
    assert response.status == CAStatus.ECA_PUTFAIL.value
    assert det.cam.acquire_time.get() == pytest.approx(0.1)


def test_failing_frame_source_ends_the_acquisition_with_an_error_state(ioc, tmp_path):
    det = camera(ioc, tmp_path)
    det.stage()
    try:
        ioc.frame_source.failure = "no sample on the stage"
        captured = det.hdf5.num_captured.get()
        status = det.trigger()
        status.wait(HANG_GUARD_S)
        # ophyd's SingleTrigger watches only Acquire going 1 -> 0, so its Status finishes
        # *successfully*: the failure is in the camera's state, which a client must read.
        assert status.success
        assert det.cam.detector_state.get(as_string=True) == "Error"
        assert "no sample on the stage" in det.cam.status_message.get()
        assert det.cam.acquire.get() == 0
        assert det.hdf5.num_captured.get() == captured  # no frame written

        ioc.frame_source.failure = ""
        det.trigger().wait(HANG_GUARD_S)
        assert det.cam.detector_state.get(as_string=True) == "Idle"
        assert det.hdf5.num_captured.get() == captured + 1
    finally:
        det.unstage()


def test_tiled_writer_stores_the_images_and_reads_them_back(ioc, data_dir, RE):
    client = open_catalog(data_dir)
    det = camera(ioc, raw_dir(data_dir))
    RE.subscribe(make_writer(client))
    (uid,) = RE(count([det], num=2))
    primary = client[uid]["primary"]
    images = np.asarray(primary["det_image"].read())  # events x num_images x rows x columns
    np.testing.assert_array_equal(images, np.stack(ioc.frame_source.frames[1:])[:, None])
    assert list(primary["det_pixel_size"].read()) == [PIXEL_SIZE_NM, PIXEL_SIZE_NM]
