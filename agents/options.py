"""Each agent's options as a validated model: the one place their defaults and limits live.

A campaign file's ``agent.options`` is checked against these models when it is read, so a
misspelt or out-of-range option is refused by its field path before anything runs; the agent
constructors take their defaults from here and check their arguments with the same models.
Only pydantic is imported: a campaign is checked without loading torch.

The problem itself (candidate pool, linear and outcome constraints, reference point, budget)
is not an option: it belongs to the campaign, and every agent takes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

#: Values of the bayesian ``acquisition`` option (one objective).
Acquisition = Literal["qlognei", "qlogei", "qucb"]

#: Values of the mapping ``acquisition`` option.
MapAcquisition = Literal["integrated", "entropy"]

#: Values of the bayesian ``kernel`` option.
Kernel = Literal["matern52", "rbf"]

#: Values of the bayesian ``kernel_prior`` option.
KernelPrior = Literal["dim_scaled", "gamma"]

#: Values of the bayesian ``noise_prior`` option.
NoisePrior = Literal["lognormal", "gamma"]

#: Values of the bayesian ``noise`` option.
Noise = Literal["inferred", "measured"]

#: Values of the bayesian ``outcome_transform`` option.
OutcomeTransform = Literal["standardize", "bilog"]


class AgentOptions(BaseModel):
    """Options of one agent: no unknown keys; in a campaign file, numbers that are numbers."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    #: The agent's class, ``module:Class`` (imported when an agent is made: torch is heavy).
    agent_class: ClassVar[str]

    #: Whether the agent proposes by hypervolume above the campaign's reference point.
    takes_reference_point: ClassVar[bool] = False

    def check_problem(self, objectives: int, outcome_constraints: int) -> None:
        """Raise ``ValueError`` if the agent cannot serve a problem of this many objectives
        and outcome constraints with these options."""


class ExternalOptions(AgentOptions):
    """An external optimizer's options (a plug-in): passed as they are to its factory,
    which checks them itself."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    agent_class: ClassVar[str] = "agents.external:OptimizerAgent"


class RandomOptions(AgentOptions):
    """The random agent has no options."""

    agent_class: ClassVar[str] = "agents.baselines:RandomAgent"


class SobolOptions(AgentOptions):
    """The Sobol agent has no options."""

    agent_class: ClassVar[str] = "agents.baselines:SobolAgent"


class BayesianOptions(AgentOptions):
    """Options of :class:`agents.bayesian.BayesianOptimizationAgent` (its docstring says
    what each does)."""

    agent_class: ClassVar[str] = "agents.bayesian:BayesianOptimizationAgent"
    takes_reference_point: ClassVar[bool] = True

    n_initial: int | None = Field(
        default=None, ge=2, description="Sobol trials before the GP (None: 5 in a box, 2 on a pool)"
    )
    num_restarts: int = Field(default=10, ge=1, description="starts of the acquisition optimiser")
    raw_samples: int = Field(default=512, ge=1, description="candidates the starts are drawn from")
    mc_samples: int = Field(default=128, ge=1, description="QMC samples of the acquisition")
    torch_threads: int | None = Field(
        default=1, ge=1, description="torch threads while proposing (None: torch's setting)"
    )
    acquisition: Acquisition | None = Field(
        default=None, description="None: qucb on a one-objective pool, else qlognei"
    )
    ucb_beta: float = Field(default=2.0, ge=0, description="beta of qucb")
    outcome_transform: OutcomeTransform = "standardize"
    kernel: Kernel = "matern52"
    kernel_prior: KernelPrior = "dim_scaled"
    noise_prior: NoisePrior = "lognormal"
    noise: Noise = Field(
        default="inferred",
        description="inferred: the GP fits one noise level; measured: each result's reported "
        "uncertainty (<outcome>_std) is its noise",
    )
    refit_growth: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="refit the GP's hyperparameters only once the results have grown by this "
        "fraction since the last fit (0: every proposal; each fit starts from the last)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> BayesianOptions:
        if self.raw_samples < self.num_restarts:
            raise ValueError(
                f"raw_samples ({self.raw_samples}) must be at least num_restarts "
                f"({self.num_restarts})"
            )
        if self.kernel == "rbf" and self.kernel_prior != "dim_scaled":
            raise ValueError(
                f"kernel 'rbf' takes kernel_prior 'dim_scaled', got {self.kernel_prior!r}"
            )
        return self

    def check_problem(self, objectives: int, outcome_constraints: int) -> None:
        """Only qlognei serves several objectives, or any outcome constraint."""
        if self.acquisition not in (None, "qlognei") and (objectives > 1 or outcome_constraints):
            raise ValueError(
                f"acquisition {self.acquisition!r} takes one objective and no outcome "
                f"constraints; this problem has {objectives} objective(s) and "
                f"{outcome_constraints} outcome constraint(s): use qlognei"
            )


class RLOptions(AgentOptions):
    """Options of :class:`agents.rl.RLAgent` in a campaign: its trained policy, required
    (the agent's untrained default is for tests, not for campaigns)."""

    agent_class: ClassVar[str] = "agents.rl:RLAgent"

    weights: Path | None = Field(
        default=None,
        strict=False,
        description="policy file written by `sdl train-rl --out PATH`, for this search space",
    )

    @model_validator(mode="after")
    def _policy_exists(self) -> RLOptions:
        if self.weights is None:
            raise ValueError(
                "weights: the rl agent needs its trained policy, e.g. weights: "
                "models/rl_tio2.pt (made by `sdl train-rl --out models/rl_tio2.pt`)"
            )
        if not self.weights.is_file():
            raise ValueError(
                f"weights: no such file {self.weights}; make it with "
                f"`sdl train-rl --out {self.weights}`"
            )
        return self

    def check_problem(self, objectives: int, outcome_constraints: int) -> None:
        """The policy proposes for one objective."""
        if objectives != 1:
            raise ValueError(
                f"the rl agent optimises one objective, got {objectives}; use bayesian "
                "(qLogNEHVI), random or sobol for several"
            )


class MappingOptions(AgentOptions):
    """Options of :class:`agents.mapping.PhaseMappingAgent` (its docstring says what each
    does)."""

    agent_class: ClassVar[str] = "agents.mapping:PhaseMappingAgent"

    phases: list[str] | None = Field(
        default=None,
        min_length=1,
        description="phases whose <phase>_fraction results make the map (None: every "
        "<name>_fraction the results carry)",
    )
    presence_threshold: float = Field(
        default=0.05, gt=0, lt=1, description="a phase is present above this fraction"
    )
    n_initial: int = Field(default=5, ge=2, description="Sobol trials before the map is modelled")
    n_candidates: int = Field(
        default=1024, ge=16, le=65536, description="candidates the next point is chosen from"
    )
    exclusion_radius: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="unit-cube distance within which a known point damps the acquisition",
    )
    property_weight: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="weight of the objective's upper confidence bound against map uncertainty "
        "(0: pure mapping, 1: pure optimisation)",
    )
    acquisition: MapAcquisition = Field(
        default="integrated",
        description="integrated: the map entropy a measurement is expected to remove over the "
        "whole space; entropy: the map entropy at the point itself",
    )
    ucb_beta: float = Field(default=2.0, ge=0, description="beta of the objective's UCB")
    torch_threads: int | None = Field(
        default=1, ge=1, description="torch threads while proposing (None: torch's setting)"
    )

    @model_validator(mode="after")
    def _distinct_phases(self) -> MappingOptions:
        if self.phases is not None:
            repeated = sorted({p for p in self.phases if self.phases.count(p) > 1})
            if repeated or not all(self.phases):
                raise ValueError(
                    f"phases must be distinct non-empty names, got {self.phases} "
                    f"(repeated: {repeated})"
                )
        return self

    def check_problem(self, objectives: int, outcome_constraints: int) -> None:
        """The property term models one objective."""
        if self.property_weight > 0 and objectives != 1:
            raise ValueError(
                f"property_weight {self.property_weight:g} trades the map against one "
                f"objective; this problem has {objectives}: use property_weight 0"
            )


#: The options model of each agent, by the name a campaign uses.
AGENT_OPTIONS: dict[str, type[AgentOptions]] = {
    "bayesian": BayesianOptions,
    "random": RandomOptions,
    "sobol": SobolOptions,
    "rl": RLOptions,
    "mapping": MappingOptions,
}

Options = TypeVar("Options", bound=AgentOptions)


def _shortened(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def error_lines(error: ValidationError) -> list[str]:
    """Each fault of a validation as ``field.path: message (got value)``."""
    lines = []
    for detail in error.errors(include_url=False):
        path = ".".join(str(part) for part in detail["loc"])
        got = "" if detail["type"] == "missing" else f" (got {_shortened(detail['input'])})"
        lines.append(f"{path + ': ' if path else ''}{detail['msg']}{got}")
    return lines


def checked_options(model: type[Options], values: Mapping[str, Any]) -> Options:
    """``values`` as ``model`` (numbers converted as Python converts them: an agent built in
    Python may be given numpy integers); ``ValueError`` names every bad option."""
    try:
        return model.model_validate(values, strict=False)
    except ValidationError as error:
        raise ValueError("; ".join(error_lines(error))) from None
