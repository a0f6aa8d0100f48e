"""Check a campaign's catalog for the promises of the fault handling, from the catalog alone.

Nothing lost (every sound, finished measurement is analysed and counted), nothing duplicated
(one counted run per iteration and per proposal), nothing outside the safe limits (no
experiment run ever asked the reactor for a condition beyond them).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sdl.records.catalog import campaign_runs, exit_status
from sdl.records.vocabulary import (
    ITERATION,
    PROPOSAL_ID,
    RAW_UID,
    SUCCESS,
    Purpose,
)


@dataclass
class CampaignAudit:
    """What the catalog says happened in one campaign."""

    kept: int = 0
    skipped: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    limit_violations: list[str] = field(default_factory=list)
    gaps: list[int] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    refused: int = 0

    @property
    def experiments(self) -> int:
        """Experiments that count against the budget: kept plus skipped as failed."""
        return self.kept + self.skipped

    @property
    def sound(self) -> bool:
        return not (self.lost or self.duplicated or self.limit_violations or self.gaps)


def audit_campaign(
    client: Any, campaign_id: str, limits: Mapping[str, tuple[float, float, str]]
) -> CampaignAudit:
    """Audit campaign ``campaign_id`` in ``client`` against the reactor's safe ``limits``."""
    audit = CampaignAudit()
    analysed = {
        run.metadata["start"][RAW_UID]
        for run in campaign_runs(client, campaign_id, Purpose.ANALYSIS)
        if exit_status(run) == SUCCESS
    }
    faults = [run.metadata["start"] for run in campaign_runs(client, campaign_id, Purpose.FAULT)]
    audit.faults.update(fault["kind"] for fault in faults)
    judged = {fault[RAW_UID] for fault in faults}
    skipped_ids = {fault[PROPOSAL_ID] for fault in faults if fault["action"] == "skip"}
    audit.refused = len(campaign_runs(client, campaign_id, Purpose.REFUSED_PROPOSAL))
    iterations: Counter[int] = Counter()
    proposals: Counter[str] = Counter()
    for run in campaign_runs(client, campaign_id, Purpose.EXPERIMENT):
        start = run.metadata["start"]
        for name, value in start["conditions"].items():
            low, high, unit = limits[name]
            if not low <= value <= high:
                audit.limit_violations.append(
                    f"{start['uid']}: {name}={value:g} {unit} outside [{low:g}, {high:g}]"
                )
        if start["uid"] in analysed:
            iterations[start[ITERATION]] += 1
            proposals[start[PROPOSAL_ID]] += 1
        elif exit_status(run) == SUCCESS and start["uid"] not in judged:
            audit.lost.append(start["uid"])
    audit.duplicated = sorted(
        [f"iteration {i}" for i, n in iterations.items() if n > 1]
        + [f"proposal {p}" for p, n in proposals.items() if n > 1]
    )
    audit.kept = len(proposals)
    audit.skipped = len(skipped_ids - set(proposals))
    skipped_iterations = {
        fault[ITERATION]
        for fault in faults
        if fault["action"] == "skip" and fault[PROPOSAL_ID] not in proposals
    }
    counted = set(iterations) | skipped_iterations
    audit.gaps = sorted(set(range(max(counted, default=-1) + 1)) - counted)
    return audit
