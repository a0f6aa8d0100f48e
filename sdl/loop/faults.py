"""The campaign's fault policies: what to do about each failed attempt, and about a lost PV.

The campaign file's ``on_fault`` section names a policy per kind of fault (retry, skip,
pause, abort; retries then a fallback). :class:`ExperimentFaults` applies it to one
experiment's failed attempts and says each fault's action; the loop carries the action out.
:func:`with_disconnect_retries` applies the ``disconnect`` policy to one action of the loop.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from devices.epics import EpicsError
from sdl.campaign.config import FaultPolicies, FaultPolicy
from sdl.campaign.control import CampaignAborted
from sdl.campaign.results import Fault
from sdl.lab.stations import Failed
from sdl.records.vocabulary import ATTEMPT, ITERATION, PROPOSAL_ID

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Action of a raw run found unfinished or unanalysable on resume: its experiment is done again.
REDO = "redo"


def decision(policy: FaultPolicy, tries: int) -> str:
    """The policy's action for the ``tries``-th fault of one kind in one experiment."""
    if policy.action != "retry":
        return policy.action
    return "retry" if tries <= policy.retries else policy.then


class ExperimentFaults:
    """The fault policies applied to the failed attempts of one experiment.

    Parameters
    ----------
    policies
        The campaign's ``on_fault`` section.
    md
        The experiment's raw-run metadata (its iteration and proposal ``_id``).
    conditions
        The conditions the experiment was asked for, recorded with each fault.
    """

    def __init__(
        self, policies: FaultPolicies, md: Mapping[str, Any], conditions: Mapping[str, float]
    ) -> None:
        self.policies = policies
        self.iteration = int(md[ITERATION])
        self.proposal_id = str(md[PROPOSAL_ID])
        self.conditions = conditions
        self._tries: Counter[str] = Counter()

    def decide(self, failed: Failed, attempt: int) -> Fault:
        """The fault of attempt number ``attempt``, with the action its policy takes now."""
        self._tries[failed.kind] += 1
        policy = getattr(self.policies, failed.kind)
        return Fault(
            failed.kind,
            failed.reason,
            self.iteration,
            self.proposal_id,
            attempt,
            decision(policy, self._tries[failed.kind]),
            failed.raw_uid,
            self.conditions,
        )

    def wait_to_retry(self, fault: Fault) -> None:
        """Wait the retry delay of ``fault``'s policy before the next attempt."""
        time.sleep(getattr(self.policies, fault.kind).retry_delay_s)


def redo_fault(raw_start: Mapping[str, Any], kind: str, reason: str) -> Fault:
    """A fault of the raw run ``raw_start`` whose experiment is done again (on resume)."""
    return Fault(
        kind,
        reason,
        raw_start[ITERATION],
        raw_start[PROPOSAL_ID],
        raw_start.get(ATTEMPT, 1),
        REDO,
        raw_start["uid"],
    )


def with_disconnect_retries(action: Callable[[], T], what: str, policy: FaultPolicy) -> T:
    """Do ``action``; when a PV is lost, retry as the ``disconnect`` ``policy`` says.

    Raises :class:`CampaignAborted` once the retries are spent (or at once, without them).
    """
    tries = 1 + (policy.retries if policy.action == "retry" else 0)
    for attempt in range(1, tries + 1):
        try:
            return action()
        except EpicsError as error:
            if attempt == tries:
                raise CampaignAborted(f"{what}: {error}") from error
            logger.warning(
                "%s, attempt %d of %d: %s; retrying in %g s",
                what,
                attempt,
                tries,
                error,
                policy.retry_delay_s,
            )
            time.sleep(policy.retry_delay_s)
    raise AssertionError("unreachable: the last attempt returns or raises")
