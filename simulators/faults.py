"""Instrument faults on demand, so a campaign's fault handling is tested before a real night.

A :class:`FaultInjector` decides, for every action of every simulated instrument, whether
something goes wrong, either at random (``rate``) or at given action numbers (``at``, the
n-th action of that instrument, counting from 0 and counting retries). What can go wrong:

=================  =========================================================================
kind               effect
=================  =========================================================================
instrument_error   the action raises :class:`InstrumentFault` part-way
timeout            the action never completes (its Status is left pending until it times out)
nan_data           some points of the XRD pattern are NaN (a detector read-out glitch)
saturated_data     the XRD pattern is clipped flat at a ceiling (a saturated detector)
empty_data         the XRD pattern is all zeros (shutter closed)
blank_image        the micrograph is one constant grey (beam blanked)
drift              the diffractometer's 2-theta zero drifts by ``step_deg`` (accumulates)
setpoint_miss      the reactor ends ``step`` (relative) away from a setpoint; raises
                   :class:`SetpointMissed`, as a controller's interlock would
=================  =========================================================================
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

#: Fault kinds and the instruments each one can hit.
FAULT_TARGETS: dict[str, frozenset[str]] = {
    "instrument_error": frozenset({"reactor", "xrd", "microscope"}),
    "timeout": frozenset({"reactor", "xrd", "microscope"}),
    "nan_data": frozenset({"xrd"}),
    "saturated_data": frozenset({"xrd"}),
    "empty_data": frozenset({"xrd"}),
    "blank_image": frozenset({"microscope"}),
    "drift": frozenset({"xrd"}),
    "setpoint_miss": frozenset({"reactor"}),
}


class InstrumentFault(RuntimeError):
    """A simulated instrument failed part-way through an action."""


class SetpointMissed(RuntimeError):
    """The reactor could not hold a setpoint within its tolerance."""


@dataclass(frozen=True)
class FaultSpec:
    """When one kind of fault strikes, and how hard.

    Parameters
    ----------
    rate
        Probability per action of an instrument it can hit (0 to 1).
    at
        Action numbers (per instrument, from 0, retries included) at which it always strikes.
    devices
        Instruments it may hit (default: every instrument the kind applies to).
    step
        Size of the fault where it has one: ``drift`` deg of 2-theta per strike,
        ``setpoint_miss`` relative deviation of the setpoint (0.1 = 10 %).
    """

    rate: float = 0.0
    at: tuple[int, ...] = ()
    devices: tuple[str, ...] = ()
    step: float = 0.0

    def strikes(self, kind: str, device: str, action: int, rng: np.random.Generator) -> bool:
        if device not in (self.devices or FAULT_TARGETS[kind]):
            return False
        drawn = rng.random() < self.rate if self.rate > 0 else False
        return drawn or action in self.at


@dataclass
class FaultInjector:
    """Decides and applies the faults of one simulated lab, reproducibly from ``seed``.

    Every instrument calls :meth:`begin_action` when an action starts; what it returns
    is the set of fault kinds striking that action, and the data hooks
    (:meth:`pattern`, :meth:`image`, :meth:`check_setpoints`) apply them.
    """

    specs: Mapping[str, FaultSpec] = field(default_factory=dict)
    seed: int = 0
    _rng: np.random.Generator = field(init=False, repr=False)
    _actions: Counter[str] = field(init=False, repr=False, default_factory=Counter)
    _struck: Counter[str] = field(init=False, repr=False, default_factory=Counter)
    _drift_deg: float = field(init=False, default=0.0)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)
    _never: threading.Event = field(init=False, repr=False, default_factory=threading.Event)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.specs) - set(FAULT_TARGETS))
        if unknown:
            raise ValueError(f"unknown fault kind(s) {unknown}; known: {sorted(FAULT_TARGETS)}")
        self._rng = np.random.default_rng(self.seed)

    @property
    def injected(self) -> Counter[str]:
        """How many faults of each kind have struck so far."""
        return self._struck

    def begin_action(self, device: str) -> frozenset[str]:
        """The fault kinds striking this action of ``device``; raises or hangs for those that
        stop it (``instrument_error``, ``timeout``)."""
        with self._lock:
            action = self._actions[device]
            self._actions[device] += 1
            struck = frozenset(
                kind
                for kind, spec in self.specs.items()
                if spec.strikes(kind, device, action, self._rng)
            )
            self._struck.update(struck)
            if "drift" in struck:
                self._drift_deg += self.specs["drift"].step
        if "instrument_error" in struck:
            raise InstrumentFault(f"{device}: injected instrument error in action {action}")
        if "timeout" in struck:
            self._never.wait()  # a hung controller: this action never returns
        return struck

    def recalibrate(self) -> None:
        """What an operator does about drift: the 2-theta zero is set right again."""
        with self._lock:
            self._drift_deg = 0.0

    def pattern(
        self, struck: Iterable[str], two_theta_deg: np.ndarray, counts: np.ndarray
    ) -> np.ndarray:
        """The counts as the faulty detector reports them."""
        struck = set(struck)
        counts = np.array(counts, dtype=float)
        if self._drift_deg:
            counts = np.interp(two_theta_deg - self._drift_deg, two_theta_deg, counts)
        if "nan_data" in struck:
            counts[self._rng.random(counts.size) < 0.05] = np.nan
        if "saturated_data" in struck:
            counts = np.minimum(counts, np.quantile(counts, 0.7))
        if "empty_data" in struck:
            counts[:] = 0.0
        return counts

    def image(self, struck: Iterable[str], image: np.ndarray) -> np.ndarray:
        """The micrograph as the faulty microscope reports it."""
        if "blank_image" in set(struck):
            return np.full_like(image, float(np.mean(image)))
        return image

    def check_setpoints(self, struck: Iterable[str], conditions: Mapping[str, float]) -> None:
        """Raise :class:`SetpointMissed` if a fault kept the reactor off one of its setpoints."""
        if "setpoint_miss" not in set(struck):
            return
        name = sorted(conditions)[int(self._rng.integers(len(conditions)))]
        reached = conditions[name] * (1.0 - self.specs["setpoint_miss"].step)
        raise SetpointMissed(
            f"reactor: {name} reached {reached:.4g}, setpoint "
            f"{conditions[name]:.4g} (injected setpoint miss)"
        )
