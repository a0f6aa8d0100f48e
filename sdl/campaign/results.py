"""What a campaign produced: its experiments, faults, and how they rank (best, Pareto set).

Shared by the loop (:mod:`sdl.loop.runner`) that fills a :class:`CampaignResult` and the
reports that read one; several objectives are ranked with BoTorch's Pareto and hypervolume
utilities.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from botorch.utils.multi_objective.hypervolume import Hypervolume, infer_reference_point
from botorch.utils.multi_objective.pareto import is_non_dominated

from agents import OutcomeConstraint
from sdl.campaign.config import CampaignConfig


@dataclass(frozen=True)
class ExperimentRecord:
    """One finished experiment: what was asked, what came out, where the raw data is."""

    iteration: int
    proposal_id: str
    conditions: dict[str, float]
    features: dict[str, float]
    raw_uid: str
    instrument_time_s: float
    station: str = ""

    @property
    def failed(self) -> bool:
        return not self.features


@dataclass(frozen=True)
class Fault:
    """Something that went wrong in one attempt, and what the campaign did about it."""

    kind: str
    reason: str
    iteration: int
    proposal_id: str
    attempt: int
    action: str = ""
    raw_uid: str | None = None
    conditions: Mapping[str, float] = field(default_factory=dict)


@dataclass
class CampaignResult:
    """What a campaign produced, in order, with the objectives' directions to rank it.

    ``objective``, ``maximize``, ``objective_values`` and ``best`` speak of the first
    objective; with several, ``pareto`` and ``hypervolume`` rank by all of them. ``best`` and
    ``pareto`` count only experiments that meet the campaign's outcome constraints.
    """

    config: CampaignConfig
    records: list[ExperimentRecord] = field(default_factory=list)
    refused: int = 0
    faults: list[Fault] = field(default_factory=list)
    stopped: str | None = None

    @property
    def objective(self) -> str:
        return self.config.objectives[0].name

    @property
    def maximize(self) -> bool:
        return self.config.objectives[0].direction == "maximize"

    def objective_values(self) -> np.ndarray:
        """The objective of every experiment in order (NaN where it failed)."""
        return np.array([r.features.get(self.objective, math.nan) for r in self.records])

    def feasible_objective_values(self) -> np.ndarray:
        """``objective_values`` with NaN where an outcome constraint is broken."""
        return np.where(self.feasible(), self.objective_values(), math.nan)

    @property
    def best(self) -> ExperimentRecord | None:
        """The experiment with the best first objective among the feasible ones (None if none)."""
        values = self.feasible_objective_values()
        if not np.isfinite(values).any():
            return None
        index = np.nanargmax(values) if self.maximize else np.nanargmin(values)
        return self.records[int(index)]

    @property
    def objective_names(self) -> list[str]:
        """Every objective, in the campaign file's order."""
        return [objective.name for objective in self.config.objectives]

    @property
    def maximizes(self) -> list[bool]:
        """For each objective, whether larger is better."""
        return [objective.direction == "maximize" for objective in self.config.objectives]

    def objective_matrix(self) -> np.ndarray:
        """``experiments x objectives`` measured values in order (NaN where missing)."""
        return np.array(
            [
                [r.features.get(name, math.nan) for name in self.objective_names]
                for r in self.records
            ],
            dtype=float,
        ).reshape(len(self.records), len(self.objective_names))

    def feasible(self) -> np.ndarray:
        """Per experiment: every objective measured and every outcome constraint met."""
        return np.array(
            [
                np.isfinite(values).all()
                and outcomes_feasible(record.features, self.config.constraints.outcomes)
                for record, values in zip(self.records, self.objective_matrix(), strict=True)
            ],
            dtype=bool,
        )

    def pareto_mask(self, experiments: int | None = None) -> np.ndarray:
        """Per experiment: on the Pareto front of the first ``experiments`` (default: all).

        Only feasible experiments (:meth:`feasible`) take part; experiments past
        ``experiments`` are never on it.
        """
        count = len(self.records) if experiments is None else experiments
        values = np.where(self.feasible()[:, None], self.objective_matrix(), math.nan)
        values[count:] = math.nan
        return pareto_mask(values, self.maximizes)

    @property
    def pareto(self) -> list[ExperimentRecord]:
        """The feasible experiments no other feasible one beats in every objective, in order.

        With one objective, every feasible experiment that ties for the best value.
        """
        return [r for r, on_front in zip(self.records, self.pareto_mask(), strict=True) if on_front]

    @property
    def reference_point(self) -> dict[str, float] | None:
        """Where hypervolume is measured from: the campaign's ``reference_point`` if given,
        else BoTorch's ``infer_reference_point`` on the observed front (its nadir less 10 %
        of its range, as the bayesian agent does); None before any feasible experiment."""
        return hypervolume_reference(
            self.objective_matrix()[self.pareto_mask()],
            self.objective_names,
            self.maximizes,
            self.config.reference_point,
        )

    def hypervolume(
        self, reference_point: Mapping[str, float] | None = None, experiments: int | None = None
    ) -> float:
        """Hypervolume the observed front dominates above ``reference_point``.

        Measured in the objectives' own units (their product), over the first
        ``experiments`` experiments (default: all); ``reference_point`` defaults to
        :attr:`reference_point`. Zero when no feasible experiment beats the reference point
        in every objective.
        """
        reference = self.reference_point if reference_point is None else reference_point
        if reference is None:
            return 0.0
        values = self.objective_matrix()[self.pareto_mask(experiments)]
        return front_hypervolume(
            values, self.maximizes, [reference[name] for name in self.objective_names]
        )

    @property
    def instrument_hours(self) -> float:
        """Instrument time of all experiments together."""
        return sum(r.instrument_time_s for r in self.records) / 3600.0

    @property
    def makespan_hours(self) -> float:
        """Instrument time of the busiest station: how long the campaign took when its
        stations worked side by side."""
        per_station: dict[str, float] = {}
        for record in self.records:
            per_station[record.station] = (
                per_station.get(record.station, 0.0) + record.instrument_time_s
            )
        return max(per_station.values(), default=0.0) / 3600.0


def pareto_mask(values: np.ndarray, maximize: Sequence[bool]) -> np.ndarray:
    """Which rows of ``values`` (``n x m``: experiments x objectives) are non-dominated.

    A row with a NaN is never on the front and dominates nothing. Rows that tie exactly
    are all kept. BoTorch's ``is_non_dominated`` on the values turned to maximisation.
    """
    values = np.asarray(values, dtype=float)
    signed = values * np.where(np.asarray(maximize, dtype=bool), 1.0, -1.0)
    finite = np.isfinite(signed).all(axis=1)
    mask = np.zeros(len(signed), dtype=bool)
    if finite.any():
        mask[finite] = is_non_dominated(torch.as_tensor(signed[finite]), deduplicate=False).numpy()
    return mask


def front_hypervolume(
    values: np.ndarray, maximize: Sequence[bool], reference_point: Sequence[float]
) -> float:
    """Hypervolume dominated by the finite rows of ``values`` (``n x m``) above
    ``reference_point`` (``m``), both in the objectives' units and directions.

    BoTorch's exact ``Hypervolume``; rows not strictly better than the reference point in
    every objective add nothing.
    """
    signs = np.where(np.asarray(maximize, dtype=bool), 1.0, -1.0)
    values = np.asarray(values, dtype=float).reshape(-1, len(signs))
    front = values[pareto_mask(values, maximize)] * signs
    reference = torch.as_tensor(np.asarray(reference_point, dtype=float) * signs)
    if not len(front):
        return 0.0
    return float(Hypervolume(reference).compute(torch.as_tensor(front)))


def dominated_outline(
    front: np.ndarray, maximize: Sequence[bool], reference_point: Sequence[float]
) -> np.ndarray:
    """Corners of the region two objectives' ``front`` (``n x 2``) dominates above
    ``reference_point``: a staircase from the reference point round and back to it, in the
    objectives' units (what :func:`front_hypervolume` measures, to draw)."""
    signs = np.where(np.asarray(maximize, dtype=bool), 1.0, -1.0)
    reference = np.asarray(reference_point, dtype=float) * signs
    signed = np.asarray(front, dtype=float).reshape(-1, 2) * signs
    signed = signed[(signed > reference).all(axis=1)]
    signed = signed[np.argsort(signed[:, 0])]
    corners: list[np.ndarray | tuple[float, float]] = (
        [reference, (reference[0], signed[0, 1])] if len(signed) else [reference]
    )
    for index, (x, y) in enumerate(signed):
        corners.append((x, y))
        corners.append((x, signed[index + 1, 1] if index + 1 < len(signed) else reference[1]))
    return np.array(corners, dtype=float) * signs


def hypervolume_reference(
    front: np.ndarray,
    names: Sequence[str],
    maximize: Sequence[bool],
    given: Mapping[str, float] | None = None,
) -> dict[str, float] | None:
    """The reference point of a hypervolume: ``given`` (``{objective: value}``), else
    BoTorch's ``infer_reference_point`` on ``front`` (``n x m`` Pareto-optimal values), as
    the bayesian agent does; None when neither is there."""
    if given is not None:
        return {name: float(given[name]) for name in names}
    if not len(front):
        return None
    signs = np.where(np.asarray(maximize, dtype=bool), 1.0, -1.0)
    inferred = infer_reference_point(torch.as_tensor(np.asarray(front, dtype=float) * signs))
    return dict(zip(names, (inferred.numpy() * signs).tolist(), strict=True))


def outcomes_feasible(features: Mapping[str, float], outcome_constraints: Sequence[str]) -> bool:
    """Whether measured ``features`` meet the campaign's ``constraints.outcomes``; a
    constrained outcome that was not measured counts as broken."""
    for spec in outcome_constraints:
        constraint = OutcomeConstraint.parse(spec)
        value = features.get(constraint.name, math.nan)
        if not (math.isfinite(value) and constraint.satisfied(value)):
            return False
    return True
