"""A motor record served by caproto: a positioner as a beamline's motor IOC serves it.

A beamline drives its sample stage, and often a furnace or a pump, through EPICS motor
records, and its ophyd profile talks to them with ``ophyd.EpicsMotor`` or
``ophyd_async.epics.motor.Motor``. :class:`MotorRecordPVs` serves one such record: a put to
``.VAL`` starts a move and its put-completion comes when the move is done; ``.DMOV`` drops
to 0 and returns to 1, ``.MOVN`` is 1 meanwhile, and ``.RBV`` follows. The move takes
``distance / .VELO`` seconds of the lab's :class:`~simulators.clock.SimClock`. ``.HLM`` and
``.LLM`` are the soft limits and also ``.VAL``'s control limits (what CA reports and what
ophyd checks before moving), ``.EGU`` its units. A put outside the limits is refused at
once with ``ECA_PUTFAIL`` and nothing moves, as the record refuses it: never left waiting.
"""

from __future__ import annotations

import asyncio
from typing import Any

from caproto.server import PVGroup, pvproperty
from caproto.server.records.utils import link_parent_attribute

from simulators.clock import SimClock
from simulators.ioc import RefusingSetpoint

#: Motor-record fields that state the setpoint's units and soft limits -> its CA metadata.
_MOTOR_FIELDS_OF_METADATA = {
    "engineering_units": "units",
    "user_low_limit": "lower_ctrl_limit",
    "user_high_limit": "upper_ctrl_limit",
}


class MotorRecordPVs(PVGroup):
    """One motor record whose PV is the group's prefix (``{prefix}.VAL``, ``.RBV``, ...).

    Parameters
    ----------
    limits
        ``(low, high)`` soft limits in ``units``; they are ``.LLM``/``.HLM`` and the dial
        limits (no offset).
    units
        ``.EGU``.
    clock
        The lab's clock: a move of ``d`` takes ``d / velocity`` simulated seconds.
    velocity
        ``.VELO`` in units per second (default: the whole range in 10 s).
    """

    motor = pvproperty(
        name="", value=0.0, dtype=RefusingSetpoint, record="motor", precision=4, doc="setpoint"
    )
    for _field, _metadata in _MOTOR_FIELDS_OF_METADATA.items():
        link_parent_attribute(getattr(motor.fields, _field), _metadata)

    def __init__(
        self,
        *args: Any,
        limits: tuple[float, float],
        units: str,
        clock: SimClock,
        velocity: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.limits = (float(limits[0]), float(limits[1]))
        self.units = units
        self.clock = clock
        self.velocity = velocity or (self.limits[1] - self.limits[0]) / 10.0

    @property
    def position(self) -> float:
        """Where the motor is (``.RBV``)."""
        return float(self.motor.field_inst.user_readback_value.value)

    @motor.startup
    async def motor(self, instance: Any, async_lib: Any) -> None:
        fields = instance.field_inst
        low, high = self.limits
        await instance.write_metadata(units=self.units, lower_ctrl_limit=low, upper_ctrl_limit=high)
        await fields.user_readback_value.write_metadata(units=self.units, precision=4)
        start = min(max(0.0, low), high)
        for field, value in {
            "engineering_units": self.units,
            "user_low_limit": low,
            "user_high_limit": high,
            "dial_low_limit": low,
            "dial_high_limit": high,
            "velocity": self.velocity,
            "max_velocity": self.velocity,
            "motor_step_size": 1e-6,
            "retry_deadband": 1e-5,
            "done_moving_to_value": 1,
            "user_readback_value": start,
            "dial_readback_value": start,
        }.items():
            await getattr(fields, field).write(value)
        await instance.write(start)

    @motor.putter
    async def motor(self, instance: Any, value: float) -> float:
        fields = instance.field_inst
        await fields.done_moving_to_value.write(0)
        await fields.motor_is_moving.write(1)
        distance = abs(value - self.position)
        await asyncio.sleep(self.clock.advance(distance / max(self.velocity, 1e-12)))
        await fields.user_readback_value.write(value)
        await fields.dial_readback_value.write(value)
        await fields.motor_is_moving.write(0)
        await fields.done_moving_to_value.write(1)
        return value
