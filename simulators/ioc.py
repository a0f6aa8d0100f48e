"""Channel Access IOCs (caproto) that serve the simulated instruments as a beamline serves its own.

One PV group per instrument, all sharing one :class:`~simulators.stage.SampleStage` (the sample
the reactor made is the one the diffractometer and the microscope measure) and one
:class:`~simulators.clock.SimClock`. Each instrument has an action PV (``synthesize`` or
``acquire``): a put of 1 runs the same simulator as the in-process backend, and the put
completes only when the work is done and its instrument time has passed on the clock, so
clients wait with put-completion as they would on an areaDetector ``Acquire``. A failure
leaves its reason in the instrument's ``status_message`` PV (put-completion carries no error).

PV names are ``{prefix}{instrument}:{component}``, e.g. ``SDL:reactor:temperature_c``.
Setpoints are ``ao`` records as a beamline's are: ``.EGU`` is the unit, ``.DRVL``/``.DRVH``
the drive limits (what CA reports as ``lower_ctrl_limit``/``upper_ctrl_limit``, and what the
record enforces) and ``.LOPR``/``.HOPR`` the display range, all the simulated hardware's safe
range as the materials system and the devices state it. A put outside the drive limits is
refused and answered at once (see :class:`RefusingSetpoint`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import numpy as np
from caproto import CaprotoValueError, CAStatus, ChannelType
from caproto.server import PVGroup, PvpropertyDouble, pvproperty
from caproto.server.records.utils import link_parent_attribute

from simulators.clock import SimClock
from simulators.micrograph import (
    FRAME_SHAPE,
    FRAME_TIME_S,
    TARGET_GRAIN_PX,
    TARGET_GRAIN_PX_LIMITS,
    Micrograph,
    image_sample,
)
from simulators.sample import SampleState
from simulators.stage import SampleStage
from simulators.xrd import EXPOSURE_LIMITS_S, EXPOSURE_S, PowderDiffractometer

logger = logging.getLogger(__name__)

#: Longest status message an instrument reports, characters.
STATUS_MESSAGE_LENGTH = 256


class SynthesisModel(Protocol):
    """What the reactor IOC needs from a synthesis simulator."""

    def synthesize(
        self, conditions: Mapping[str, float], rng: Any, sample_id: str
    ) -> SampleState: ...

    def duration_s(self, conditions: Mapping[str, float]) -> float: ...


class RefusingSetpoint(PvpropertyDouble):
    """A setpoint whose refused put is answered as an EPICS IOC answers it.

    caproto answers a put outside the drive limits with a CA error message, which its own
    threading client (ophyd's) drops: the client would wait for put-completion until its
    timeout. EPICS's rsrv completes a refused put-callback with status ``ECA_PUTFAIL``;
    answering the same way ends the put at once for every client, the value unchanged.
    """

    async def write_from_dbr(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().write_from_dbr(*args, **kwargs)
        except CaprotoValueError as error:  # caproto's CannotExceedLimits among them
            logger.warning("%s: put refused: %s", self.pvname, error)
            return CAStatus.ECA_PUTFAIL


#: ``ao`` fields that state the setpoint's own units and limits -> its CA metadata.
_AO_FIELDS_OF_METADATA = {
    "engineering_units": "units",
    "drive_low_limit": "lower_ctrl_limit",
    "drive_high_limit": "upper_ctrl_limit",
    "low_operating_range": "lower_disp_limit",
    "high_operating_range": "upper_disp_limit",
}


def setpoint(
    name: str, low: float, high: float, unit: str, value: float | None = None, doc: str = ""
) -> pvproperty:
    """A float setpoint (``ao`` record) whose drive limits are the hardware's safe range.

    The record's ``.EGU``, ``.DRVL``/``.DRVH`` and ``.LOPR``/``.HOPR`` read and write the
    channel's metadata, so narrowing ``.DRVH`` narrows what the IOC reports and enforces.
    """
    prop = pvproperty(
        name=name,
        value=float(low if value is None else value),
        dtype=RefusingSetpoint,
        record="ao",
        lower_ctrl_limit=low,
        upper_ctrl_limit=high,
        lower_disp_limit=low,
        upper_disp_limit=high,
        units=unit,
        precision=4,
        doc=doc,
    )
    for field, metadata in _AO_FIELDS_OF_METADATA.items():
        link_parent_attribute(getattr(prop.fields, field), metadata)
    return prop


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
    """The synthesis reactor: one setpoint per condition (added per materials system), or,
    for a condition a motor record sets, where that motor is (``positions``)."""

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

    def __init__(
        self,
        *args: Any,
        model: SynthesisModel,
        positions: Mapping[str, Callable[[], float]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.model = model
        self.positions = dict(positions or {})

    @synthesize.putter
    async def synthesize(self, instance: Any, value: int) -> int:
        if not value:
            return 0
        conditions = {name: float(getattr(self, name).value) for name in self.condition_names}
        conditions |= {name: position() for name, position in self.positions.items()}
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
        "exposure_s",
        *EXPOSURE_LIMITS_S,
        "s",
        value=EXPOSURE_S,
        doc="counting time per 2-theta step",
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
            return image_sample(self.stage.require_sample(), self.stage.new_rng(), target_grain_px)

        async def publish(micrograph: Micrograph) -> float:
            await self.image_data.write(micrograph.image.astype(np.float32).ravel())
            await self.pixel_size_nm.write(micrograph.pixel_size_nm)
            await self.acquisition_time_s.write(FRAME_TIME_S)
            return FRAME_TIME_S

        await self.run_action("micrograph", simulate, publish)
        return 0
