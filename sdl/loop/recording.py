"""The campaign's decisions, recorded in the catalog as runs of a start and a stop document.

Besides the raw and analysis runs, a campaign records why it did what it did: its
configuration and software at each (re)start, every person's request, every fault and the
policy's action, every refused proposal; and each raw run's metadata says why it was made.
:class:`DecisionRecorder` composes those runs (``event_model.compose_run``) and hands their
documents on.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import math
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from event_model import compose_run

from sdl.campaign.config import CampaignConfig
from sdl.campaign.control import ControlAction
from sdl.campaign.results import Fault
from sdl.records.vocabulary import (
    ABORT,
    ATTEMPT,
    CAMPAIGN_ID,
    ITERATION,
    PROPOSAL_ID,
    PURPOSE,
    RAW_UID,
    REQUEST_ID,
    STATION,
    SUCCESS,
    DocumentCallback,
    ExitStatus,
    Purpose,
)

logger = logging.getLogger(__name__)

#: Packages whose versions decide what a campaign did; recorded with every (re)start.
RECORDED_PACKAGES = (
    "sdl",
    "bluesky",
    "ophyd",
    "event-model",
    "tiled",
    "botorch",
    "gpytorch",
    "torch",
    "numpy",
    "scipy",
    "pymatgen",
    "scikit-image",
    "caproto",
)


def software_versions() -> dict[str, str]:
    """Installed versions of :data:`RECORDED_PACKAGES`, plus Python's."""
    versions = {"python": sys.version.split()[0]}
    for package in RECORDED_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def json_safe(values: Mapping[str, Any]) -> dict[str, Any]:
    """Metadata must be valid JSON: NaN and infinities become None."""
    return {
        key: None if isinstance(value, float) and not math.isfinite(value) else value
        for key, value in values.items()
    }


def experiment_metadata(
    config: CampaignConfig,
    iteration: int,
    proposal_id: str,
    proposed_by: str,
    station: str,
    belief: Mapping[str, Any],
    injection_id: str | None = None,
) -> dict[str, Any]:
    """What a raw run records about why it was made (the agent's ``belief`` included;
    ``injection_id``: the person's injection it carries out)."""
    return {
        CAMPAIGN_ID: config.name,
        ITERATION: iteration,
        PROPOSAL_ID: proposal_id,
        **({REQUEST_ID: injection_id} if injection_id else {}),
        "agent": config.agent.name,
        "proposed_by": proposed_by,
        STATION: station,
        "seed": config.seed,
        "objectives": [objective.model_dump() for objective in config.objectives],
        "agent_belief": json_safe(belief),
    }


class DecisionRecorder:
    """Records campaign ``campaign_id``'s decisions as runs, passing their documents to ``emit``.

    Parameters
    ----------
    campaign_id
        The campaign's name, written into every run.
    emit
        Receives the documents (the catalog writer); must take them from any thread.
    """

    def __init__(self, campaign_id: str, emit: DocumentCallback) -> None:
        self.campaign_id = campaign_id
        self._emit = emit

    def record(
        self,
        purpose: Purpose,
        metadata: Mapping[str, Any],
        *,
        status: ExitStatus = SUCCESS,
        reason: str = "",
    ) -> None:
        """A run of only a start and a stop document: one decision, kept in the catalog."""
        bundle = compose_run(metadata={PURPOSE: purpose, CAMPAIGN_ID: self.campaign_id, **metadata})
        self._emit("start", bundle.start_doc)
        self._emit("stop", bundle.compose_stop(exit_status=status, reason=reason))

    def campaign(
        self, config: CampaignConfig, analysis_settings: Mapping[str, Any] | None = None
    ) -> None:
        """The campaign (re)starts: its configuration, the software that runs it and what
        the analysis uses beside the configuration (the XRD calibration's contents: a later
        reader need not find the file the configuration names)."""
        self.record(
            Purpose.CAMPAIGN,
            {
                "config": json.loads(config.model_dump_json()),
                "versions": software_versions(),
                **(analysis_settings or {}),
            },
        )

    def control(self, request: ControlAction) -> None:
        """A person's request, as the control log took it."""
        self.record(
            Purpose.CONTROL,
            {
                "action": request.action,
                "who": request.who,
                "reason": request.reason,
                "requested_at": request.time,
                REQUEST_ID: request.request_id,
                **({"conditions": dict(request.conditions)} if request.conditions else {}),
                **({PROPOSAL_ID: request.proposal_id} if request.proposal_id else {}),
            },
        )

    def refused(
        self,
        proposal_id: str | None,
        conditions: Mapping[str, float],
        reason: str,
        injection_id: str | None = None,
    ) -> None:
        """A proposal that was not run (``proposal_id`` None: an injection never proposed;
        ``injection_id``: the person's injection it would have carried out)."""
        logger.warning("refused proposal %s: %s", proposal_id, reason)
        self.record(
            Purpose.REFUSED_PROPOSAL,
            {
                PROPOSAL_ID: proposal_id,
                "reason": reason,
                "conditions": json_safe(conditions),
                **({REQUEST_ID: injection_id} if injection_id else {}),
            },
            status=ABORT,
            reason=reason,
        )

    def orphaned_files(self, files: Sequence[str], moved_to: str) -> None:
        """Instrument files no run refers to, found on resuming, and where they now are."""
        logger.warning(
            "%d instrument file(s) of an interrupted run were never recorded; moved to %s",
            len(files),
            moved_to,
        )
        self.record(Purpose.ORPHANED_FILES, {"files": list(files), "moved_to": moved_to})

    def fault(self, fault: Fault) -> None:
        """A fault in one attempt and the action the policy took, logged and recorded."""
        log = logger.error if fault.action in ("abort", "pause") else logger.warning
        log(
            "experiment %d attempt %d: %s (%s) -> %s",
            fault.iteration,
            fault.attempt,
            fault.kind,
            fault.reason,
            fault.action,
        )
        self.record(
            Purpose.FAULT,
            {
                ITERATION: fault.iteration,
                PROPOSAL_ID: fault.proposal_id,
                "conditions": json_safe(fault.conditions),
                ATTEMPT: fault.attempt,
                "kind": fault.kind,
                "action": fault.action,
                RAW_UID: fault.raw_uid,
                "reason": fault.reason,
            },
        )
