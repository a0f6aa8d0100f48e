"""The synthesis reactor: set the conditions, trigger, and a sample comes out."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ophyd import Component as Cpt
from ophyd import Device, Signal
from ophyd.device import create_device_from_components
from ophyd.status import StatusBase
from ophyd.utils.errors import LimitError

from devices.signals import LimitedSignal, MeasuredSignal
from devices.sim_lab import SimulatedLab
from simulators.sample import SampleState

#: A condition's safe range and unit: (low, high, unit).
ConditionLimits = Mapping[str, tuple[float, float, str]]

#: A limit that couples several conditions (e.g. fractions that must not exceed a total):
#: raises ``ValueError`` with the reason for conditions that break it (what it returns is unused).
JointLimit = Callable[[Mapping[str, float]], object]


class SynthesisModel(Protocol):
    """What the simulated reactor needs from a synthesis simulator."""

    def synthesize(
        self, conditions: Mapping[str, float], rng: Any, sample_id: str
    ) -> SampleState: ...

    def duration_s(self, conditions: Mapping[str, float]) -> float: ...


class Reactor(Device):
    """A synthesis reactor whose condition setpoints are its ``condition_names`` components.

    Each condition is a :class:`~devices.signals.LimitedSignal`, so ``bps.mv`` to an unsafe
    value raises before anything moves. A limit that couples conditions (``joint_limit``)
    cannot live on one setpoint: :meth:`check_conditions` applies it to a whole proposal.
    ``trigger()`` synthesises one sample at the current setpoints and returns a Status that
    completes when the sample is ready.
    """

    condition_names: tuple[str, ...] = ()
    joint_limit: JointLimit | None = None

    sample_id = Cpt(Signal, value="", kind="normal")
    synthesis_time_s = Cpt(MeasuredSignal, value=0.0, units="s", kind="normal")

    def conditions(self) -> dict[str, float]:
        """The current setpoints, by condition name."""
        return {name: float(getattr(self, name).get()) for name in self.condition_names}

    def check_conditions(self, conditions: Mapping[str, float]) -> None:
        """Raise ``LimitError`` if these setpoints, each or together, are unsafe (conditions
        another device sets take part in the joint limit only)."""
        for name, value in conditions.items():
            if name in self.condition_names:
                getattr(self, name).check_value(value)
        if self.joint_limit is not None:
            try:
                self.joint_limit({**self.conditions(), **conditions})
            except ValueError as error:
                raise LimitError(f"{self.name}: {error}") from None

    def condition_limits(self) -> dict[str, tuple[float, float, str]]:
        """Safe range and unit of every condition, as the device reports them."""
        limits = {}
        for name in self.condition_names:
            signal = getattr(self, name)
            limits[name] = (*signal.limits, signal.units)
        return limits


class SimulatedReactor(Reactor):
    """A reactor whose synthesis is a simulator's, on a shared :class:`SimulatedLab`."""

    def __init__(self, *args: Any, lab: SimulatedLab, model: SynthesisModel, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lab = lab
        self._model = model

    def trigger(self) -> StatusBase:
        conditions = self.conditions()
        # Setpoints each within limits can still break a joint limit: refuse before acting.
        self.check_conditions(conditions)
        sample_id = uuid.uuid4().hex[:12]

        def synthesise() -> float:
            struck = self._lab.faults.begin_action(self.name)
            self._lab.faults.check_setpoints(struck, conditions)
            sample = self._model.synthesize(conditions, self._lab.new_rng(), sample_id)
            duration_s = self._model.duration_s(conditions)
            self._lab.sample_on_stage = sample
            self.sample_id.put(sample_id)
            self.synthesis_time_s.put(duration_s)
            return duration_s

        return self._lab.run_action(self, synthesise, f"{self.name} synthesis")


def reactor_class(
    class_name: str,
    limits: ConditionLimits,
    base_class: type[Reactor] = SimulatedReactor,
    joint_limit: JointLimit | None = None,
) -> type[Reactor]:
    """Build a reactor class with one limited setpoint component per synthesis condition,
    and the ``joint_limit`` (if any) that couples them."""
    components = {
        name: Cpt(LimitedSignal, limits=(low, high), units=unit, kind="normal")
        for name, (low, high, unit) in limits.items()
    }
    cls = create_device_from_components(
        class_name, base_class=base_class, docstring=base_class.__doc__, **components
    )
    cls.condition_names = tuple(limits)
    cls.joint_limit = staticmethod(joint_limit) if joint_limit else None
    return cls
