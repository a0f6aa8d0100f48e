"""The campaign file: one validated model tree, with errors that name the bad field."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    Field,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from agents import candidate_rows
from agents.options import AGENT_OPTIONS, AgentOptions, ExternalOptions, error_lines
from agents.space import LinearConstraint, OutcomeConstraint, Parameter, SearchSpace
from physics.phases import AMORPHOUS
from sdl.analysis.features import BUILTIN_INSTRUMENTS, features_for, plugin_instruments
from sdl.campaign.alerts import AlertsConfig
from sdl.campaign.approval import ApprovalConfig, approval_problems
from sdl.campaign.beamline import BeamlineConfig
from sdl.campaign.schema import CampaignConfigError, FilePath, StrictModel, refuse
from sdl.campaign.systems import get_system
from sdl.plugins import (
    AGENTS_GROUP,
    INSTRUMENTS_GROUP,
    agent_factory,
    instrument_plugin,
    registered,
)
from simulators.faults import FAULT_TARGETS

if TYPE_CHECKING:
    from sdl.analysis.xrd.user_phases import XRDPhases

#: Instruments a campaign may name.
DEVICE_NAMES = ("reactor", "xrd", "microscope")

#: Fault kinds a plug-in's simulated device takes (the others act on our devices' data).
PLUGIN_FAULTS = ("instrument_error", "timeout")


def _known(
    role: str, ours: Iterable[str], group: str, load: Callable[[str], Any], example: str
) -> Callable[[str], str]:
    """A validator: the name is one of ``ours``, or a plug-in ``load`` finds (registered in
    ``group``, or an import path); else the error lists the known ones."""

    def known(name: str) -> str:
        if name not in ours and load(name) is None:
            choices = sorted({*ours, *registered(group)})
            raise ValueError(
                f"unknown {role} {name!r}; choose from {choices}, or give an {role} plug-in's "
                f"import path (package.module:{example})"
            )
        return name

    return known


_known_agent = _known("agent", AGENT_OPTIONS, AGENTS_GROUP, agent_factory, "make_optimizer")
_known_instrument = _known(
    "instrument", BUILTIN_INSTRUMENTS, INSTRUMENTS_GROUP, instrument_plugin, "INSTRUMENT"
)


class ParameterConfig(StrictModel):
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


class ObjectiveConfig(StrictModel):
    """A measured feature to optimise and which way is better."""

    name: str = Field(min_length=1)
    direction: Literal["maximize", "minimize"]
    target: float | None = Field(
        default=None, description="stop early once a measured value reaches this"
    )


class AgentConfig(StrictModel):
    """Which agent proposes the experiments, with its options (checked by the agent's own
    model in :mod:`agents.options`)."""

    name: Annotated[str, AfterValidator(_known_agent)] = Field(
        default="bayesian",
        description="random, sobol, bayesian, rl, mapping, or an agent plug-in's registered "
        "name or import path (docs/plugins.md)",
    )
    options: SerializeAsAny[AgentOptions] = Field(default_factory=dict, validate_default=True)
    batch_size: int = Field(
        default=1,
        ge=1,
        le=64,
        description="points the agent proposes at once (a batch chosen jointly); free stations "
        "take them in turn",
    )

    @field_validator("options", mode="before")
    @classmethod
    def _options_of_the_agent(cls, options: Any, info: ValidationInfo) -> AgentOptions:
        name = info.data.get("name")
        if name is None:  # an unknown agent, already reported: its options mean nothing
            return AgentOptions()
        return AGENT_OPTIONS.get(name, ExternalOptions).model_validate(options)


def _linear_constraint(text: str) -> str:
    LinearConstraint.parse(text)
    return text


def _outcome_constraint(text: str) -> str:
    OutcomeConstraint.parse(text)
    return text


class ConstraintsConfig(StrictModel):
    """Limits beyond the search space's box: on the conditions, and on measured outcomes."""

    linear: list[Annotated[str, AfterValidator(_linear_constraint)]] = Field(
        default_factory=list,
        description='linear limits every proposal meets, e.g. "x_ga + x_pd <= 0.6"',
    )
    outcomes: list[Annotated[str, AfterValidator(_outcome_constraint)]] = Field(
        default_factory=list,
        description='limits a result must meet to count, e.g. "rutile_fraction <= 0.05"',
    )


class EpicsConfig(StrictModel):
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


class FaultInjectionConfig(StrictModel):
    """When one kind of simulated fault strikes (see :mod:`simulators.faults`)."""

    rate: float = Field(default=0.0, ge=0, le=1, description="probability per action")
    at: list[Annotated[int, Field(ge=0)]] = Field(
        default_factory=list, description="action numbers (per instrument, from 0) it strikes"
    )
    devices: list[str] = Field(
        default_factory=list,
        description="instruments it may hit (default: all of ours it applies to); a plug-in "
        "instrument by its device name, for instrument_error and timeout",
    )
    step: float = Field(default=0.0, ge=0, description="drift deg per strike; setpoint miss")


#: What a fault policy can do first.
FaultAction = Literal["retry", "skip", "pause", "abort"]


class FaultPolicy(StrictModel):
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


class FaultPolicies(StrictModel):
    """The policy for each kind of fault; every outcome is recorded in the catalog."""

    disconnect: FaultPolicy = _policy("abort", retry_delay_s=10.0)
    instrument_error: FaultPolicy = _policy("retry")
    timeout: FaultPolicy = _policy("retry")
    setpoint_miss: FaultPolicy = _policy("retry", retries=1)
    corrupt_data: FaultPolicy = _policy("retry", retries=1)
    analysis_error: FaultPolicy = _policy("skip")
    drift: FaultPolicy = _policy("pause")
    hang: FaultPolicy = _policy("retry", retries=1)


class WatchdogConfig(StrictModel):
    """When a running experiment counts as hung: its plan is aborted and the ``hang`` fault
    policy decides what happens next (the instruments' own timeouts stay as they are)."""

    enabled: bool = True
    #: Hung once it has run this many times longer than expected.
    factor: float = Field(default=5.0, ge=1.5, le=1000, description="multiple of the expected")
    #: Never hung sooner than this many wall seconds (a busy machine is slow).
    min_s: float = Field(default=300.0, gt=0, description="shortest time before a hang, s")
    expected_s: float | None = Field(
        default=None,
        gt=0,
        description="wall seconds one experiment is expected to take until one has finished "
        "(None: nothing is flagged before then); after, the median of the last 20",
    )


class XRDPhaseConfig(StrictModel):
    """One crystalline phase of the campaign's own, from a CIF file."""

    name: str = Field(
        pattern=r"^[A-Za-z][A-Za-z0-9_]*$",
        description="what its features are called (<name>_fraction ...): a letter, then "
        "letters, digits or _",
    )
    cif: FilePath = Field(description="the phase's structure as a CIF file (read with pymatgen)")
    calibration_factor: float = Field(
        default=1.0,
        gt=0,
        allow_inf_nan=False,
        description="measured over computed intensity per unit weight fraction, fitted on a "
        "standard of known composition; the phase's scale is divided by it",
    )


class AnalysisConfig(StrictModel):
    """Which analysis methods a campaign uses, and the limits data must pass to be trusted."""

    xrd_zero_tolerance_deg: float = Field(
        default=0.2, gt=0, description="fitted 2-theta zero beyond this means the XRD drifted"
    )
    segmenter: Literal["classical", "unet"] = Field(
        default="classical", description="grain segmentation: watershed, or the trained U-Net"
    )
    unet_model: FilePath | None = Field(
        default=None, description="U-Net weights written by `sdl train-unet --out PATH`"
    )
    xrd_classifier: FilePath | None = Field(
        default=None,
        description="1D-CNN weights written by `sdl train-xrd --out PATH`; "
        "adds <phase>_probability and <phase>_cnn_fraction features",
    )
    xrd_instrument: FilePath | None = Field(
        default=None,
        description="diffractometer calibration written by `sdl calibrate-xrd --out PATH` "
        "(line breadths and zero from a LaB6 or Si scan); every XRD fit uses it",
    )
    xrd_phases: list[XRDPhaseConfig] | None = Field(
        default=None,
        description="the crystalline phases every XRD fit looks for, from CIF files, instead "
        "of the system's library",
    )
    xrd_amorphous: bool | None = Field(
        default=None,
        description="with xrd_phases: also fit an amorphous component (the phases' lines at "
        "a 1 nm coherence length); default false",
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
        if self.xrd_instrument is not None:
            from sdl.analysis.xrd.calibration import read_calibration  # scipy, pymatgen: late

            if not self.xrd_instrument.is_file():
                raise ValueError(
                    f"xrd_instrument: no such file {self.xrd_instrument}; make it with "
                    f"`sdl calibrate-xrd STANDARD_SCAN --out {self.xrd_instrument}`"
                )
            try:
                read_calibration(self.xrd_instrument)
            except (ValueError, yaml.YAMLError) as error:
                raise ValueError(f"xrd_instrument: {self.xrd_instrument}: {error}") from None
        return self

    @model_validator(mode="after")
    def _phases_parse(self) -> AnalysisConfig:
        if self.xrd_phases is None:
            if self.xrd_amorphous is not None:
                refuse(
                    [
                        (
                            ("xrd_amorphous",),
                            "applies to xrd_phases only; the system's own phase library "
                            "fits its amorphous component as it always has",
                            self.xrd_amorphous,
                        )
                    ]
                )
            return self
        from sdl.analysis.xrd.user_phases import UserPhase  # pymatgen: late

        problems: list[tuple[tuple[str | int, ...], str, Any]] = []
        if not self.xrd_phases:
            problems.append((("xrd_phases",), "name at least one phase, or leave it out", []))
        seen: set[str] = set()
        for index, phase in enumerate(self.xrd_phases):
            if phase.name == AMORPHOUS:
                problems.append(
                    (
                        ("xrd_phases", index, "name"),
                        f"{AMORPHOUS!r} names the amorphous component; use xrd_amorphous",
                        phase.name,
                    )
                )
            elif phase.name in seen:
                problems.append(
                    (("xrd_phases", index, "name"), f"{phase.name!r} is named twice", phase.name)
                )
            seen.add(phase.name)
            if not phase.cif.is_file():
                problems.append(
                    (("xrd_phases", index, "cif"), f"no such file {phase.cif}", str(phase.cif))
                )
                continue
            try:
                UserPhase.from_file(phase.name, phase.cif, phase.calibration_factor)
            except ValueError as error:
                problems.append((("xrd_phases", index, "cif"), str(error), str(phase.cif)))
        if problems:
            refuse(problems)
        return self

    def xrd_phase_set(self) -> XRDPhases | None:
        """The campaign's own phases, parsed (None: the system's library)."""
        if self.xrd_phases is None:
            return None
        from sdl.analysis.xrd.user_phases import XRDPhases  # pymatgen: late

        return XRDPhases.from_files(
            [(p.name, p.cif, p.calibration_factor) for p in self.xrd_phases],
            amorphous=bool(self.xrd_amorphous),
        )

    def phases(self, system_phases: Sequence[str]) -> tuple[str, ...]:
        """Names of the crystalline phases the XRD fits report: the campaign's own, if any."""
        if self.xrd_phases is None:
            return tuple(system_phases)
        return tuple(p.name for p in self.xrd_phases)


class QueueserverConfig(StrictModel):
    """How the agent service's requests to each station's queueserver ride out a loaded host.

    A request that gets no answer within ``request_timeout_s`` is sent again after a back-off
    (``backoff_s``, doubled each retry up to ``max_backoff_s``, with jitter); only a request
    that times out on all ``1 + retries`` tries makes the attempt a ``disconnect`` fault (see
    ``on_fault.disconnect``). The defaults give up after about 65 s without an answer.
    """

    request_timeout_s: float = Field(
        default=10.0, gt=0, le=600, description="wait for one answer before the try times out"
    )
    retries: int = Field(
        default=4, ge=0, le=20, description="tries after a timed-out one, before a disconnect"
    )
    backoff_s: float = Field(
        default=1.0, ge=0, le=600, description="wait before the first retry; doubles each retry"
    )
    max_backoff_s: float = Field(
        default=30.0, ge=0, le=3600, description="longest wait between two tries"
    )

    @model_validator(mode="after")
    def _backoff_within_its_cap(self) -> QueueserverConfig:
        if self.max_backoff_s < self.backoff_s:
            raise ValueError(
                f"max_backoff_s must be at least backoff_s ({self.backoff_s:g} s), "
                f"got {self.max_backoff_s:g} s"
            )
        return self


class DevicesConfig(StrictModel):
    """Which instruments back the campaign; only this section changes to go to hardware."""

    backend: Literal["sim", "epics"] = "sim"
    epics: EpicsConfig = Field(
        default_factory=EpicsConfig, description="PV names and timeouts (backend: epics)"
    )
    system: str = Field(default="tio2_solgel", description="simulated materials system")
    beamline: BeamlineConfig | None = Field(
        default=None,
        description="a beamline's own devices by import path (docs/epics.md); "
        "its conditions need backend: epics",
    )

    @field_validator("system")
    @classmethod
    def _known_system(cls, system: str) -> str:
        get_system(system)  # refuses an unknown name or a plug-in of the wrong shape
        return system

    speedup: float = Field(
        default=math.inf, gt=0, description="simulated seconds per wall second (inf: instant)"
    )

    @field_validator("speedup", mode="before")
    @classmethod
    def _infinity_as_written(cls, speedup: Any) -> Any:
        # How JSON writes the default (see StrictModel), so a dumped campaign reads back.
        return math.inf if speedup in ("inf", "Infinity") else speedup

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
    queueserver: QueueserverConfig = Field(
        default_factory=QueueserverConfig,
        description="timeouts and retries of requests to the stations' queueservers "
        "(sdl stack, sdl agent-service)",
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
        if self.stations > 1 and self.beamline is not None:
            raise ValueError(
                f"stations: {self.stations} stations cannot share one beamline's devices; "
                "devices.beamline needs stations: 1"
            )
        if self.beamline is not None and self.beamline.conditions and self.backend != "epics":
            raise ValueError(
                "beamline.conditions: a beamline device may set a condition only with "
                "backend: epics (a simulated reactor makes its sample from its own setpoints)"
            )
        return self


class CampaignConfig(StrictModel):
    """A closed-loop campaign: what to vary, what to measure, what is better, and how long."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=80)
    description: str = ""
    seed: int = Field(default=0, ge=0)
    data_dir: FilePath = Path("sdl-data")
    search_space: dict[str, ParameterConfig] = Field(min_length=1)
    fixed_conditions: dict[str, float] = Field(
        default_factory=dict, description="conditions held constant, in the reactor's units"
    )
    constraints: ConstraintsConfig = Field(default_factory=ConstraintsConfig)
    candidates: FilePath | list[dict[str, float]] | None = Field(
        default=None,
        description="a pool: only these points are proposed, each once; a CSV file with a "
        "column per searched condition, or a list of {condition: value}",
    )
    objectives: list[ObjectiveConfig] = Field(
        min_length=1, description="what is better; several make a Pareto (multi-objective) search"
    )
    reference_point: dict[str, float] | None = Field(
        default=None,
        description="several objectives: the worst value of each still worth anything; "
        "hypervolume is measured above it (default: inferred from the front)",
    )
    instruments: list[Annotated[str, AfterValidator(_known_instrument)]] = Field(
        min_length=1,
        description="xrd, microscope, magnetometer, or an instrument plug-in's registered "
        "name or import path (docs/plugins.md)",
    )
    agent: AgentConfig = Field(default_factory=AgentConfig)
    budget: int = Field(gt=0, le=100_000, description="number of experiments")
    devices: DevicesConfig = Field(default_factory=DevicesConfig)
    on_fault: FaultPolicies = Field(default_factory=FaultPolicies)
    watchdog: WatchdogConfig = Field(default_factory=WatchdogConfig)
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    approval: ApprovalConfig = Field(default_factory=ApprovalConfig)

    @field_validator("instruments")
    @classmethod
    def _unique_instruments(cls, instruments: list[str]) -> list[str]:
        if len(set(instruments)) != len(instruments):
            raise ValueError(f"instruments must not repeat, got {instruments}")
        return instruments

    @model_validator(mode="after")
    def _plugins_have_the_backend(self) -> CampaignConfig:
        if self.devices.backend == "sim":
            return self
        problems = [
            (
                ("instruments", index),
                f"plug-in {name!r} has no EPICS device (its InstrumentPlugin.epics is None); "
                "it needs devices.backend: sim",
                name,
            )
            for index, name in enumerate(self.instruments)
            for plugin in plugin_instruments([name])
            if plugin.epics is None
        ]
        if problems:
            refuse(problems)
        return self

    @model_validator(mode="after")
    def _magnetometer_only_simulated(self) -> CampaignConfig:
        beamline = self.devices.beamline
        served = beamline is not None and "magnetometer" in beamline.detectors
        if "magnetometer" in self.instruments and self.devices.backend != "sim" and not served:
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
        if not self.devices.epics.pv_map:
            return self
        # Only a map needs the device classes, and they need ophyd (seconds to import).
        from devices.epics import EPICS_DEVICES, pv_components

        limits = get_system(self.devices.system).condition_limits
        problems = []
        for device, names in self.devices.epics.pv_map.items():
            known = pv_components(EPICS_DEVICES[device], limits)
            unknown = sorted(set(names) - set(known))
            if unknown:
                problems.append(
                    (
                        ("devices", "epics", "pv_map", device),
                        f"unknown component(s) {unknown}; {device} has {known}",
                        names,
                    )
                )
        if problems:
            refuse(problems)
        return self

    @model_validator(mode="after")
    def _beamline_serves_this_campaign(self) -> CampaignConfig:
        beamline = self.devices.beamline
        if beamline is None:
            return self
        problems = beamline.problems()
        conditions = get_system(self.devices.system).condition_limits
        problems += [
            (
                ("devices", "beamline", "conditions", name),
                f"{self.devices.system} has no condition {name!r}; it has {list(conditions)}",
                name,
            )
            for name in beamline.conditions
            if name not in conditions
        ]
        problems += [
            (
                ("devices", "beamline", "detectors", role),
                f"the campaign does not measure {role}; add it to instruments {self.instruments}",
                role,
            )
            for role in beamline.detectors
            if role not in self.instruments
        ]
        if problems:
            refuse(problems)
        return self

    @model_validator(mode="after")
    def _conditions_fit_the_reactor(self) -> CampaignConfig:
        problems = condition_problems(self, get_system(self.devices.system).condition_limits)
        if problems:
            refuse(problems)
        return self

    @model_validator(mode="after")
    def _own_phases_need_the_diffractometer(self) -> CampaignConfig:
        if self.analysis.xrd_phases is not None and "xrd" not in self.instruments:
            refuse(
                [
                    (
                        ("analysis", "xrd_phases"),
                        f"phases are fitted to XRD patterns, but instruments {self.instruments} "
                        "has no xrd: add xrd to instruments, or leave xrd_phases out",
                        [phase.name for phase in self.analysis.xrd_phases],
                    )
                ]
            )
        return self

    @model_validator(mode="after")
    def _outcomes_are_measured(self) -> CampaignConfig:
        available = features_for(
            self.instruments, self.analysis.phases(get_system(self.devices.system).phases)
        )
        problems: list[tuple[tuple[str | int, ...], str, Any]] = []
        seen: set[str] = set()
        unmeasured = (
            f"is not measured by instruments {self.instruments}; choose one of {sorted(available)}"
        )
        for index, objective in enumerate(self.objectives):
            if objective.name not in available:
                problems.append(
                    (
                        ("objectives", index, "name"),
                        f"{objective.name!r} {unmeasured}",
                        objective.name,
                    )
                )
            elif objective.name in seen:
                problems.append(
                    (
                        ("objectives", index, "name"),
                        f"{objective.name!r} is listed twice",
                        objective.name,
                    )
                )
            seen.add(objective.name)
        for index, text in enumerate(self.constraints.outcomes):
            name = OutcomeConstraint.parse(text).name
            if name not in available:
                problems.append(
                    (("constraints", "outcomes", index), f"{name!r} {unmeasured}", text)
                )
        if problems:
            refuse(problems)
        return self

    @model_validator(mode="after")
    def _faults_strike_devices_there_are(self) -> CampaignConfig:
        plugins = {plugin.name for plugin in plugin_instruments(self.instruments)}
        problems = []
        for kind, spec in self.devices.faults.items():
            for index, device in enumerate(spec.devices):
                if device in DEVICE_NAMES and device in FAULT_TARGETS[kind]:
                    continue
                if device in plugins and kind in PLUGIN_FAULTS:
                    continue
                allowed = sorted(
                    {*FAULT_TARGETS[kind], *(plugins if kind in PLUGIN_FAULTS else ())}
                )
                problems.append(
                    (
                        ("devices", "faults", kind, "devices", index),
                        f"{kind} cannot strike {device!r}; it strikes {allowed}",
                        device,
                    )
                )
        if problems:
            refuse(problems)
        return self

    @model_validator(mode="after")
    def _approval_rules_name_what_there_is(self) -> CampaignConfig:
        problems = approval_problems(
            self.approval, list(self.search_space), [o.name for o in self.objectives]
        )
        if problems:
            refuse(problems)
        return self

    @model_validator(mode="after")
    def _reference_point_fits_the_objectives(self) -> CampaignConfig:
        names = [objective.name for objective in self.objectives]
        reference = self.reference_point
        if reference is None:
            return self
        if len(names) < 2:
            refuse(
                [
                    (
                        ("reference_point",),
                        f"hypervolume needs several objectives; this campaign has one, {names}",
                        reference,
                    )
                ]
            )
        if set(reference) != set(names):
            refuse(
                [(("reference_point",), f"give one value for each objective {names}", reference)]
            )
        infinite = {name: value for name, value in reference.items() if not math.isfinite(value)}
        if infinite:
            refuse([(("reference_point",), "values must be finite numbers", infinite)])
        return self

    @model_validator(mode="after")
    def _agent_serves_the_problem(self) -> CampaignConfig:
        try:
            self.agent.options.check_problem(len(self.objectives), len(self.constraints.outcomes))
        except ValueError as error:
            refuse([(("agent",), str(error), self.agent.name)])
        return self

    @model_validator(mode="after")
    def _problem_is_well_posed(self) -> CampaignConfig:
        try:
            self.agent_space(pool=False)
        except ValueError as error:
            refuse([(("constraints", "linear"), str(error), self.constraints.linear)])
        try:
            self.agent_space()
        except (ValueError, OSError) as error:
            refuse([(("candidates",), str(error), str(self.candidates))])
        return self

    def agent_space(self, pool: bool = True) -> SearchSpace:
        """The search space as the agent sees it: the box, the linear constraints and (with
        ``pool``) the candidates."""
        space = SearchSpace(
            tuple(
                Parameter(
                    name,
                    p.low,
                    p.high,
                    p.unit,
                    log_scale=p.log_scale,
                    values=tuple(p.values) if p.values else None,
                    categorical=p.categorical,
                )
                for name, p in self.search_space.items()
            ),
            linear_constraints=tuple(map(LinearConstraint.parse, self.constraints.linear)),
        )
        if not pool or self.candidates is None:
            return space
        rows = candidate_rows(space, self.candidates)
        return SearchSpace(
            space.parameters,
            candidates=tuple(map(tuple, rows.tolist())),
            linear_constraints=space.linear_constraints,
        )


def condition_problems(
    config: CampaignConfig, device_limits: Mapping[str, tuple[float, float, str]]
) -> list[tuple[tuple[str | int, ...], str, Any]]:
    """Where the campaign's conditions leave the reactor's ``device_limits`` (safe range and
    unit of each condition): ``(field path, message, bad value)`` for each."""
    problems: list[tuple[tuple[str | int, ...], str, Any]] = []
    unknown = f"the reactor has no such condition; it has {sorted(device_limits)}"
    for name, parameter in config.search_space.items():
        if name not in device_limits:
            problems.append((("search_space", name), unknown, name))
            continue
        low, high, unit = device_limits[name]
        if parameter.unit != unit:
            problems.append(
                (("search_space", name, "unit"), f"the reactor works in {unit!r}", parameter.unit)
            )
        if parameter.low < low or parameter.high > high:
            problems.append(
                (
                    ("search_space", name),
                    f"[{parameter.low:g}, {parameter.high:g}] {parameter.unit} leaves the "
                    f"reactor's safe range [{low:g}, {high:g}] {unit}",
                    [parameter.low, parameter.high],
                )
            )
    for name, value in config.fixed_conditions.items():
        if name not in device_limits:
            problems.append((("fixed_conditions", name), unknown, value))
        elif not device_limits[name][0] <= value <= device_limits[name][1]:
            low, high, unit = device_limits[name]
            problems.append(
                (
                    ("fixed_conditions", name),
                    f"{value:g} {unit} is outside the reactor's safe range "
                    f"[{low:g}, {high:g}] {unit}",
                    value,
                )
            )
    missing = sorted(set(device_limits) - set(config.search_space) - set(config.fixed_conditions))
    if missing:
        problems.append(
            (
                ("search_space",),
                f"conditions {missing} are neither searched nor in fixed_conditions",
                sorted(config.search_space),
            )
        )
    return problems


def parse_campaign(data: Any, source: str = "campaign") -> CampaignConfig:
    """Validate a campaign given as plain data; :class:`CampaignConfigError` lists the faults."""
    if not isinstance(data, dict):
        raise CampaignConfigError(f"{source}: expected a mapping of campaign fields, got {data!r}")
    try:
        return CampaignConfig.model_validate(data)
    except ValidationError as error:
        lines = "\n".join(f"  {line}" for line in error_lines(error))
        raise CampaignConfigError(f"{source} is not a valid campaign:\n{lines}") from None


class _PlainLoader(yaml.SafeLoader):
    """YAML without anchors and aliases: an alias can repeat a node exponentially often (an
    822-byte file became 500 MB), and a campaign file has nothing to share."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise yaml.composer.ComposerError(
                None,
                None,
                "anchors (&name) and aliases (*name) are not allowed in a campaign file; "
                "write the value out",
                event.start_mark,
            )
        return super().compose_node(parent, index)


def _repeated_keys(node: yaml.Node, path: tuple[str, ...] = ()) -> list[str]:
    """Every key given twice in one mapping of ``node``, as a field path with its lines."""
    repeated = []
    if isinstance(node, yaml.MappingNode):
        first_line: dict[Any, int] = {}
        for key, value in node.value:
            line = key.start_mark.line + 1
            if key.value in first_line:
                repeated.append(
                    f"{'.'.join((*path, str(key.value)))}: given twice (lines "
                    f"{first_line[key.value]} and {line}); keep one"
                )
            first_line.setdefault(key.value, line)
            repeated += _repeated_keys(value, (*path, str(key.value)))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            repeated += _repeated_keys(item, (*path, str(index)))
    return repeated


def read_yaml(text: str, source: str) -> Any:
    """The data of a campaign YAML text; :class:`CampaignConfigError` for YAML that is
    broken, repeats a key (the last value would win silently) or uses aliases."""
    loader = _PlainLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        repeated = _repeated_keys(node)
        if repeated:
            raise CampaignConfigError(
                f"{source} is not a valid campaign:\n" + "\n".join(f"  {r}" for r in repeated)
            )
        return loader.construct_document(node)
    except yaml.YAMLError as error:
        raise CampaignConfigError(f"{source} is not valid YAML: {error}") from None
    finally:
        loader.dispose()


def load_campaign(path: Path | str) -> CampaignConfig:
    """Read and validate a campaign YAML file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise CampaignConfigError(f"campaign file not found: {path}") from None
    return parse_campaign(read_yaml(text, str(path)), source=str(path))
