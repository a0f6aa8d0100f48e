"""What an agent may choose and what it is trying to achieve: parameters, objectives, the box.

Everything here is plain data. Bounds and units come from the campaign; no agent hard-codes
them. Points cross this boundary as ``{parameter name: value}`` mappings in the parameters'
own units; arrays of shape ``n x d`` (columns in the order of ``SearchSpace.parameters``) are
what the agents compute with, and ``to_unit``/``from_unit`` map them to and from the unit cube
``[0, 1]^d`` in which every model works.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Direction = Literal["maximize", "minimize"]
DIRECTIONS: tuple[Direction, ...] = ("maximize", "minimize")


@dataclass(frozen=True)
class Parameter:
    """One knob of the experiment: a continuous value in the closed interval ``[low, high]``.

    With ``log_scale`` the unit-cube coordinate is linear in ``log(value)``, so a model
    sees, e.g., 1 and 10 minutes as far apart as 10 and 100 minutes.

    Parameters
    ----------
    name
        Key of this parameter in every point.
    low, high
        Bounds in ``unit``; ``low < high``, both finite (and ``low > 0`` with ``log_scale``).
    unit
        Unit of the values, as written in reports (``"degC"``, ``"h"``; ``""`` if dimensionless).
    log_scale
        Whether the parameter is searched on a logarithmic scale.
    """

    name: str
    low: float
    high: float
    unit: str
    log_scale: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a parameter name must be a non-empty string, got {self.name!r}")
        if self.name == "_id":
            raise ValueError("'_id' is reserved for the suggestion id and cannot name a parameter")
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError(
                f"parameter {self.name!r}: bounds must be finite, got [{self.low:g}, {self.high:g}]"
            )
        if not self.low < self.high:
            raise ValueError(
                f"parameter {self.name!r}: low must be below high, "
                f"got [{self.low:g}, {self.high:g}]"
            )
        if self.log_scale and self.low <= 0:
            raise ValueError(
                f"parameter {self.name!r}: log_scale needs low > 0, got low={self.low:g}"
            )

    def describe_range(self) -> str:
        """The allowed range as a person reads it, e.g. ``[80, 250] degC``."""
        return f"[{self.low:g}, {self.high:g}]" + (f" {self.unit}" if self.unit else "")


@dataclass(frozen=True)
class Objective:
    """One measured outcome to drive to an extreme.

    Parameters
    ----------
    name
        Key of this outcome in ingested points.
    direction
        ``"maximize"`` or ``"minimize"``.
    target
        If given, a value good enough to stop the campaign at: reached when an observation is
        at least ``target`` (maximize) or at most ``target`` (minimize).
    """

    name: str
    direction: Direction
    target: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"an objective name must be a non-empty string, got {self.name!r}")
        if self.direction not in DIRECTIONS:
            raise ValueError(
                f"objective {self.name!r}: direction must be one of {DIRECTIONS}, "
                f"got {self.direction!r}"
            )
        if self.target is not None and not math.isfinite(self.target):
            raise ValueError(f"objective {self.name!r}: target must be finite, got {self.target}")

    @property
    def sign(self) -> float:
        """``+1`` to maximise, ``-1`` to minimise: ``sign * value`` is always to be maximised."""
        return 1.0 if self.direction == "maximize" else -1.0

    def is_better(self, value: float, than: float) -> bool:
        """Whether ``value`` is strictly better than ``than`` in this objective's direction."""
        return self.sign * value > self.sign * than

    def reached(self, value: float) -> bool:
        """Whether ``value`` meets the target (always False without a target)."""
        return self.target is not None and not self.is_better(self.target, value)


@dataclass(frozen=True)
class SearchSpace:
    """The box of allowed conditions: the product of the parameters' intervals.

    Attributes
    ----------
    parameters
        The parameters, in the column order of every ``n x d`` array.
    """

    parameters: tuple[Parameter, ...]

    def __post_init__(self) -> None:
        parameters = tuple(self.parameters)
        if not parameters:
            raise ValueError("a search space needs at least one parameter")
        if not all(isinstance(p, Parameter) for p in parameters):
            raise TypeError("a search space is built from Parameter objects")
        names = [p.name for p in parameters]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"parameter names must be unique, repeated: {duplicates}")
        object.__setattr__(self, "parameters", parameters)

    @property
    def names(self) -> tuple[str, ...]:
        """Parameter names in column order."""
        return tuple(p.name for p in self.parameters)

    @property
    def dim(self) -> int:
        """Number of parameters ``d``."""
        return len(self.parameters)

    @property
    def bounds(self) -> np.ndarray:
        """``2 x d`` array: row 0 the lower bounds, row 1 the upper bounds, in parameter units."""
        return np.array([[p.low for p in self.parameters], [p.high for p in self.parameters]])

    def contains(self, point: Mapping[str, float]) -> bool:
        """Whether ``point`` gives every parameter a value inside its bounds."""
        try:
            self.validate(point)
        except ValueError:
            return False
        return True

    def validate(self, point: Mapping[str, float]) -> None:
        """Raise ``ValueError`` naming the first parameter that is missing or out of range."""
        for p in self.parameters:
            if p.name not in point:
                raise ValueError(
                    f"point has no value for {p.name!r} (allowed {p.describe_range()})"
                )
            value = float(point[p.name])
            if not p.low <= value <= p.high:
                raise ValueError(
                    f"{p.name} = {value:g} is outside the allowed range {p.describe_range()}"
                )

    def to_array(self, points: Sequence[Mapping[str, float]]) -> np.ndarray:
        """``n x d`` array of the points' parameter values (extra keys are ignored)."""
        return np.array(
            [[float(point[name]) for name in self.names] for point in points], dtype=float
        ).reshape(len(points), self.dim)

    def to_points(self, values: np.ndarray) -> list[dict[str, float]]:
        """One ``{name: value}`` dict per row of an ``n x d`` array."""
        return [
            dict(zip(self.names, map(float, row), strict=True)) for row in np.atleast_2d(values)
        ]

    def to_unit(self, values: np.ndarray) -> np.ndarray:
        """Map ``... x d`` values in parameter units to unit-cube coordinates (0 = low, 1 = high).

        Values outside the bounds map outside ``[0, 1]``; nothing is clipped.
        """
        low, high = self._warped_bounds()
        return (self._warp(np.asarray(values, dtype=float)) - low) / (high - low)

    def from_unit(self, unit_values: np.ndarray) -> np.ndarray:
        """Map ``... x d`` unit-cube coordinates back to parameter units, clipped to the bounds."""
        low, high = self._warped_bounds()
        warped = low + np.asarray(unit_values, dtype=float) * (high - low)
        values = warped.copy()
        log_mask = self._log_mask()
        values[..., log_mask] = np.exp(warped[..., log_mask])
        return np.clip(values, self.bounds[0], self.bounds[1])

    def _log_mask(self) -> np.ndarray:
        return np.array([p.log_scale for p in self.parameters])

    def _warp(self, values: np.ndarray) -> np.ndarray:
        """Natural log of the log-scale columns, the others unchanged."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self._log_mask(), np.log(values), values)

    def _warped_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        low, high = self._warp(self.bounds)
        return low, high
