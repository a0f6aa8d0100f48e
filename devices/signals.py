"""Signals with the safety and metadata our instruments need on every backend."""

from __future__ import annotations

from typing import Any

from ophyd import Signal
from ophyd.utils.errors import LimitError


class LimitedSignal(Signal):
    """A settable condition that refuses any value outside its safe limits before it moves.

    The limits and units are reported in ``describe()`` (``lower_ctrl_limit``,
    ``upper_ctrl_limit``, ``units``) exactly as an EPICS record would report them, so plans
    and the campaign validator read them the same way on every backend.
    """

    def __init__(
        self, *, limits: tuple[float, float], units: str, value: float | None = None, **kwargs: Any
    ) -> None:
        low, high = (float(v) for v in limits)
        if not low < high:
            raise ValueError(f"limits must satisfy low < high, got {limits}")
        self._limits = (low, high)
        self._units = units
        super().__init__(value=low if value is None else value, **kwargs)

    @property
    def limits(self) -> tuple[float, float]:
        return self._limits

    @property
    def units(self) -> str:
        return self._units

    def check_value(self, value: Any) -> None:
        super().check_value(value)
        low, high = self._limits
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{self.name} must be a number, got {value!r}") from None
        if not low <= number <= high:
            raise LimitError(
                f"{self.name}={number:g} {self._units} is outside the safe range "
                f"[{low:g}, {high:g}] {self._units}"
            )

    def put(self, value: Any, **kwargs: Any) -> None:
        self.check_value(value)
        super().put(float(value), **kwargs)

    def set(self, value: Any, **kwargs: Any) -> Any:
        # ophyd checks inside the Status's thread; refuse here so the caller sees the error
        # at once and no Status for an unsafe move is ever created.
        self.check_value(value)
        return super().set(value, **kwargs)

    def describe(self) -> dict[str, dict[str, Any]]:
        description = super().describe()
        low, high = self._limits
        description[self.name].update(
            units=self._units, lower_ctrl_limit=low, upper_ctrl_limit=high
        )
        return description


class MeasuredSignal(Signal):
    """A read-back value (a scalar or an array) that states its units and shape."""

    def __init__(self, *, units: str = "", **kwargs: Any) -> None:
        self._units = units
        super().__init__(**kwargs)

    def describe(self) -> dict[str, dict[str, Any]]:
        description = super().describe()
        if self._units:
            description[self.name]["units"] = self._units
        return description
