"""Step through a campaign from a notebook: each proposal shown with the agent's belief, then
approved (as proposed or edited) or rejected by the person at the keyboard.

:class:`NotebookCampaign` runs the same :class:`~sdl.loop.runner.CampaignRunner` as
``sdl run``, on a background thread, behind an approval gate that holds every proposal of the
agent until the notebook decides it. Everything goes to the campaign's catalog as from
``sdl run`` (each decision a ``control`` run with who and why), so a campaign moves freely
between the notebook and the command line: stop it here and ``sdl run FILE`` resumes it, or
open in a notebook a campaign the command line began.
"""

from __future__ import annotations

import getpass
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sdl.campaign.approval import ApprovalConfig
from sdl.campaign.config import CampaignConfig, load_campaign, parse_campaign
from sdl.campaign.control import WaitingProposal
from sdl.campaign.results import CampaignResult, ExperimentRecord
from sdl.loop.runner import CampaignRunner

#: How often waiting calls look again (they block until something happens).
POLL_S = 0.05


class NotebookCampaign:
    """One campaign, decided step by step from Python.

    Parameters
    ----------
    config
        The campaign (its own ``approval`` section is replaced: every proposal of the agent
        waits for the notebook, for as long as it takes).
    who
        Recorded with each decision (default: the login name).
    **runner
        Passed on to :class:`~sdl.loop.runner.CampaignRunner` (``client``, ``serve_control``
        to also take ``sdl control`` requests, ...).
    """

    def __init__(self, config: CampaignConfig, *, who: str | None = None, **runner: Any) -> None:
        gate = ApprovalConfig(mode="all", timeout_s=None)
        self.config = config.model_copy(update={"approval": gate})
        self.who = who or getpass.getuser()
        self.runner = CampaignRunner(self.config, **runner)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="notebook-campaign", daemon=True)

    @classmethod
    def open(
        cls, path: Path | str, *, who: str | None = None, **overrides: Any
    ) -> NotebookCampaign:
        """The campaign of a campaign file, with fields overridden (``budget=4``, ``data_dir=``,
        ``agent={"name": "random"}``); validated as ``sdl run`` validates it."""
        config = load_campaign(path)
        if overrides:
            config = parse_campaign({**config.model_dump(), **overrides}, source=str(path))
        return cls(config, who=who)

    def __enter__(self) -> NotebookCampaign:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def result(self) -> CampaignResult:
        """Everything done so far: records, faults, refusals, best."""
        return self.runner.result

    def proposals(self, timeout_s: float | None = None) -> list[WaitingProposal]:
        """The agent's proposals waiting for a decision: each with ``conditions``, the agent's
        ``belief`` about it and ``proposal_id``. Starts the campaign on the first call, then
        waits until at least one proposal waits; empty once the campaign has ended (its
        budget spent, the agent done, or stopped). ``TimeoutError`` after ``timeout_s``."""
        if self._thread.ident is None:  # not started yet
            self._thread.start()
        self._until(lambda: bool(self.runner.control.waiting) or not self.running, timeout_s)
        self._raise_error()
        return self.runner.control.waiting

    def approve(self, proposal: WaitingProposal, reason: str = "", **edits: float) -> None:
        """Run this proposal, as proposed or with the conditions given as keywords edited in
        (``temperature_c=600``); an edit past the search space or a device's limit raises
        ``ValueError`` and the proposal keeps waiting."""
        self.runner.control.approve(proposal.proposal_id, self.who, reason, edits or None)

    def reject(self, proposal: WaitingProposal, reason: str = "") -> None:
        """Do not run this proposal; the agent is told it failed and proposes again."""
        self.runner.control.reject(proposal.proposal_id, self.who, reason)

    def wait(self, experiments: int, timeout_s: float | None = None) -> list[ExperimentRecord]:
        """Block until the campaign has ``experiments`` done in all (or has ended); the
        records of every experiment so far."""
        self._until(lambda: len(self.result.records) >= experiments or not self.running, timeout_s)
        self._raise_error()
        return list(self.result.records)

    def table(self) -> list[dict[str, Any]]:
        """One row per experiment: its number (from 1), the conditions, the objectives' values
        (None where it failed), the station and the instrument hours."""
        names = self.result.objective_names
        return [
            {
                "experiment": record.iteration + 1,
                **record.conditions,
                **{name: record.features.get(name) for name in names},
                "station": record.station,
                "instrument_hours": record.instrument_time_s / 3600.0,
            }
            for record in self.result.records
        ]

    def stop(self, reason: str = "stopped from the notebook") -> None:
        """Stop the campaign cleanly (an experiment running finishes first); it resumes from
        the catalog with ``sdl run`` or another :class:`NotebookCampaign`."""
        if self.running:
            self.runner.control.abort(self.who, reason)
            self._thread.join()

    def _run(self) -> None:
        try:
            self.runner.run()
        except BaseException as error:  # handed to the notebook's next call
            self.error = error

    def _raise_error(self) -> None:
        if self.error is not None:
            raise RuntimeError(f"the campaign stopped on an error: {self.error}") from self.error

    @staticmethod
    def _until(condition: Any, timeout_s: float | None) -> None:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not condition():
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"nothing happened within {timeout_s:g} s")
            time.sleep(POLL_S)


def as_text(proposal: WaitingProposal, units: Mapping[str, str] | None = None) -> str:
    """A proposal on one line, for printing in a notebook."""
    units = units or {}
    conditions = ", ".join(
        f"{name} = {value:.4g} {units.get(name, '')}".rstrip()
        for name, value in proposal.conditions.items()
    )
    belief = ", ".join(f"{name} = {value:.4g}" for name, value in proposal.belief.items())
    return f"{proposal.proposal_id[:8]}: {conditions}" + (f" (agent: {belief})" if belief else "")
