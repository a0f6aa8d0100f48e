"""Channel Access IOCs (caproto) that serve the simulated instruments as a beamline serves its own.

One PV group per instrument, all sharing one :class:`~simulators.stage.SampleStage` (the sample
the reactor made is the one the diffractometer and the microscope measure) and one
:class:`~simulators.clock.SimClock`. Each instrument has an action PV (``synthesize`` or
``acquire``): a put of 1 runs the same simulator as the in-process backend, and the put
completes only when the work is done and its instrument time has passed on the clock, so
clients wait with put-completion as they would on an areaDetector ``Acquire``. A failure
leaves its reason in the instrument's ``status_message`` PV (put-completion carries no error).

PV names are ``{prefix}{instrument}:{component}``, e.g. ``SDL:reactor:temperature_c``.
Setpoints are ``ao`` records whose control limits (what CA reports as
``lower_ctrl_limit``/``upper_ctrl_limit``) are the simulated hardware's safe range.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import numpy as np
from caproto import ChannelType
from caproto.server import PVGroup, pvproperty, run

from simulators.clock import SimClock
from simulators.micrograph import (
    TARGET_GRAIN_PX,
    Micrograph,
    choose_pixel_size_nm,
    simulate_micrograph,
)
from simulators.sample import SampleState
from simulators.stage import SampleStage
from simulators.xrd import PowderDiffractometer

logger = logging.getLogger(__name__)

#: Safe exposure range of the simulated diffractometer, s per step (as devices/diffractometer.py).
XRD_EXPOSURE_LIMITS_S = (0.01, 10.0)

#: Range of the microscope's magnification setting, px across a typical grain
#: (as devices/microscope.py).
TARGET_GRAIN_PX_LIMITS = (8.0, 64.0)

#: Instrument time of one micrograph: stage move, focus and a slow scan (as devices/microscope.py).
FRAME_TIME_S = 120.0

#: Frame shape of the simulated microscope, rows x columns.
FRAME_SHAPE = (256, 256)

#: Longest status message an instrument reports, characters.
STATUS_MESSAGE_LENGTH = 256


class SynthesisModel(Protocol):
    """What the reactor IOC needs from a synthesis simulator."""

    def synthesize(
        self, conditions: Mapping[str, float], rng: Any, sample_id: str
    ) -> SampleState: ...

    def duration_s(self, conditions: Mapping[str, float]) -> float: ...


def setpoint(
    name: str, low: float, high: float, unit: str, value: float | None = None, doc: str = ""
) -> pvproperty:
    """A float setpoint (``ao`` record) whose control limits are the hardware's safe range."""
    return pvproperty(
        name=name,
        value=float(low if value is None else value),
        dtype=ChannelType.DOUBLE,
        record="ao",
        lower_ctrl_limit=low,
        upper_ctrl_limit=high,
        units=unit,
        precision=4,
        doc=doc,
    )


def readback(name: str, unit: str, doc: str = "") -> pvproperty:
    """A read-only float result, e.g. the instrument time an action took."""
    return pvproperty(
        name=name,
        value=0.0,
        dtype=ChannelType.DOUBLE,
        read_only=True,
        units=unit,
        precision=3,
        doc=doc,
    )


def waveform(unit: str, doc: str) -> pvproperty:
    """A read-only array of up to 8192 floats, e.g. a pattern or its 2-theta axis."""
    return pvproperty(
        value=[0.0], dtype=ChannelType.DOUBLE, max_length=8192, read_only=True, units=unit, doc=doc
    )


class InstrumentPVs(PVGroup):
    """What every simulated instrument serves besides its own PVs: the lab and a status line."""

    status_message = pvproperty(
        value="",
        dtype=ChannelType.CHAR,
        max_length=STATUS_MESSAGE_LENGTH,
        string_encoding="utf-8",
        read_only=True,
        doc="empty after a successful action, else why the last action failed",
    )

    def __init__(self, *args: Any, stage: SampleStage, clock: SimClock, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stage = stage
        self.clock = clock

    async def run_action(
        self,
        description: str,
        simulate: Callable[[], Any],
        publish: Callable[[Any], Awaitable[float]],
    ) -> None:
        """Simulate off the event loop, publish the results, then spend the instrument time.

        ``publish`` writes the result PVs and returns the action's instrument seconds. Any
        error is logged and left in ``status_message`` instead of failing the put, because
        put-completion tells a client only that the action ended.
        """
        await self.status_message.write("")
        try:
            result = await asyncio.get_running_loop().run_in_executor(None, simulate)
            duration_s = await publish(result)
        except Exception as error:
            logger.exception("%s failed", description)
            await self.status_message.write(
                f"{description} failed: {error}"[: STATUS_MESSAGE_LENGTH - 1]
            )
            return
        await asyncio.sleep(self.clock.advance(duration_s))


class ReactorPVs(InstrumentPVs):
    """The synthesis reactor: one setpoint per condition (added per materials system)."""

    condition_names: tuple[str, ...] = ()

    synthesize = pvproperty(
        value=0,
        dtype=ChannelType.INT,
        doc="put 1: synthesise a sample at the setpoints (put-completion)",
    )
    sample_id = pvproperty(
        value="", dtype=ChannelType.STRING, read_only=True, doc="id of the sample on the stage"
    )
    synthesis_time_s = readback("synthesis_time_s", "s", "instrument time of the last synthesis")

    def __init__(self, *args: Any, model: SynthesisModel, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.model = model

    @synthesize.putter
    async def synthesize(self, instance: Any, value: int) -> int:
        if not value:
            return 0
        conditions = {name: float(getattr(self, name).value) for name in self.condition_names}
        sample_id = uuid.uuid4().hex[:12]

        def simulate() -> tuple[SampleState, float]:
            sample = self.model.synthesize(conditions, self.stage.new_rng(), sample_id)
            return sample, self.model.duration_s(conditions)

        async def publish(result: tuple[SampleState, float]) -> float:
            sample, duration_s = result
            self.stage.sample_on_stage = sample
            await self.sample_id.write(sample_id)
            await self.synthesis_time_s.write(duration_s)
            return duration_s

        await self.run_action("synthesis", simulate, publish)
        return 0


def reactor_pvs_class(condition_limits: Mapping[str, tuple[float, float, str]]) -> type[ReactorPVs]:
    """A reactor PV group with one ``ao`` setpoint per condition of the materials system."""
    setpoints = {
        name: setpoint(name, low, high, unit, doc=f"synthesis condition {name} ({unit})")
        for name, (low, high, unit) in condition_limits.items()
    }
    cls: type[ReactorPVs] = type("SimulatedReactorPVs", (ReactorPVs,), setpoints)
    cls.condition_names = tuple(condition_limits)
    return cls


class DiffractometerPVs(InstrumentPVs):
    """The powder diffractometer: the 2-theta axis, the last pattern and its exposure."""

    acquire = pvproperty(
        value=0, dtype=ChannelType.INT, doc="put 1: scan the sample on the stage (put-completion)"
    )
    exposure_s = setpoint(
        "exposure_s", *XRD_EXPOSURE_LIMITS_S, "s", value=0.5, doc="counting time per 2-theta step"
    )
    two_theta = waveform("deg", "2-theta of every step")
    counts = waveform("counts", "the last pattern")
    scan_time_s = readback("scan_time_s", "s", "instrument time of the last scan")

    def __init__(self, *args: Any, instrument: PowderDiffractometer, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.instrument = instrument

    @two_theta.startup
    async def two_theta(self, instance: Any, async_lib: Any) -> None:
        # The axis and an empty pattern of its length are there before the first scan.
        await self.two_theta.write(self.instrument.two_theta_deg)
        await self.counts.write(np.zeros_like(self.instrument.two_theta_deg))

    @acquire.putter
    async def acquire(self, instance: Any, value: int) -> int:
        if not value:
            return 0
        exposure_s = float(self.exposure_s.value)

        def simulate() -> np.ndarray:
            sample = self.stage.require_sample()
            return self.instrument.measure(sample, self.stage.new_rng(), exposure_s=exposure_s)

        async def publish(counts: np.ndarray) -> float:
            duration_s = self.instrument.duration_s(exposure_s=exposure_s)
            await self.counts.write(np.asarray(counts, dtype=float))
            await self.scan_time_s.write(duration_s)
            return duration_s

        await self.run_action("XRD scan", simulate, publish)
        return 0


class MicroscopePVs(InstrumentPVs):
    """The electron microscope: the last frame as a flat float32 waveform, as areaDetector's
    NDStdArrays plugin serves it, at the magnification it picked for the sample."""

    acquire = pvproperty(
        value=0, dtype=ChannelType.INT, doc="put 1: image the sample on the stage (put-completion)"
    )
    target_grain_px = setpoint(
        "target_grain_px",
        *TARGET_GRAIN_PX_LIMITS,
        "px",
        value=TARGET_GRAIN_PX,
        doc="magnification: pixels across a typical grain",
    )
    pixel_size_nm = readback("pixel_size_nm", "nm", "edge of one pixel of the last frame")
    image_data = pvproperty(
        value=np.zeros(math.prod(FRAME_SHAPE), dtype=np.float32),
        dtype=ChannelType.FLOAT,
        max_length=math.prod(FRAME_SHAPE),
        read_only=True,
        doc="the last frame, row-major",
    )
    acquisition_time_s = readback("acquisition_time_s", "s", "instrument time of the last frame")

    @acquire.putter
    async def acquire(self, instance: Any, value: int) -> int:
        if not value:
            return 0
        target_grain_px = float(self.target_grain_px.value)

        def simulate() -> Micrograph:
            sample = self.stage.require_sample()
            pixel_size_nm = choose_pixel_size_nm(sample.particle_size_nm, target_grain_px)
            return simulate_micrograph(
                sample, self.stage.new_rng(), shape=FRAME_SHAPE, pixel_size_nm=pixel_size_nm
            )

        async def publish(micrograph: Micrograph) -> float:
            await self.image_data.write(micrograph.image.astype(np.float32).ravel())
            await self.pixel_size_nm.write(micrograph.pixel_size_nm)
            await self.acquisition_time_s.write(FRAME_TIME_S)
            return FRAME_TIME_S

        await self.run_action("micrograph", simulate, publish)
        return 0


def lab_pvdb(
    prefix: str,
    model: SynthesisModel,
    condition_limits: Mapping[str, tuple[float, float, str]],
    *,
    seed: int = 0,
    speedup: float = math.inf,
) -> dict[str, Any]:
    """The PV database of the whole simulated lab: reactor, diffractometer and microscope."""
    stage, clock = SampleStage(seed), SimClock(speedup)
    groups: list[PVGroup] = [
        reactor_pvs_class(condition_limits)(
            prefix=f"{prefix}reactor:", model=model, stage=stage, clock=clock
        ),
        DiffractometerPVs(
            prefix=f"{prefix}xrd:", instrument=PowderDiffractometer(), stage=stage, clock=clock
        ),
        MicroscopePVs(prefix=f"{prefix}microscope:", stage=stage, clock=clock),
    ]
    return {name: data for group in groups for name, data in group.pvdb.items()}


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
