"""The approval gate at work: an agent's proposal that needs a person waits here for one.

Which proposals wait is the campaign file's ``approval`` section
(:mod:`sdl.campaign.approval`); the decisions arrive through the campaign's
:class:`~sdl.campaign.control.CampaignControl` (dashboard, ``sdl control``, Python), which
records each with who, when and why.
"""

from __future__ import annotations

import contextlib
import logging

from sdl.campaign.approval import TIMEOUT_DECIDER, ApprovalConfig
from sdl.campaign.control import CampaignControl, ControlAction, WaitingProposal
from sdl.loop.alerts import Alerts, alert_approval_waiting, alert_pause

logger = logging.getLogger(__name__)


class ApprovalGate:
    """Holds proposals until a person, or the ``on_timeout`` policy, decides them."""

    def __init__(self, approval: ApprovalConfig, control: CampaignControl, alerts: Alerts) -> None:
        self.approval = approval
        self.control = control
        self.alerts = alerts

    def decide(self, waiting: WaitingProposal) -> ControlAction:
        """Block the calling station until ``waiting`` is approved or rejected; the decision.

        Raises :class:`~sdl.campaign.control.CampaignAborted` if the campaign is aborted
        meanwhile.
        """
        logger.warning(
            "proposal %s waits for approval (%s): %s",
            waiting.proposal_id,
            "; ".join(waiting.reasons),
            dict(waiting.conditions),
        )
        self.control.hold(waiting)
        try:
            alert_approval_waiting(self.alerts, waiting)
            try:
                return self.control.await_decision(waiting.proposal_id, self.approval.timeout_s)
            except TimeoutError:
                return self._on_timeout(waiting)
        finally:
            self.control.withdraw(waiting.proposal_id)  # decided, or nobody waits for it now

    def _on_timeout(self, waiting: WaitingProposal) -> ControlAction:
        """Pause the campaign and wait on, or decide as ``on_timeout`` says."""
        late = f"nobody decided within {self.approval.timeout_s:g} s"
        if self.approval.on_timeout == "pause":
            self.control.pause(TIMEOUT_DECIDER, f"proposal {waiting.proposal_id}: {late}")
            if (paused := self.control.paused) is not None:
                alert_pause(self.alerts, paused)
        else:
            decide = getattr(self.control, self.approval.on_timeout)
            with contextlib.suppress(ValueError):  # a person decided at the last moment
                decide(waiting.proposal_id, TIMEOUT_DECIDER, late)
        return self.control.await_decision(waiting.proposal_id, None)
