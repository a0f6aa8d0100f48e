# mypy: disable-error-code="no-redef"
# (caproto's putters re-use the pvproperty's name: ``@name.putter``)
"""An areaDetector camera served over Channel Access (caproto): an ADSimDetector's ``cam1:`` and
an NDFileHDF5 plugin's ``HDF1:`` in Stream mode.

It speaks the records areaDetector has, so ophyd's own classes (``SimDetectorCam``,
``HDF5Plugin`` with ``FileStoreHDF5IterativeWrite``, ``SingleTrigger``) drive a simulated
camera exactly as they drive a beamline's, and the run holds Resource/Datum documents (spec
``AD_HDF5``) that point into HDF5 files laid out as areaDetector writes them.

What ophyd relies on, and this IOC does as areaDetector does:

* A put of 1 to ``cam1:Acquire`` sets ``Acquire_RBV`` and ``DetectorState_RBV`` (Acquire),
  takes one frame (``ImageMode`` Single), ``NumImages`` frames (Multiple) or frames until
  ``Acquire`` is 0 (Continuous), each costing ``AcquireTime`` on the :class:`SimClock`, hands
  each to the plugin, then sets ``DetectorState_RBV`` Idle and ``Acquire_RBV`` back to 0; the
  put completes only then. ``SingleTrigger`` finishes its Status on that 1 -> 0 edge.
* A frame source that raises ends the acquisition the same way, with ``DetectorState_RBV``
  Error and the reason in ``StatusMessage_RBV``, and no frame written. ophyd's
  ``SingleTrigger`` then finishes its Status as done: a client must read ``DetectorState_RBV``.
* The plugin is unprimed (``ArraySize0/1_RBV`` 0, which ``HDF5Plugin.stage`` refuses) until
  a frame has reached it, since the file's dataset takes that frame's shape.
* ``HDF1:Capture`` 1 opens ``FileTemplate % (FilePath, FileName, FileNumber)`` and increments
  ``FileNumber`` when ``AutoIncrement`` (ophyd names the file it expects ``FileNumber - 1``);
  frames are appended to :data:`~devices.hdf5_frames.FRAMES_DATASET`; ``Capture`` 0 closes.
* A put to ``FilePath`` adds the trailing ``/``, creates missing directories as
  ``CreateDirectory`` says (0 none; -N at most the last N levels; N: levels below depth N) and
  sets ``FilePathExists_RBV``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from itertools import count
from pathlib import Path
from typing import Any, cast

import h5py
import numpy as np
from caproto import ChannelType
from caproto.server import PVGroup, SubGroup, pvproperty

from simulators.clock import SimClock
from simulators.hdf5_layout import FRAMES_DATASET
from simulators.ioc import STATUS_MESSAGE_LENGTH, readback, setpoint

logger = logging.getLogger(__name__)

#: One 2-D frame and the edge of its pixels in nm, as the camera's optics would give it.
FrameSource = Callable[[], tuple[np.ndarray, float]]

#: areaDetector's enum strings, in its order (clients may put the index).
ACQUIRE_STATES = ("Done", "Acquire")
CAPTURE_STATES = ("Done", "Capture")
DETECTOR_STATES = (
    "Idle",
    "Acquire",
    "Readout",
    "Correct",
    "Saving",
    "Aborting",
    "Error",
    "Waiting",
    "Initializing",
    "Disconnected",
    "Aborted",
)
IMAGE_MODES = ("Single", "Multiple", "Continuous")
TRIGGER_MODES = ("Internal", "External")
DATA_TYPES = (
    "Int8",
    "UInt8",
    "Int16",
    "UInt16",
    "Int32",
    "UInt32",
    "Int64",
    "UInt64",
    "Float32",
    "Float64",
)
FILE_WRITE_MODES = ("Single", "Capture", "Stream")
DISABLE_ENABLE = ("Disable", "Enable")
NO_YES = ("No", "Yes")
WRITE_STATES = ("Write OK", "Write error")

#: Drive limits of ``AcquireTime``, s.
ACQUIRE_TIME_LIMITS_S = (1e-3, 60.0)

CAM_PORT = "SIM1"
HDF_PORT = "FileHDF1"


def _enum(strings: tuple[str, ...], value: str) -> dict[str, Any]:
    return {"dtype": ChannelType.ENUM, "enum_strings": strings, "value": value}


def _string(value: str) -> dict[str, Any]:
    """A short string (40 characters at most), as a ``stringin`` record serves it."""
    return {"dtype": ChannelType.STRING, "value": value}


def _text(value: str = "") -> dict[str, Any]:
    """A long string as areaDetector serves paths and messages: a char waveform."""
    return {
        "dtype": ChannelType.CHAR,
        "max_length": STATUS_MESSAGE_LENGTH,
        "string_encoding": "utf-8",
        "value": value,
    }


async def _mirror_to_readback(group: PVGroup, instance: Any, value: Any) -> Any:
    await group.pvdb[f"{instance.pvname}_RBV"].write(value)
    return value


def setting(name: str, doc: str = "", **kwargs: Any) -> tuple[pvproperty, pvproperty]:
    """A setting and its ``_RBV``, which follows it as an areaDetector driver's read-back does.

    ophyd's ``EpicsSignalWithRBV`` writes the one and waits until the other matches.
    """
    return (
        pvproperty(name=name, put=_mirror_to_readback, doc=doc, **kwargs),
        pvproperty(name=f"{name}_RBV", read_only=True, doc=doc, **kwargs),
    )


def status(name: str, doc: str = "", **kwargs: Any) -> pvproperty:
    """A read-only value the driver sets (``..._RBV``)."""
    return pvproperty(name=name, read_only=True, doc=doc, **kwargs)


class CamPVs(PVGroup):
    """``cam1:``, the driver: acquires frames from the frame source and passes them on."""

    acquire, acquire_rbv = setting(
        "Acquire", "1: acquire (put-completion when done); 0: stop", **_enum(ACQUIRE_STATES, "Done")
    )
    acquire_time = setpoint(
        "AcquireTime", *ACQUIRE_TIME_LIMITS_S, "s", 0.1, "exposure per frame, s"
    )
    acquire_time_rbv = status("AcquireTime_RBV", value=0.1, units="s", precision=4)
    acquire_period, acquire_period_rbv = setting(
        "AcquirePeriod", "frame period (frames are taken back to back)", value=0.0, units="s"
    )
    image_mode, image_mode_rbv = setting("ImageMode", **_enum(IMAGE_MODES, "Single"))
    num_images, num_images_rbv = setting("NumImages", "frames per acquisition (Multiple)", value=1)
    num_exposures, num_exposures_rbv = setting("NumExposures", value=1)
    trigger_mode, trigger_mode_rbv = setting("TriggerMode", **_enum(TRIGGER_MODES, "Internal"))
    array_callbacks, array_callbacks_rbv = setting(
        "ArrayCallbacks", "pass frames to the plugins", **_enum(DISABLE_ENABLE, "Enable")
    )
    array_counter, array_counter_rbv = setting("ArrayCounter", "frames acquired", value=0)
    detector_state = status("DetectorState_RBV", **_enum(DETECTOR_STATES, "Idle"))
    status_message = status("StatusMessage_RBV", "why the last acquisition failed", **_text())
    array_size_x = status("ArraySizeX_RBV", "columns of the last frame", value=0)
    array_size_y = status("ArraySizeY_RBV", "rows of the last frame", value=0)
    array_size_z = status("ArraySizeZ_RBV", "0: frames are 2-D", value=0)
    array_size_bytes = status("ArraySize_RBV", "bytes of the last frame", value=0)
    data_type = pvproperty(name="DataType", record="mbbo", **_enum(DATA_TYPES, "Float32"))
    # ophyd reads DataType_RBV.DISA (0: the data type is to be trusted): an mbbi record's field.
    data_type_rbv = status("DataType_RBV", record="mbbi", **_enum(DATA_TYPES, "Float32"))
    manufacturer = status("Manufacturer_RBV", **_string("Simulated detector"))
    model = status("Model_RBV", **_string("Basic simulator"))
    port_name = status("PortName_RBV", "asyn port, the plugins' NDArrayPort", **_string(CAM_PORT))
    pixel_size = readback("PixelSize_RBV", "nm", "edge of one pixel of the last frame")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stop_requested = False

    @property
    def detector(self) -> AreaDetectorPVs:
        return cast(AreaDetectorPVs, self.parent)

    @acquire_time.putter
    async def acquire_time(self, instance: Any, value: float) -> float:
        await self.acquire_time_rbv.write(value)
        return value

    @data_type.putter
    async def data_type(self, instance: Any, value: str) -> str:
        if value != "Float32":
            raise ValueError(f"DataType {value}: the simulated frames are Float32 only")
        return value

    @acquire.putter
    async def acquire(self, instance: Any, value: str) -> str:
        if value == "Done":
            self._stop_requested = True
            return value
        if self.acquire_rbv.value == "Acquire":
            return value
        self._stop_requested = False
        await instance.write(value, verify_value=False)  # Acquire reads 1 while acquiring
        await self.acquire_rbv.write("Acquire")
        await self.detector_state.write("Acquire")
        await self.status_message.write("Acquiring")
        try:
            await self._acquire_frames()
        except Exception as error:
            logger.exception("%sAcquire failed", self.prefix)
            await self.detector_state.write("Error")
            await self.status_message.write(str(error)[: STATUS_MESSAGE_LENGTH - 1])
        else:
            await self.detector_state.write("Idle")
            await self.status_message.write("Acquisition completed")
        await self.acquire_rbv.write("Done")
        return "Done"

    async def _acquire_frames(self) -> None:
        mode = self.image_mode.value
        frames = {"Single": 1, "Multiple": int(self.num_images.value)}.get(mode)
        exposure_s = float(self.acquire_time.value)
        loop = asyncio.get_running_loop()
        for index in count():
            if self._stop_requested or (frames is not None and index >= frames):
                return
            await asyncio.sleep(self.detector.clock.advance(exposure_s))  # expose, then read out
            frame, pixel_size_nm = await loop.run_in_executor(None, self.detector.frame_source)
            frame = np.asarray(frame, dtype=np.float32)
            if frame.ndim != 2:
                raise ValueError(f"the frame source gave a {frame.ndim}-D frame; expected 2-D")
            await self.array_size_y.write(frame.shape[0])
            await self.array_size_x.write(frame.shape[1])
            await self.array_size_bytes.write(frame.nbytes)
            await self.pixel_size.write(float(pixel_size_nm))
            if self.array_callbacks.value == "Enable":
                await self.detector.hdf.process(frame)
            counter = int(self.array_counter_rbv.value) + 1
            await self.array_counter.write(counter, verify_value=False)
            await self.array_counter_rbv.write(counter)


class HDF5PluginPVs(PVGroup):
    """``HDF1:``, an NDFileHDF5 plugin in Stream mode: one file per capture, a frame per array."""

    plugin_type = status("PluginType_RBV", **_string("NDFileHDF5"))
    port_name = status("PortName_RBV", **_string(HDF_PORT))
    nd_array_port, nd_array_port_rbv = setting(
        "NDArrayPort", "source of the arrays", **_string(CAM_PORT)
    )
    enable, enable_rbv = setting(
        "EnableCallbacks", "process arrays from the driver", **_enum(DISABLE_ENABLE, "Disable")
    )
    blocking_callbacks, blocking_callbacks_rbv = setting(
        "BlockingCallbacks",
        "always so here: a frame is written before Acquire ends",
        **_enum(NO_YES, "Yes"),
    )
    array_counter, array_counter_rbv = setting("ArrayCounter", "arrays processed", value=0)
    array_size0 = status("ArraySize0_RBV", "columns of the last array", value=0)
    array_size1 = status("ArraySize1_RBV", "rows of the last array", value=0)
    array_size2 = status("ArraySize2_RBV", "0: arrays are 2-D", value=0)
    file_path = pvproperty(name="FilePath", doc="directory of the files", **_text())
    file_path_rbv = status("FilePath_RBV", **_text())
    file_path_exists = status("FilePathExists_RBV", **_enum(NO_YES, "No"))
    create_directory, create_directory_rbv = setting(
        "CreateDirectory", "directory levels FilePath may create (see module doc)", value=0
    )
    file_name, file_name_rbv = setting("FileName", **_text())
    file_template, file_template_rbv = setting(
        "FileTemplate", "% (FilePath, FileName, FileNumber)", **_text("%s%s_%3.3d.h5")
    )
    file_number, file_number_rbv = setting("FileNumber", "number of the next file", value=0)
    full_file_name = status("FullFileName_RBV", "the file opened last", **_text())
    auto_increment, auto_increment_rbv = setting("AutoIncrement", **_enum(NO_YES, "Yes"))
    auto_save, auto_save_rbv = setting("AutoSave", **_enum(NO_YES, "No"))
    file_write_mode, file_write_mode_rbv = setting(
        "FileWriteMode", "only Stream is simulated", **_enum(FILE_WRITE_MODES, "Single")
    )
    num_capture, num_capture_rbv = setting("NumCapture", "frames per file, 0: unlimited", value=0)
    num_captured = status("NumCaptured_RBV", "frames in the open file", value=0)
    capture = pvproperty(
        name="Capture", doc="1: open a file; 0: close it", **_enum(CAPTURE_STATES, "Done")
    )
    capture_rbv = status("Capture_RBV", **_enum(CAPTURE_STATES, "Done"))
    write_status = status("WriteStatus", **_enum(WRITE_STATES, "Write OK"))
    write_message = status("WriteMessage", "why the last file operation failed", **_text())

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._file: h5py.File | None = None
        self._frame_shape: tuple[int, ...] | None = None

    @file_path.putter
    async def file_path(self, instance: Any, value: str) -> str:
        path = value if value.endswith("/") else f"{value}/"
        try:
            _create_missing_levels(Path(path), int(self.create_directory.value))
        except OSError as error:
            logger.warning("%sFilePath: cannot create %s: %s", self.prefix, path, error)
        await self.file_path_exists.write("Yes" if os.path.isdir(path) else "No")
        await self.file_path_rbv.write(path)
        return path

    @capture.putter
    async def capture(self, instance: Any, value: str) -> str:
        if value == "Done":
            await self._close()
        elif self._file is None:
            try:
                await self._open()
            except Exception as error:
                logger.warning("%sCapture refused: %s", self.prefix, error)
                await self._report(error)
                value = "Done"
        await self.capture_rbv.write(value)
        return value

    async def process(self, frame: np.ndarray) -> None:
        """Take a frame from the driver: note its shape and append it to the open file."""
        if self.enable.value != "Enable":
            return
        self._frame_shape = frame.shape
        await self.array_size0.write(frame.shape[1])
        await self.array_size1.write(frame.shape[0])
        counter = int(self.array_counter_rbv.value) + 1
        await self.array_counter.write(counter, verify_value=False)
        await self.array_counter_rbv.write(counter)
        if self._file is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(None, self._append, frame)
        except Exception as error:
            logger.exception("%s: frame not written", self.prefix)
            await self._report(error)
            return
        captured = int(self.num_captured.value) + 1
        await self.num_captured.write(captured)
        if captured == int(self.num_capture.value):
            await self._close()
            await self.capture.write("Done", verify_value=False)
            await self.capture_rbv.write("Done")

    async def _open(self) -> None:
        if self.file_write_mode.value != "Stream":
            raise ValueError(
                f"FileWriteMode {self.file_write_mode.value}: only Stream is simulated"
            )
        if self._frame_shape is None:
            raise ValueError("must collect an array to get dimensions first")
        path = str(self.file_path.value)
        await self.file_path_exists.write("Yes" if os.path.isdir(path) else "No")
        number = int(self.file_number.value)
        file_name = str(self.file_template.value) % (path, self.file_name.value, number)
        self._file = await asyncio.get_running_loop().run_in_executor(
            None, _create_frames_file, file_name, self._frame_shape
        )
        await self.full_file_name.write(file_name)
        await self.num_captured.write(0)
        await self._report(None)
        if self.auto_increment.value == "Yes":
            await self.file_number.write(number + 1, verify_value=False)
            await self.file_number_rbv.write(number + 1)

    def _append(self, frame: np.ndarray) -> None:
        assert self._file is not None
        dataset = self._file[FRAMES_DATASET]
        dataset.resize(dataset.shape[0] + 1, axis=0)
        dataset[-1] = frame
        self._file.flush()

    async def _close(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            await asyncio.get_running_loop().run_in_executor(None, file.close)

    async def _report(self, error: Exception | None) -> None:
        await self.write_status.write("Write OK" if error is None else "Write error")
        await self.write_message.write(
            "" if error is None else str(error)[: STATUS_MESSAGE_LENGTH - 1]
        )


def _create_missing_levels(path: Path, create_directory: int) -> None:
    """Create the levels of ``path`` that areaDetector's ``CreateDirectory`` allows."""
    if create_directory == 0 or path.is_dir():
        return
    levels = len(path.parts) - 1  # parts[0] is the root
    first = create_directory if create_directory > 0 else max(levels + create_directory, 1)
    for depth in range(first, levels):
        Path(*path.parts[: depth + 2]).mkdir(exist_ok=True)


def _create_frames_file(file_name: str, frame_shape: tuple[int, ...]) -> h5py.File:
    file = h5py.File(file_name, "w")
    file.create_dataset(
        FRAMES_DATASET,
        shape=(0, *frame_shape),
        maxshape=(None, *frame_shape),
        dtype=np.float32,
        chunks=(1, *frame_shape),
    )
    return file


class AreaDetectorPVs(PVGroup):
    """A simulated camera: ``{prefix}cam1:`` (ADSimDetector) and ``{prefix}HDF1:`` (NDFileHDF5).

    Parameters
    ----------
    frame_source
        Makes one frame (2-D) and returns it with its pixel edge in nm; called off the event
        loop, once per frame. An exception fails the acquisition (``DetectorState_RBV`` Error).
    clock
        Where the frames' exposure time is spent. ophyd's ``SingleTrigger.trigger()`` returns
        ``None`` if the acquisition has already ended when it returns (it drops its Status on
        the ``Acquire_RBV`` 1 -> 0 edge), so give it a clock on which exposures take real
        time (a finite ``speedup``), as a real camera's do.
    """

    cam = SubGroup(CamPVs, prefix="cam1:")
    hdf = SubGroup(HDF5PluginPVs, prefix="HDF1:")

    def __init__(
        self, *args: Any, frame_source: FrameSource, clock: SimClock, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.frame_source = frame_source
        self.clock = clock
