"""A beamline profile, written as a beamline writes its own: the devices, made at import.

The simulated lab's IOC serves what these devices talk to, as a beamline's IOCs would::

    sdl ioc --motor-conditions temperature_c h2o_ti_ratio

serves the furnace and the water pump as motor records (``SDL:reactor:temperature_c``,
``SDL:reactor:h2o_ti_ratio``) and the electron microscope's camera as an areaDetector
(``SDL:sem:cam1:``, ``SDL:sem:HDF1:``). ``campaign.yaml`` beside this file names the
devices below; nothing in sdl knows their classes. ``SIM_BEAMLINE_PREFIX`` and
``SIM_BEAMLINE_DATA`` (where the camera writes its HDF5 files) override the defaults.
"""

import os

import ophyd
from ophyd import Component as Cpt
from ophyd import EpicsMotor, EpicsSignalRO
from ophyd.areadetector import DetectorBase, HDF5Plugin, SimDetectorCam, SingleTrigger
from ophyd.areadetector.filestore_mixins import FileStoreHDF5IterativeWrite
from ophyd.status import DeviceStatus
from ophyd_async.core import init_devices
from ophyd_async.epics.motor import Motor
from ophyd_async.sim import SimMotor

PREFIX = os.environ.get("SIM_BEAMLINE_PREFIX", "SDL:")
DATA_DIR = os.environ.get("SIM_BEAMLINE_DATA", "/tmp/sim-beamline")

ophyd.set_cl("caproto")  # Channel Access in pure Python; a beamline with libca keeps pyepics


class HDF5FileWriter(HDF5Plugin, FileStoreHDF5IterativeWrite):
    """The camera's HDF5 file plugin, announcing each frame as Resource/Datum documents."""


class SEMCamera(SingleTrigger, DetectorBase):
    """The electron microscope's camera: one frame per trigger, written to HDF5 by the IOC."""

    cam = Cpt(SimDetectorCam, "cam1:")
    hdf5 = Cpt(HDF5FileWriter, "HDF1:", write_path_template=DATA_DIR, read_path_template=DATA_DIR)
    pixel_size = Cpt(EpicsSignalRO, "cam1:PixelSize_RBV", kind="normal")
    exposure = Cpt(EpicsSignalRO, "cam1:AcquireTime_RBV", kind="normal")

    def trigger(self) -> DeviceStatus:
        """SingleTrigger's, failed where the driver ended in its Error state (a frame that
        was never taken), which ophyd alone would report as done."""
        acquired, checked = super().trigger(), DeviceStatus(self)

        def check(status: DeviceStatus) -> None:
            if not status.success:
                checked.set_exception(status.exception())
            elif self.cam.detector_state.get(as_string=True) == "Error":
                message = self.cam.status_message.get(as_string=True)
                checked.set_exception(RuntimeError(f"{self.name}: {message}"))
            else:
                checked.set_finished()

        acquired.add_callback(check)
        return checked


# ophyd (v1) devices: the water pump's motor record and the SEM camera.
water_pump = EpicsMotor(f"{PREFIX}reactor:h2o_ti_ratio", name="water_pump")
sem = SEMCamera(f"{PREFIX}sem:", name="sem")
sem.read_attrs = ["hdf5", "pixel_size", "exposure"]
if not sum(sem.hdf5.array_size.get()):  # a new IOC's file plugin must see one frame first
    sem.hdf5.enable.put(1, wait=True)
    sem.cam.image_mode.put("Single", wait=True)
    sem.cam.acquire.put(1, wait=True, timeout=60)  # put-completion: the frame was taken

# ophyd-async devices: the furnace's motor record over Channel Access, and a sample-stage
# axis on ophyd-async's own simulated backend (read into every run's baseline).
with init_devices():
    furnace = Motor(f"{PREFIX}reactor:temperature_c")
    stage_x = SimMotor()
