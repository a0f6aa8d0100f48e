"""The closed loop: the agent proposes, the instruments make and measure, analysis tells the agent.

Campaign state lives in the catalog only: starting a campaign whose name already has runs in
the data directory reads them back and continues where it stopped.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from bluesky import RunEngine
from event_model import compose_run

from agents import Objective, Parameter, SearchSpace, make_agent
from devices.epics import EpicsError
from plans.experiment import synthesize_and_measure
from sdl.analysis.pipeline import (
    RunDocuments,
    SampleAnalysis,
    feature_documents,
    instrument_time_s,
    measurements_from_data,
    read_primary,
)
from sdl.catalog import campaign_runs, make_writer, open_catalog, raw_dir
from sdl.config import CampaignConfig
from sdl.lab import Instruments, build_instruments
from sdl.systems import get_system

logger = logging.getLogger(__name__)

#: Errors that mean an instrument's connection was lost (a PV gone, a read timed out).
INSTRUMENT_LOST = (EpicsError, TimeoutError)

#: Consecutive refused proposals after which the campaign stops instead of spinning.
MAX_CONSECUTIVE_REFUSALS = 20


@dataclass(frozen=True)
class ExperimentRecord:
    """One finished experiment: what was asked, what came out, where the raw data is."""

    iteration: int
    proposal_id: str
    conditions: dict[str, float]
    features: dict[str, float]
    raw_uid: str
    instrument_time_s: float

    @property
    def failed(self) -> bool:
        return not self.features


@dataclass
class CampaignResult:
    """What a campaign produced, in order, with the objective's direction to rank it."""

    config: CampaignConfig
    records: list[ExperimentRecord] = field(default_factory=list)
    refused: int = 0

    @property
    def objective(self) -> str:
        return self.config.objectives[0].name

    @property
    def maximize(self) -> bool:
        return self.config.objectives[0].direction == "maximize"

    def objective_values(self) -> np.ndarray:
        """The objective of every experiment in order (NaN where it failed)."""
        return np.array([r.features.get(self.objective, math.nan) for r in self.records])

    @property
    def best(self) -> ExperimentRecord | None:
        values = self.objective_values()
        if not np.isfinite(values).any():
            return None
        index = np.nanargmax(values) if self.maximize else np.nanargmin(values)
        return self.records[int(index)]

    @property
    def instrument_hours(self) -> float:
        return sum(r.instrument_time_s for r in self.records) / 3600.0


def build_agent(config: CampaignConfig) -> Any:
    """The agent named in ``config``, over the campaign's search space and objectives."""
    space = SearchSpace(tuple(
        Parameter(name, p.low, p.high, p.unit, log_scale=p.log_scale)
        for name, p in config.search_space.items()
    ))
    objectives = [Objective(o.name, o.direction, target=o.target) for o in config.objectives]
    return make_agent(config.agent.name, space, objectives, seed=config.seed,
                      max_evaluations=config.budget, **config.agent.options)


def _json_safe(values: Mapping[str, Any]) -> dict[str, Any]:
    """Metadata must be valid JSON: NaN and infinities become None."""
    return {
        key: None if isinstance(value, float) and not math.isfinite(value) else value
        for key, value in values.items()
    }


class CampaignRunner:
    """Runs one campaign in this process: RunEngine, catalog, analysis and agent together.

    Parameters
    ----------
    config
        The validated campaign.
    on_experiment
        Called after each experiment with the result so far (progress bars, dashboards).
    """

    def __init__(
        self,
        config: CampaignConfig,
        *,
        on_experiment: Callable[[CampaignResult], None] | None = None,
    ) -> None:
        self.config = config
        self.on_experiment = on_experiment
        self.data_dir = Path(config.data_dir)
        self.client = open_catalog(self.data_dir, create=True)
        self.writer = make_writer(self.client)
        self.instruments: Instruments = build_instruments(config, raw_dir(self.data_dir))
        system = get_system(config.devices.system)
        self.analysis = SampleAnalysis(config.instruments, system.phases)
        self.agent = build_agent(config)
        self.result = CampaignResult(config)
        self.RE = RunEngine({}, call_returns_result=False)
        self.RE.subscribe(self.writer)
        self.latest_run = RunDocuments()
        self.RE.subscribe(self.latest_run)

    def run(self) -> CampaignResult:
        """Run experiments until the budget is spent or the agent says stop."""
        self._resume()
        refusals = 0
        while len(self.result.records) < self.config.budget:
            if self.result.records:
                stop, reason = self.agent.should_stop()
                if stop:
                    logger.info("agent stopped the campaign: %s", reason)
                    break
            (proposal,) = self.agent.suggest(1)
            conditions = {name: float(proposal[name]) for name in self.config.search_space}
            problem = self._with_retry(partial(self._refusal_reason, conditions),
                                       "checking the proposal against the device limits")
            if problem:
                refusals += 1
                self._refuse(proposal, conditions, problem)
                if refusals >= MAX_CONSECUTIVE_REFUSALS:
                    raise RuntimeError(
                        f"{refusals} proposals in a row were outside the safe limits; "
                        f"last: {problem}"
                    )
                continue
            refusals = 0
            self._experiment(proposal, conditions)
            if self.on_experiment:
                self.on_experiment(self.result)
        return self.result

    def _refusal_reason(self, conditions: Mapping[str, float]) -> str | None:
        """Why the reactor must not be sent these conditions (None if they are safe).

        The search space bounds the agent; each setpoint's own ``check_value`` applies the
        device's safe limits (on EPICS, the PV's control limits too), as a move would.
        """
        for name, value in conditions.items():
            parameter = self.config.search_space[name]
            if not parameter.low <= value <= parameter.high:
                return (f"{name}={value:g} {parameter.unit} is outside the search space "
                        f"[{parameter.low:g}, {parameter.high:g}] {parameter.unit}")
            try:
                getattr(self.instruments.reactor, name).check_value(value)
            except ValueError as error:
                return str(error)
        return None

    def _refuse(self, proposal: Mapping[str, Any], conditions: Mapping[str, float],
                reason: str) -> None:
        """Record a refused proposal in the catalog and tell the agent it failed."""
        logger.warning("refused proposal %s: %s", proposal["_id"], reason)
        bundle = compose_run(metadata={
            "purpose": "refused-proposal", "campaign_id": self.config.name,
            "_id": proposal["_id"], "conditions": _json_safe(conditions), "reason": reason,
        })
        self.writer("start", bundle.start_doc)
        self.writer("stop", bundle.compose_stop(exit_status="abort", reason=reason))
        self.agent.register_failures([proposal])
        self.result.refused += 1

    def _experiment(self, proposal: Mapping[str, Any], conditions: dict[str, float]) -> None:
        iteration = len(self.result.records)
        proposal_id = proposal["_id"]
        belief = self.agent.report().get(proposal_id, {})
        md = {
            "campaign_id": self.config.name,
            "iteration": iteration,
            "_id": proposal_id,
            "agent": self.config.agent.name,
            "seed": self.config.seed,
            "objectives": [o.model_dump() for o in self.config.objectives],
            "agent_belief": _json_safe(belief),
        }
        all_conditions = {**conditions, **self.config.fixed_conditions}
        uid = self._acquire(all_conditions, md)
        data = self.latest_run.primary_data()
        features = self._analyse(self.latest_run.start, data)
        record = ExperimentRecord(iteration, proposal_id, all_conditions, features, uid,
                                  instrument_time_s(data))
        self._tell_agent(record)
        self.result.records.append(record)

    def _acquire(self, conditions: Mapping[str, float], md: Mapping[str, Any]) -> str:
        """Run the experiment plan (again, if an instrument was lost and the policy says so).

        Each failed attempt stays in the catalog as a run with ``exit_status: fail`` and the
        reason, so nothing recorded is lost and the interrupted run is marked as such.
        """
        attempts = itertools.count(1)

        def attempt() -> str:
            (uid,) = self.RE(synthesize_and_measure(
                self.instruments.reactor, self.instruments.detectors, conditions,
                md={**md, "attempt": next(attempts)},
            ))
            return uid

        return self._with_retry(attempt, f"experiment {md['iteration']}")

    def _with_retry(self, action: Callable[[], Any], what: str) -> Any:
        """Do ``action``; when a PV is lost, try again after a delay if the policy is retry."""
        policy = self.config.devices.epics
        tries = 1 + (policy.retries if policy.on_disconnect == "retry" else 0)
        for attempt in range(1, tries + 1):
            try:
                return action()
            except INSTRUMENT_LOST as error:
                if attempt == tries:
                    raise
                logger.warning("%s, attempt %d of %d: %s; retrying in %g s",
                               what, attempt, tries, error, policy.retry_delay_s)
                time.sleep(policy.retry_delay_s)
        raise RuntimeError(f"{what}: no attempt was made (retries={policy.retries})")

    def _analyse(self, start: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, float]:
        """Features of a raw run, recorded as an analysis run; empty if the analysis failed."""
        try:
            features = self.analysis.features(measurements_from_data(data))
        except ValueError as error:
            logger.error("analysis of run %s failed: %s", start["uid"], error)
            bundle = compose_run(metadata={"purpose": "analysis", "raw_uid": start["uid"],
                                           "campaign_id": start["campaign_id"], "_id": start["_id"],
                                           "iteration": start["iteration"]})
            self.writer("start", bundle.start_doc)
            self.writer("stop", bundle.compose_stop(exit_status="fail", reason=str(error)))
            return {}
        for name, doc in feature_documents(start, features):
            self.writer(name, doc)
        return features

    def _tell_agent(self, record: ExperimentRecord) -> None:
        point = {**record.conditions, "_id": record.proposal_id}
        if record.failed or not math.isfinite(record.features.get(self.result.objective, math.nan)):
            self.agent.register_failures([point])
        else:
            self.agent.ingest([{**point, **record.features}])

    def _resume(self) -> None:
        """Read this campaign's finished experiments back from the catalog into a fresh agent."""
        analysed = {}
        for run in campaign_runs(self.client, self.config.name, "analysis"):
            if run.metadata["stop"] and run.metadata["stop"]["exit_status"] == "success":
                features = run["features"].read()
                analysed[run.metadata["start"]["raw_uid"]] = {
                    name: float(np.asarray(features[name])[0]) for name in features.data_vars
                }
        for run in campaign_runs(self.client, self.config.name, "experiment"):
            start, stop = run.metadata["start"], run.metadata["stop"]
            if not stop or stop["exit_status"] != "success":
                continue
            data = read_primary(run)
            features = analysed.get(start["uid"])
            if features is None:
                features = self._analyse(start, data)
            record = ExperimentRecord(len(self.result.records), start["_id"], start["conditions"],
                                      features, start["uid"], instrument_time_s(data))
            self._tell_agent(record)
            self.result.records.append(record)
        if self.result.records:
            logger.info("resumed campaign %s with %d experiments from the catalog",
                        self.config.name, len(self.result.records))
