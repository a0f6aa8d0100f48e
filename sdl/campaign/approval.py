"""The approval gate: which of the agent's proposals wait for a person before they run.

The campaign file's ``approval`` section sets the gate: ``none`` (the default), ``all``, or
``rules``, where a proposal waits when any rule holds (it goes past a soft limit, leaves the
region already explored, or the agent predicts a value or an uncertainty past a threshold).
:func:`approval_reasons` says why a proposal waits; the waiting itself and the person's
decision are :class:`~sdl.campaign.control.CampaignControl`'s (docs/operations.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import Field, model_validator

from sdl.campaign.schema import StrictModel

#: Who decides a proposal whose wait ran out under ``on_timeout: approve`` or ``reject``.
TIMEOUT_DECIDER = "approval gate (timeout)"


class Band(StrictModel):
    """A value past ``above`` or below ``below`` (either or both) needs a person."""

    above: float | None = None
    below: float | None = None

    @model_validator(mode="after")
    def _one_side_at_least(self) -> Band:
        if self.above is None and self.below is None:
            raise ValueError("give above, below or both")
        return self

    def crossed_by(self, value: float) -> str | None:
        """How ``value`` crosses the band ("above 900"), or None if it does not."""
        if self.above is not None and value > self.above:
            return f"above {self.above:g}"
        if self.below is not None and value < self.below:
            return f"below {self.below:g}"
        return None


class ApprovalRules(StrictModel):
    """Each rule that holds for a proposal makes it wait; no rule holding, it runs."""

    soft_limits: dict[str, Band] = Field(
        default_factory=dict, description="condition -> a value past these needs a person"
    )
    outside_explored: float | None = Field(
        default=None,
        gt=0,
        description="a proposal farther than this from every experiment done, measured in the "
        "search space scaled to 0-1 per condition (Euclidean), needs a person",
    )
    predicted: dict[str, Band] = Field(
        default_factory=dict, description="objective -> a predicted mean past these needs a person"
    )
    uncertainty_above: dict[str, float] = Field(
        default_factory=dict,
        description="objective -> a predicted standard deviation above this needs a person",
    )

    @property
    def empty(self) -> bool:
        return not (
            self.soft_limits
            or self.outside_explored is not None
            or self.predicted
            or self.uncertainty_above
        )


class ApprovalConfig(StrictModel):
    """Which proposals wait for a person, and what happens when nobody comes."""

    mode: Literal["none", "all", "rules"] = Field(
        default="none", description="none: nothing waits; all: every agent proposal; rules"
    )
    rules: ApprovalRules = Field(default_factory=ApprovalRules)
    timeout_s: float | None = Field(
        default=3600.0, gt=0, description="how long a proposal waits; null: for ever"
    )
    on_timeout: Literal["pause", "approve", "reject"] = Field(
        default="pause",
        description="pause: pause the campaign and keep waiting; approve or reject: decide",
    )

    @model_validator(mode="after")
    def _rules_for_rules(self) -> ApprovalConfig:
        if self.mode == "rules" and self.rules.empty:
            raise ValueError("mode: rules needs at least one rule under rules:")
        if self.mode != "rules" and not self.rules.empty:
            raise ValueError(f"rules are only read with mode: rules, not mode: {self.mode}")
        return self


def approval_problems(
    approval: ApprovalConfig, conditions: Sequence[str], objectives: Sequence[str]
) -> list[tuple[tuple[str | int, ...], str, Any]]:
    """Rules that name a condition or objective the campaign does not have."""
    problems: list[tuple[tuple[str | int, ...], str, Any]] = []
    for rule, known, kind in (
        ("soft_limits", conditions, "a search_space condition"),
        ("predicted", objectives, "an objective"),
        ("uncertainty_above", objectives, "an objective"),
    ):
        for name in getattr(approval.rules, rule):
            if name not in known:
                problems.append(
                    (
                        ("approval", "rules", rule, name),
                        f"{name!r} is not {kind}; choose one of {sorted(known)}",
                        name,
                    )
                )
    return problems


def approval_reasons(
    approval: ApprovalConfig,
    conditions: Mapping[str, float],
    belief: Mapping[str, float],
    explored: Sequence[Mapping[str, float]],
    search_space: Mapping[str, Any],
) -> list[str]:
    """Why a person must approve this proposal first (empty: it runs at once).

    ``belief`` is the agent's about the point (``{objective}_predicted_mean`` and ``_std``); a
    rule on a prediction the agent did not make holds, so the gate fails safe. ``explored``
    holds the conditions of the experiments done; ``search_space`` each condition's
    ``low``, ``high`` and ``unit``.
    """
    if approval.mode == "none":
        return []
    if approval.mode == "all":
        return ["every proposal is approved by a person (approval.mode: all)"]
    rules, reasons = approval.rules, []
    for name, band in rules.soft_limits.items():
        crossed = band.crossed_by(conditions[name])
        if crossed:
            unit = search_space[name].unit
            reasons.append(f"{name} = {conditions[name]:g} {unit} is {crossed} {unit}")
    if rules.outside_explored is not None:
        distance = _distance_to_explored(conditions, explored, search_space)
        if distance > rules.outside_explored:
            reasons.append(
                f"{distance:.2f} from the nearest experiment done, beyond "
                f"{rules.outside_explored:g} (search space scaled to 0-1)"
                if explored
                else "no experiment has been done yet"
            )
    for name, band in rules.predicted.items():
        mean = belief.get(f"{name}_predicted_mean")
        if mean is None or not math.isfinite(mean):
            reasons.append(f"the agent predicts no {name}")
        elif crossed := band.crossed_by(mean):
            reasons.append(f"predicted {name} = {mean:.4g} is {crossed}")
    for name, limit in rules.uncertainty_above.items():
        std = belief.get(f"{name}_predicted_std")
        if std is None or not math.isfinite(std):
            reasons.append(f"the agent gives no uncertainty for {name}")
        elif std > limit:
            reasons.append(f"predicted {name} uncertainty {std:.4g} is above {limit:g}")
    return reasons


def _distance_to_explored(
    conditions: Mapping[str, float],
    explored: Sequence[Mapping[str, float]],
    search_space: Mapping[str, Any],
) -> float:
    """Euclidean distance to the nearest of ``explored``, each condition scaled to 0-1 over
    its bounds (on a log scale where the condition has one); infinite with none explored."""

    def scaled(name: str, value: float) -> float:
        parameter = search_space[name]
        low, high = parameter.low, parameter.high
        if parameter.log_scale:
            value, low, high = math.log(value), math.log(low), math.log(high)
        return (value - low) / (high - low) if high > low else 0.0

    names = list(search_space)
    here = [scaled(name, conditions[name]) for name in names]
    return min(
        (
            math.dist(here, [scaled(name, point[name]) for name in names])
            for point in explored
            if all(name in point for name in names)
        ),
        default=math.inf,
    )
