"""The campaign file: one validated model tree, with errors that name the bad field."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from devices.epics import EPICS_DEVICES, pv_components
from sdl.analysis.features import features_for
from sdl.campaign.systems import get_system
from simulators.faults import FAULT_TARGETS

#: Instruments a campaign may name.
DEVICE_NAMES = ("reactor", "xrd", "microscope")


class CampaignConfigError(ValueError):
    """A campaign file that cannot be run; the message lists every bad field by its path."""


class _Strict(BaseModel):
    # JSON has no infinity (PostgreSQL refuses it): a speed-up of inf is written "inf".
    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="strings")


class ParameterConfig(_Strict):
    """One synthesis condition the agent may choose: its range and unit."""

    low: float
    high: float
    unit: str = Field(min_length=1, description="unit, e.g. degC, h, pH, mol/mol")
    log_scale: bool = False
    values: list[float] | None = Field(
        default=None, min_length=2, description="the only levels allowed (a discrete knob)"
    )
    categorical: bool = Field(
        default=False, description="values are unordered category codes (needs values)"
    )

    @model_validator(mode="after")
    def _low_below_high(self) -> ParameterConfig:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError(f"low and high must be finite numbers, got [{self.low}, {self.high}]")
        if not self.low < self.high:
            raise ValueError(f"low must be below high, got low={self.low}, high={self.high}")
        if self.log_scale and self.low <= 0:
            raise ValueError(f"log_scale needs low > 0, got low={self.low}")
        if self.categorical and self.values is None:
            raise ValueError("categorical needs values: the category codes")
        outside = [v for v in self.values or () if not self.low <= v <= self.high]
        if outside:
            raise ValueError(f"values {outside} lie outside [{self.low}, {self.high}]")
        return self


class ObjectiveConfig(_Strict):
    """A measured feature to optimise and which way is better."""

    name: str = Field(min_length=1)
    direction: Literal["maximize", "minimize"]
    target: float | None = Field(
        default=None, description="stop early once a measured value reaches this"
    )


class AgentConfig(_Strict):
    """Which agent proposes the experiments, with its constructor options."""

    name: Literal["bayesian", "random", "sobol", "rl"] = "bayesian"
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _rl_needs_its_policy(self) -> AgentConfig:
        if self.name == "rl" and not self.options.get("weights"):
            raise ValueError(
                "options.weights: the rl agent needs its trained policy, e.g. "
                "weights: models/rl_tio2.pt (made by `sdl train-rl --out "
                "models/rl_tio2.pt`)"
            )
        return self


class EpicsConfig(_Strict):
    """Where the instruments' PVs are: a prefix, per-device PV names, and how long to wait.

    A component's PV is ``prefix + pv_map[device][component]``, by default
    ``prefix + "{device}:{component}"`` (e.g. ``SDL:reactor:temperature_c``); see docs/epics.md.
    """

    prefix: str = Field(default="SDL:", description="prepended to every PV name")
    pv_map: dict[Literal["reactor", "xrd", "microscope"], dict[str, str]] = Field(
        default_factory=dict, description="device -> component -> PV name (after the prefix)"
    )
    timeout_s: float = Field(default=5.0, gt=0, description="to connect to a PV or read it")
    action_timeout_s: float = Field(
        default=86_400.0,
        gt=0,
        description="for a put-completion (a setpoint reached, a synthesis, a scan) to finish",
    )

    @field_validator("pv_map")
    @classmethod
    def _pv_names_not_empty(cls, pv_map: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for device, names in pv_map.items():
            empty = sorted(component for component, pv in names.items() if not pv.strip())
            if empty:
                raise ValueError(f"{device}: empty PV name for {empty}")
        return pv_map


class FaultInjectionConfig(_Strict):
    """When one kind of simulated fault strikes (see :mod:`simulators.faults`)."""

    rate: float = Field(default=0.0, ge=0, le=1, description="probability per action")
    at: list[Annotated[int, Field(ge=0)]] = Field(
        default_factory=list, description="action numbers (per instrument, from 0) it strikes"
    )
    devices: list[Literal[DEVICE_NAMES]] = Field(  # type: ignore[valid-type]
        default_factory=list, description="instruments it may hit (default: all it applies to)"
    )
    step: float = Field(default=0.0, ge=0, description="drift deg per strike; setpoint miss")


#: What a fault policy can do first.
FaultAction = Literal["retry", "skip", "pause", "abort"]


class FaultPolicy(_Strict):
    """What the campaign does when a fault of one kind happens."""

    action: FaultAction = Field(
        description="retry the experiment, skip it (sample failed), pause for a person, abort"
    )
    retries: int = Field(default=2, ge=1, le=100, description="attempts after the first, on retry")
    then: Literal["skip", "pause", "abort"] = Field(
        default="skip", description="what to do once the retries are spent"
    )
    retry_delay_s: float = Field(default=0.0, ge=0, description="wait before each new attempt")


def _policy(action: FaultAction, **options: Any) -> Any:
    return Field(default_factory=lambda: FaultPolicy(action=action, **options))


class FaultPolicies(_Strict):
    """The policy for each kind of fault; every outcome is recorded in the catalog."""

    disconnect: FaultPolicy = _policy("abort", retry_delay_s=10.0)
    instrument_error: FaultPolicy = _policy("retry")
    timeout: FaultPolicy = _policy("retry")
    setpoint_miss: FaultPolicy = _policy("retry", retries=1)
    corrupt_data: FaultPolicy = _policy("retry", retries=1)
    analysis_error: FaultPolicy = _policy("skip")
    drift: FaultPolicy = _policy("pause")


class AnalysisConfig(_Strict):
    """Which analysis methods a campaign uses, and the limits data must pass to be trusted."""

    xrd_zero_tolerance_deg: float = Field(
        default=0.2, gt=0, description="fitted 2-theta zero beyond this means the XRD drifted"
    )
    segmenter: Literal["classical", "unet"] = Field(
        default="classical", description="grain segmentation: watershed, or the trained U-Net"
    )
    unet_model: Path | None = Field(
        default=None, description="U-Net weights written by `sdl train-unet --out PATH`"
    )
    xrd_classifier: Path | None = Field(
        default=None,
        description="1D-CNN weights written by `sdl train-xrd --out PATH`; "
        "adds <phase>_probability and <phase>_cnn_fraction features",
    )

    @model_validator(mode="after")
    def _models_exist(self) -> AnalysisConfig:
        if self.segmenter == "unet" and self.unet_model is None:
            raise ValueError(
                "unet_model: segmenter unet needs the weights; make them with "
                "`sdl train-unet --out unet.pt`"
            )
        for field_name, command in (("unet_model", "train-unet"), ("xrd_classifier", "train-xrd")):
            path = getattr(self, field_name)
            if path is not None and not path.is_file():
                raise ValueError(
                    f"{field_name}: no such file {path}; make it with `sdl {command} --out {path}`"
                )
        return self


class DevicesConfig(_Strict):
    """Which instruments back the campaign; only this section changes to go to hardware."""

    backend: Literal["sim", "epics"] = "sim"
    epics: EpicsConfig = Field(
        default_factory=EpicsConfig, description="PV names and timeouts (backend: epics)"
    )
    system: str = Field(default="tio2_solgel", description="simulated materials system")

    @field_validator("system")
    @classmethod
    def _known_system(cls, system: str) -> str:
        return get_system(system).name

    speedup: float = Field(
        default=math.inf, gt=0, description="simulated seconds per wall second (inf: instant)"
    )
    xrd_exposure_s: float = Field(default=0.5, gt=0, description="counting time per 2-theta step")
    microscope_target_grain_px: float = Field(
        default=24.0, ge=8, le=64, description="magnification: pixels across a typical grain"
    )
    action_timeout_s: float | None = Field(
        default=600.0,
        gt=0,
        description="wall seconds a simulated action may go silent before it times out",
    )
    faults: dict[Literal[tuple(FAULT_TARGETS)], FaultInjectionConfig] = Field(  # type: ignore[valid-type]
        default_factory=dict, description="simulated faults to inject (backend: sim only)"
    )
    stations: int = Field(
        default=1,
        ge=1,
        le=64,
        description="identical reactor+instrument stations working side by side (backend: sim)",
    )

    @model_validator(mode="after")
    def _faults_only_simulated(self) -> DevicesConfig:
        if self.faults and self.backend != "sim":
            raise ValueError(
                "faults: fault injection needs backend: sim; real instruments bring their own"
            )
        if self.stations > 1 and self.backend != "sim":
            raise ValueError(
                f"stations: {self.stations} stations need backend: sim; EPICS "
                "stations are one per PV prefix (run one queueserver per prefix)"
            )
        return self


class CampaignConfig(_Strict):
    """A closed-loop campaign: what to vary, what to measure, what is better, and how long."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=80)
    description: str = ""
    seed: int = Field(default=0, ge=0)
    data_dir: Path = Path("sdl-data")
    search_space: dict[str, ParameterConfig] = Field(min_length=1)
    fixed_conditions: dict[str, float] = Field(
        default_factory=dict, description="conditions held constant, in the reactor's units"
    )
    objectives: list[ObjectiveConfig] = Field(
        min_length=1, description="what is better; several make a Pareto (multi-objective) search"
    )
    instruments: list[Literal["xrd", "microscope", "magnetometer"]] = Field(min_length=1)
    agent: AgentConfig = Field(default_factory=AgentConfig)
    budget: int = Field(gt=0, le=100_000, description="number of experiments")
    devices: DevicesConfig = Field(default_factory=DevicesConfig)
    on_fault: FaultPolicies = Field(default_factory=FaultPolicies)
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig)

    @field_validator("instruments")
    @classmethod
    def _unique_instruments(cls, instruments: list[str]) -> list[str]:
        if len(set(instruments)) != len(instruments):
            raise ValueError(f"instruments must not repeat, got {instruments}")
        return instruments

    @model_validator(mode="after")
    def _magnetometer_only_simulated(self) -> CampaignConfig:
        if "magnetometer" in self.instruments and self.devices.backend != "sim":
            raise ValueError(
                "instruments: the magnetometer has no EPICS device yet; it needs "
                "devices.backend: sim"
            )
        return self

    @model_validator(mode="after")
    def _fixed_not_searched(self) -> CampaignConfig:
        both = sorted(set(self.fixed_conditions) & set(self.search_space))
        if both:
            raise ValueError(f"fixed_conditions: {both} are also in search_space; choose one")
        return self

    @model_validator(mode="after")
    def _pv_map_names_components(self) -> CampaignConfig:
        limits = get_system(self.devices.system).condition_limits
        for device, names in self.devices.epics.pv_map.items():
            known = pv_components(EPICS_DEVICES[device], limits)
            unknown = sorted(set(names) - set(known))
            if unknown:
                raise ValueError(
                    f"devices.epics.pv_map.{device}: unknown component(s) {unknown}; "
                    f"{device} has {known}"
                )
        return self

    @model_validator(mode="after")
    def _objectives_are_measured(self) -> CampaignConfig:
        system = get_system(self.devices.system)
        available = features_for(self.instruments, system.phases)
        seen: set[str] = set()
        for index, objective in enumerate(self.objectives):
            if objective.name not in available:
                raise ValueError(
                    f"objectives.{index}.name: {objective.name!r} is not measured by instruments "
                    f"{self.instruments}; choose one of {sorted(available)}"
                )
            if objective.name in seen:
                raise ValueError(f"objectives.{index}.name: {objective.name!r} is listed twice")
            seen.add(objective.name)
        return self

    @model_validator(mode="after")
    def _several_objectives_fit_the_agent(self) -> CampaignConfig:
        names = [objective.name for objective in self.objectives]
        if self.agent.name == "rl" and len(names) > 1:
            raise ValueError(
                f"agent.name: the rl agent optimises one objective, got {names}; "
                "use bayesian (qLogNEHVI), random or sobol for several"
            )
        reference = self.agent.options.get("reference_point")
        if reference is None:
            return self
        if len(names) < 2:
            raise ValueError(
                "agent.options.reference_point: hypervolume needs several "
                f"objectives; this campaign has one, {names}"
            )
        if not isinstance(reference, dict) or set(reference) != set(names):
            raise ValueError(
                "agent.options.reference_point: give one value for each objective "
                f"{names}, got {reference!r}"
            )
        bad = {
            name: value
            for name, value in reference.items()
            if isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        }
        if bad:
            raise ValueError(
                f"agent.options.reference_point: values must be finite numbers, got {bad}"
            )
        return self


def _field_path(location: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in location) or "(top level)"


def parse_campaign(data: Any, source: str = "campaign") -> CampaignConfig:
    """Validate a campaign given as plain data; :class:`CampaignConfigError` lists the faults."""
    if not isinstance(data, dict):
        raise CampaignConfigError(f"{source}: expected a mapping of campaign fields, got {data!r}")
    try:
        return CampaignConfig.model_validate(data)
    except ValidationError as error:
        lines = [
            f"  {_field_path(detail['loc'])}: {detail['msg']}"
            + (f" (got {detail['input']!r})" if detail["type"] != "missing" else "")
            for detail in error.errors(include_url=False)
        ]
        message = f"{source} is not a valid campaign:\n" + "\n".join(lines)
        raise CampaignConfigError(message) from None


def load_campaign(path: Path | str) -> CampaignConfig:
    """Read and validate a campaign YAML file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise CampaignConfigError(f"campaign file not found: {path}") from None
    except yaml.YAMLError as error:
        raise CampaignConfigError(f"{path} is not valid YAML: {error}") from None
    return parse_campaign(data, source=str(path))
