"""Check a campaign's catalog for the promises of the fault handling.

Nothing lost (every sound, finished measurement is analysed and counted, and every
experiment a person was shown as finished is in the catalog), nothing duplicated (one
counted run per iteration and per proposal), nothing outside the safe limits (no experiment
run ever asked the reactor for a condition beyond them), no instrument file left behind
unrecorded.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdl.records.catalog import campaign_runs, exit_status, orphaned_files
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
    #: Proposals reported as finished (progress, logs) that the catalog does not count.
    lost_as_reported: list[str] = field(default_factory=list)
    #: Instrument files that no run refers to and no orphaned-files run reports.
    orphans: list[str] = field(default_factory=list)

    @property
    def experiments(self) -> int:
        """Experiments that count against the budget: kept plus skipped as failed."""
        return self.kept + self.skipped

    @property
    def sound(self) -> bool:
        return not (
            self.lost
            or self.duplicated
            or self.limit_violations
            or self.gaps
            or self.lost_as_reported
            or self.orphans
        )


def audit_campaign(
    client: Any,
    campaign_id: str,
    limits: Mapping[str, tuple[float, float, str]],
    *,
    reported: Iterable[str] = (),
    raw_directory: Path | None = None,
) -> CampaignAudit:
    """Audit campaign ``campaign_id`` in ``client`` against the reactor's safe ``limits``.

    Parameters
    ----------
    reported
        Proposal ids that people were shown as finished (the runner logs each one when it
        counts it); each must be counted in the catalog.
    raw_directory
        The campaign's instrument folder (``raw_dir(data_dir, campaign_id)``); every file in
        it must belong to a run (files moved aside on resuming are reported, not orphans).
    """
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
    audit.lost_as_reported = sorted(set(reported) - set(proposals) - skipped_ids)
    if raw_directory is not None:
        audit.orphans = [
            path.name for path in orphaned_files(client, campaign_id, Path(raw_directory))
        ]
    return audit
