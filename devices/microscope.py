"""The electron microscope: trigger an image of the sample on the stage, stored as HDF5 frames."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ophyd import Component as Cpt
from ophyd import Device, Signal
from ophyd.status import StatusBase

from devices.hdf5_frames import HDF5FrameWriter
from devices.signals import LimitedSignal, MeasuredSignal
from devices.sim_lab import SimulatedLab
from simulators.micrograph import (
    FRAME_SHAPE,
    FRAME_TIME_S,
    TARGET_GRAIN_PX,
    TARGET_GRAIN_PX_LIMITS,
    image_sample,
)


class Microscope(Device):
    """A microscope with one image per trigger, written to HDF5 and read as a reference.

    The magnification is chosen per sample so that a typical grain spans
    ``target_grain_px`` pixels; ``pixel_size_nm`` reports the scale of each image.
    """

    image = Cpt(Signal, value="", kind="normal")
    pixel_size_nm = Cpt(MeasuredSignal, value=0.0, units="nm", kind="normal")
    target_grain_px = Cpt(
        LimitedSignal,
        limits=TARGET_GRAIN_PX_LIMITS,
        units="px",
        value=TARGET_GRAIN_PX,
        kind="config",
    )
    acquisition_time_s = Cpt(MeasuredSignal, value=0.0, units="s", kind="normal")

    frame_shape: tuple[int, int] = FRAME_SHAPE


class FrameWritingMicroscope(Microscope):
    """A microscope that writes each frame to HDF5 and reads back its datum reference.

    Both backends share it, so their documents have the same shape: a subclass's
    ``trigger()`` gets a frame from its source and passes it to :meth:`store_frame`.
    """

    def __init__(self, *args: Any, write_dir: Path | str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._frames = HDF5FrameWriter(write_dir)

    def stage(self) -> list[object]:
        self._frames.open(self.frame_shape, "<f4")
        return super().stage()

    def unstage(self) -> list[object]:
        self._frames.close()
        return super().unstage()

    def store_frame(self, frame: Any) -> None:
        """Append one frame to the file and point the ``image`` reading at it."""
        self.image.put(self._frames.write(frame.astype("<f4")))

    def describe(self) -> dict[str, dict[str, Any]]:
        description = super().describe()
        description[self.image.name].update(
            shape=list(self.frame_shape),
            dtype="array",
            dtype_numpy="<f4",
            external="FILESTORE:",
        )
        return description

    def collect_asset_docs(self) -> Iterator[tuple[str, dict[str, Any]]]:
        yield from self._frames.collect_asset_docs()


class SimulatedMicroscope(FrameWritingMicroscope):
    """A microscope whose images come from :func:`simulators.micrograph.simulate_micrograph`."""

    def __init__(self, *args: Any, lab: SimulatedLab, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lab = lab

    def trigger(self) -> StatusBase:
        target_grain_px = float(self.target_grain_px.get())

        def acquire() -> float:
            struck = self._lab.faults.begin_action(self.name)
            sample = self._lab.require_sample()
            micrograph = image_sample(
                sample, self._lab.new_rng(), target_grain_px, shape=self.frame_shape
            )
            self.store_frame(self._lab.faults.image(struck, micrograph.image))
            self.pixel_size_nm.put(micrograph.pixel_size_nm)
            self.acquisition_time_s.put(FRAME_TIME_S)
            return FRAME_TIME_S

        return self._lab.run_action(self, acquire, f"{self.name} acquisition")
