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
Comparison = Literal["<=", ">="]
COMPARISONS: tuple[Comparison, ...] = ("<=", ">=")


@dataclass(frozen=True)
class Parameter:
    """One knob of the experiment: a value in the closed interval ``[low, high]``.

    With ``log_scale`` the unit-cube coordinate is linear in ``log(value)``, so a model
    sees, e.g., 1 and 10 minutes as far apart as 10 and 100 minutes.

    With ``values`` the parameter is discrete: only those levels are allowed (an integer
    count, a set of stock concentrations). With ``categorical`` too, the levels are codes of
    unordered categories (a solvent, a substrate), which a model must not treat as near or
    far from each other.

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
    values
        The allowed levels (at least 2, inside ``[low, high]``); None for a continuous value.
    categorical
        Whether ``values`` are unordered category codes (needs ``values``).
    """

    name: str
    low: float
    high: float
    unit: str
    log_scale: bool = False
    values: tuple[float, ...] | None = None
    categorical: bool = False

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
        if self.values is not None:
            levels = tuple(sorted({float(v) for v in self.values}))
            if len(levels) < 2 or levels[0] < self.low or levels[-1] > self.high:
                raise ValueError(
                    f"parameter {self.name!r}: values must be at least 2 distinct levels inside "
                    f"{self.describe_range()}, got {list(self.values)}"
                )
            object.__setattr__(self, "values", levels)
        elif self.categorical:
            raise ValueError(f"parameter {self.name!r}: categorical needs its values (codes)")

    @classmethod
    def integer(cls, name: str, low: int, high: int, unit: str = "") -> Parameter:
        """A whole-number parameter with every integer level of ``[low, high]``."""
        return cls(name, float(low), float(high), unit, values=tuple(range(low, high + 1)))

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


def _split_comparison(text: str, what: str, form: str) -> tuple[str, Comparison, float]:
    """``"left <= 1.5"`` as ``("left", "<=", 1.5)``; ``ValueError`` naming ``what`` otherwise."""
    for op in COMPARISONS:
        left, found, bound = text.partition(op)
        if found:
            return left, op, float(bound)
    raise ValueError(f"{what} {text!r} must read '{form}' (or with '>=')")


@dataclass(frozen=True)
class OutcomeConstraint:
    """A limit a measured outcome must respect for a trial to count: ``name op bound``.

    E.g. a safety limit (``pressure_bar <= 20``) or a phase-purity requirement
    (``rutile_fraction <= 0.05``). The outcome is measured with every trial, like the
    objectives, but is not itself optimised.
    """

    name: str
    op: Comparison
    bound: float

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a constraint needs an outcome name, got {self.name!r}")
        if self.op not in COMPARISONS:
            raise ValueError(
                f"constraint on {self.name!r}: op must be one of {COMPARISONS}, got {self.op!r}"
            )
        if not math.isfinite(self.bound):
            raise ValueError(f"constraint on {self.name!r}: bound must be finite")

    @classmethod
    def parse(cls, spec: str | Mapping[str, object] | OutcomeConstraint) -> OutcomeConstraint:
        """From ``"rutile_fraction <= 0.05"`` or ``{"name": ..., "op": "<=", "bound": ...}``."""
        if isinstance(spec, OutcomeConstraint):
            return spec
        if isinstance(spec, str):
            name, op, bound = _split_comparison(spec, "outcome constraint", "name <= bound")
            return cls(name.strip(), op, bound)
        return cls(str(spec["name"]), spec["op"], float(spec["bound"]))  # type: ignore[arg-type]

    def slack(self, value: float) -> float:
        """How far ``value`` is inside the limit (negative: violated)."""
        return self.bound - value if self.op == "<=" else value - self.bound

    def satisfied(self, value: float) -> bool:
        """Whether ``value`` respects the limit."""
        return self.slack(value) >= 0


@dataclass(frozen=True)
class LinearConstraint:
    """A linear limit on the conditions: ``sum_i coefficients[i] * value_i  op  bound``.

    E.g. precursor fractions that may not add up to more than 1: coefficients
    ``{"a": 1, "b": 1}``, ``op="<="``, ``bound=1``. Parameters on a log scale cannot appear.
    """

    coefficients: tuple[tuple[str, float], ...]
    op: Comparison
    bound: float

    def __post_init__(self) -> None:
        coefficients = self.coefficients
        if isinstance(coefficients, Mapping):
            coefficients = tuple(coefficients.items())
        coefficients = tuple((str(name), float(c)) for name, c in coefficients)
        if not coefficients:
            raise ValueError("a linear constraint needs at least one coefficient")
        if self.op not in COMPARISONS:
            raise ValueError(f"linear constraint: op must be one of {COMPARISONS}, got {self.op!r}")
        object.__setattr__(self, "coefficients", coefficients)

    @classmethod
    def parse(cls, spec: str | Mapping[str, object] | LinearConstraint) -> LinearConstraint:
        """From ``"a + 2*b <= 1"`` or ``{"coefficients": {"a": 1, "b": 2}, "op": ..., ...}``."""
        if isinstance(spec, LinearConstraint):
            return spec
        if isinstance(spec, str):
            left, op, bound = _split_comparison(spec, "linear constraint", "a + 2*b <= bound")
            coefficients = []
            for term in filter(None, left.replace(" ", "").replace("-", "+-").split("+")):
                factor, star, name = term.rpartition("*")
                if star:
                    coefficients.append((name, float(factor)))
                else:
                    coefficients.append((name.lstrip("-"), -1.0 if name[0] == "-" else 1.0))
            return cls(tuple(coefficients), op, bound)
        return cls(
            tuple(dict(spec["coefficients"]).items()),  # type: ignore[call-overload]
            spec["op"],  # type: ignore[arg-type]
            float(spec["bound"]),  # type: ignore[arg-type]
        )

    def slack(self, values: np.ndarray, names: Sequence[str]) -> np.ndarray:
        """How far each row of ``values`` (``n x d``, parameter units) is inside the limit."""
        columns = [list(names).index(name) for name, _ in self.coefficients]
        total = np.asarray(values, dtype=float)[..., columns] @ np.array(
            [c for _, c in self.coefficients]
        )
        return self.bound - total if self.op == "<=" else total - self.bound

    def describe(self) -> str:
        """The constraint as a person writes it."""
        terms = " + ".join(f"{c:g}*{name}" for name, c in self.coefficients)
        return f"{terms} {self.op} {self.bound:g}"


@dataclass(frozen=True)
class SearchSpace:
    """The allowed conditions: the box of the parameters' intervals, or a pool of candidates.

    Without ``candidates`` any point of the box may be proposed. With ``candidates`` (a pool:
    a library of pre-made samples, the rows of a recorded data set) an agent proposes only
    rows of the pool, each at most once per campaign.

    Attributes
    ----------
    parameters
        The parameters, in the column order of every ``n x d`` array.
    candidates
        The pool, one row per candidate in parameter units (columns in the order of
        ``parameters``), every row inside the bounds and no row twice; None for the box.
        ``from_candidates`` builds a pool-based space whose bounds are the pool's extent.
    linear_constraints
        Linear limits every proposal satisfies (in a pool, rows that break one are skipped).
    """

    parameters: tuple[Parameter, ...]
    candidates: tuple[tuple[float, ...], ...] | None = None
    linear_constraints: tuple[LinearConstraint, ...] = ()

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
        if self.candidates is not None:
            object.__setattr__(self, "candidates", self._checked_pool(self.candidates))
        constraints = tuple(LinearConstraint.parse(c) for c in self.linear_constraints)
        for constraint in constraints:
            for name, _ in constraint.coefficients:
                if name not in names:
                    raise ValueError(
                        f"linear constraint {constraint.describe()!r} names {name!r}, which is "
                        f"not a parameter; parameters: {names}"
                    )
                if self.parameters[names.index(name)].log_scale:
                    raise ValueError(
                        f"linear constraint {constraint.describe()!r}: {name!r} is on a log "
                        "scale, which a linear constraint cannot describe"
                    )
        object.__setattr__(self, "linear_constraints", constraints)

    def _checked_pool(self, candidates: object) -> tuple[tuple[float, ...], ...]:
        """The candidate rows as a tuple of float tuples, after checking shape, bounds, repeats."""
        rows = np.asarray(candidates, dtype=float)
        if rows.ndim != 2 or rows.shape[1] != self.dim or rows.shape[0] == 0:
            raise ValueError(
                f"candidates must be a non-empty n x {self.dim} table (one column per parameter "
                f"{list(self.names)}), got shape {rows.shape}"
            )
        if not np.isfinite(rows).all():
            raise ValueError("candidates must be finite numbers")
        for column, p in enumerate(self.parameters):
            outside = (rows[:, column] < p.low) | (rows[:, column] > p.high)
            if outside.any():
                row = int(np.argmax(outside))
                raise ValueError(
                    f"candidate {row}: {p.name} = {rows[row, column]:g} is outside the allowed "
                    f"range {p.describe_range()}"
                )
        _, first, counts = np.unique(rows, axis=0, return_index=True, return_counts=True)
        if (counts > 1).any():
            row = int(first[np.argmax(counts > 1)])
            raise ValueError(
                f"candidate {row} appears {int(counts.max())} times; each candidate must be "
                "listed once (average repeated measurements before building a pool)"
            )
        return tuple(tuple(map(float, row)) for row in rows)

    @classmethod
    def from_candidates(
        cls,
        names: Sequence[str],
        candidates: np.ndarray | Sequence[Sequence[float]],
        units: Sequence[str] | None = None,
    ) -> SearchSpace:
        """A pool-based space over ``candidates`` (``n x d``) whose bounds are the pool's extent.

        A column with a single value gets bounds ``value +- 0.5`` (or ``+- 0.5 |value|``), since
        a parameter needs ``low < high``; it is constant over the pool either way.
        """
        rows = np.asarray(candidates, dtype=float)
        if rows.ndim != 2 or rows.shape[1] != len(names):
            raise ValueError(
                f"candidates must be an n x {len(names)} table, got shape {rows.shape}"
            )
        units = [""] * len(names) if units is None else list(units)
        parameters = []
        for column, (name, unit) in enumerate(zip(names, units, strict=True)):
            low, high = float(rows[:, column].min()), float(rows[:, column].max())
            if low == high:
                half_width = 0.5 * abs(low) if low != 0 else 0.5
                low, high = low - half_width, high + half_width
            parameters.append(Parameter(name, low, high, unit))
        return cls(tuple(parameters), candidates=tuple(map(tuple, rows)))

    @property
    def is_pool(self) -> bool:
        """Whether proposals are restricted to the rows of ``candidates``."""
        return self.candidates is not None

    @property
    def candidate_array(self) -> np.ndarray:
        """``n x d`` array of the pool in parameter units (``ValueError`` for a box)."""
        if self.candidates is None:
            raise ValueError("this search space is a box, it has no candidate pool")
        return np.array(self.candidates, dtype=float).reshape(-1, self.dim)

    def candidate_index(self, points: np.ndarray) -> np.ndarray:
        """Row of the pool equal to each of the ``m x d`` points (to 1e-9 relative), -1 if none."""
        pool = self.candidate_array
        values = np.atleast_2d(np.asarray(points, dtype=float))
        scale = np.maximum(np.abs(pool).max(axis=0), 1e-300)
        close = np.all(np.abs(values[:, None, :] - pool[None, :, :]) <= 1e-9 * scale, axis=-1)
        return np.where(close.any(axis=1), np.argmax(close, axis=1), -1)

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
        """Raise ``ValueError`` naming the first parameter that is missing or out of range.

        In a pool-based space the point must also be one of the candidates.
        """
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
            if p.values is not None and not np.isclose(p.values, value, rtol=1e-9).any():
                raise ValueError(f"{p.name} = {value:g} is not one of its levels {list(p.values)}")
        for constraint in self.linear_constraints:
            if constraint.slack(self.to_array([point]), self.names)[0] < -1e-9:
                raise ValueError(f"point {dict(point)} breaks {constraint.describe()}")
        if self.is_pool and self.candidate_index(self.to_array([point]))[0] < 0:
            raise ValueError(
                f"point {dict(point)} is not one of the {len(self.candidate_array)} candidates"
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
        """Map ``... x d`` unit-cube coordinates back to parameter units, clipped to the bounds.

        A discrete parameter takes its level nearest (in unit-cube distance) to the coordinate.
        """
        low, high = self._warped_bounds()
        warped = low + np.asarray(unit_values, dtype=float) * (high - low)
        values = warped.copy()
        log_mask = self._log_mask()
        values[..., log_mask] = np.exp(warped[..., log_mask])
        values = np.clip(values, self.bounds[0], self.bounds[1])
        for column, levels in self.discrete_levels().items():
            unit_levels = self.level_coordinates(column)
            nearest = np.abs(np.asarray(unit_values)[..., column, None] - unit_levels).argmin(-1)
            values[..., column] = np.asarray(levels)[nearest]
        return values

    def discrete_levels(self) -> dict[int, tuple[float, ...]]:
        """Column index -> allowed levels, for every discrete parameter."""
        return {i: p.values for i, p in enumerate(self.parameters) if p.values is not None}

    def level_coordinates(self, column: int) -> np.ndarray:
        """Unit-cube coordinates of the levels of the discrete parameter in ``column``."""
        levels = np.zeros((len(self.parameters[column].values or ()), self.dim))
        levels[:, column] = self.parameters[column].values or ()
        levels[:, [i for i in range(self.dim) if i != column]] = self.bounds[
            0, [i for i in range(self.dim) if i != column]
        ]
        return self.to_unit(levels)[:, column]

    def feasible(self, values: np.ndarray) -> np.ndarray:
        """Whether each row of ``values`` (``n x d``, parameter units) meets the linear limits."""
        values = np.atleast_2d(values)
        ok = np.ones(len(values), dtype=bool)
        for constraint in self.linear_constraints:
            ok &= constraint.slack(values, self.names) >= -1e-9
        return ok

    def _log_mask(self) -> np.ndarray:
        return np.array([p.log_scale for p in self.parameters])

    def _warp(self, values: np.ndarray) -> np.ndarray:
        """Natural log of the log-scale columns, the others unchanged."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self._log_mask(), np.log(values), values)

    def _warped_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        low, high = self._warp(self.bounds)
        return low, high
