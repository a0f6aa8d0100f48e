"""The whole simulated lab as one Channel Access server (``sdl ioc``).

Every PV group shares one :class:`~simulators.stage.SampleStage` (the sample the reactor
made is the one the instruments measure) and one :class:`~simulators.clock.SimClock`. PV
names are ``{prefix}{instrument}:{component}``. A condition named in ``motor_conditions``
is served as a motor record at the PV its ``ao`` setpoint would have had
(``SDL:reactor:temperature_c``), as a beamline whose furnace or stage is a motor: the
reactor then synthesises at that motor's position.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from typing import Any

import numpy as np
from caproto.server import PVGroup, run

from simulators.area_detector_ioc import AreaDetectorPVs, FrameSource
from simulators.clock import SimClock
from simulators.ioc import DiffractometerPVs, MicroscopePVs, SynthesisModel, reactor_pvs_class
from simulators.micrograph import (
    FRAME_SHAPE,
    image_sample,
)
from simulators.motor_ioc import MotorRecordPVs
from simulators.stage import SampleStage
from simulators.xrd import PowderDiffractometer

#: The fastest the areaDetector camera runs (its default 0.1 s exposure: 1 ms).
CAMERA_MAX_SPEEDUP = 100.0


def lab_pvdb(
    prefix: str,
    model: SynthesisModel,
    condition_limits: Mapping[str, tuple[float, float, str]],
    *,
    seed: int = 0,
    speedup: float = math.inf,
    motor_conditions: Collection[str] = (),
) -> dict[str, Any]:
    """The PV database of the whole simulated lab: reactor, diffractometer and microscope
    (its own PVs, and an areaDetector camera at ``{prefix}sem:`` seeing the same sample)."""
    unknown = sorted(set(motor_conditions) - set(condition_limits))
    if unknown:
        raise ValueError(f"motor conditions {unknown} are not conditions {list(condition_limits)}")
    stage, clock = SampleStage(seed), SimClock(speedup)
    motors = {
        name: MotorRecordPVs(
            prefix=f"{prefix}reactor:{name}", limits=(low, high), units=unit, clock=clock
        )
        for name, (low, high, unit) in condition_limits.items()
        if name in motor_conditions
    }
    setpoints = {n: limits for n, limits in condition_limits.items() if n not in motors}
    groups: list[PVGroup] = [
        *motors.values(),
        reactor_pvs_class(setpoints)(
            prefix=f"{prefix}reactor:",
            model=model,
            positions={name: _position_of(motor) for name, motor in motors.items()},
            stage=stage,
            clock=clock,
        ),
        DiffractometerPVs(
            prefix=f"{prefix}xrd:", instrument=PowderDiffractometer(), stage=stage, clock=clock
        ),
        MicroscopePVs(prefix=f"{prefix}microscope:", stage=stage, clock=clock),
        # A camera's frame takes real time even on an instant lab: ophyd's SingleTrigger loses
        # its Status to an acquisition that ends before its trigger() returns.
        AreaDetectorPVs(
            prefix=f"{prefix}sem:",
            frame_source=_camera_view(stage),
            clock=SimClock(min(speedup, CAMERA_MAX_SPEEDUP)),
        ),
    ]
    return {name: data for group in groups for name, data in group.pvdb.items()}


def _position_of(motor: MotorRecordPVs) -> Callable[[], float]:
    return lambda: motor.position


def _camera_view(stage: SampleStage) -> FrameSource:
    """What the areaDetector camera sees: the sample on the stage, as the microscope images it
    at its default magnification (a camera takes a frame with no sample too, as the
    areaDetector warm-up that primes its file plugin needs)."""

    def frame() -> tuple[np.ndarray, float]:
        sample = stage.sample_on_stage
        if sample is None:  # the empty holder: dark, with the detector's noise
            return stage.new_rng().normal(0.05, 0.01, FRAME_SHAPE).astype(np.float32), 10.0
        micrograph = image_sample(sample, stage.new_rng())
        return micrograph.image.astype(np.float32), micrograph.pixel_size_nm

    return frame


def serve(
    pvdb: dict[str, Any], *, host: str = "127.0.0.1", on_ready: Callable[[], None] | None = None
) -> None:
    """Serve ``pvdb`` over Channel Access on ``host`` until interrupted.

    The UDP search port is ``EPICS_CA_SERVER_PORT`` (default 5064); ``on_ready`` is called
    once the server's sockets are bound.
    """

    async def ready(async_lib: Any) -> None:
        if on_ready is not None:
            on_ready()

    run(pvdb, interfaces=[host], startup_hook=ready)
