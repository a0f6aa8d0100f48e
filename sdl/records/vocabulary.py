"""The catalog's vocabulary: what each run is for, the metadata keys that join runs, how runs end.

Every run a campaign records says in its start document what it is for (``purpose``) and
carries the keys that join it to the others: the campaign's name, the iteration, the
proposal's ``_id`` and, for an analysis run, the raw run it analysed. Modules that write or read
runs spell these names from here, so the catalog speaks one language.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any, Final, Literal


class Purpose(StrEnum):
    """What a run of a campaign records (its start document's ``purpose``)."""

    #: One attempt to make and measure a sample: the raw data.
    EXPERIMENT = "experiment"
    #: The features of one raw run, or why it has none.
    ANALYSIS = "analysis"
    #: The campaign's configuration and software versions, at each (re)start.
    CAMPAIGN = "campaign"
    #: A fault in one attempt and the action the fault policy took.
    FAULT = "fault"
    #: A person's request (pause, resume, abort, veto, inject).
    CONTROL = "control"
    #: A proposal that was not run, and why.
    REFUSED_PROPOSAL = "refused-proposal"
    #: Instrument files that no run refers to (a crash between writing and recording them),
    #: found when the campaign resumed, and where they were moved.
    ORPHANED_FILES = "orphaned-files"


#: Purposes of the runs that record a decision people follow (a start and a stop document,
#: no data); an orphaned-files run is housekeeping, shown by the audit instead.
DECISION_PURPOSES: Final = (
    Purpose.CAMPAIGN,
    Purpose.FAULT,
    Purpose.CONTROL,
    Purpose.REFUSED_PROPOSAL,
)

#: Start-document key: what the run is for (a :class:`Purpose`).
PURPOSE: Final = "purpose"
#: Start-document key: the campaign's name.
CAMPAIGN_ID: Final = "campaign_id"
#: Start-document key: the experiment's number in its campaign, from 0.
ITERATION: Final = "iteration"
#: Start-document key: the proposal's id (the agent's ``_id``), shared by every attempt.
PROPOSAL_ID: Final = "_id"
#: Start-document key: the attempt's number in its experiment, from 1.
ATTEMPT: Final = "attempt"
#: Start-document key of an analysis or fault run: the uid of the raw run it is about.
RAW_UID: Final = "raw_uid"
#: Start-document key of a control run: the request's id; of an experiment or refused
#: proposal that carried out a person's injection: that injection's request id.
REQUEST_ID: Final = "request_id"
#: Start-document key: the station that made the sample.
STATION: Final = "station"
#: Start-document key of a failed analysis run: the ``on_fault`` kind of its problem.
PROBLEM_KIND: Final = "problem_kind"

#: Keys an analysis run copies from its raw run, so raw data, proposal and features join.
RUN_LINKS: Final = (CAMPAIGN_ID, ITERATION, PROPOSAL_ID)

#: Name of an analysis run's event stream of features.
FEATURES_STREAM: Final = "features"

#: How a run ended, as its stop document says (event-model's ``RunStop.exit_status``).
ExitStatus = Literal["success", "abort", "fail"]
#: The run ended as planned.
SUCCESS: Final = "success"
#: The run was stopped on purpose.
ABORT: Final = "abort"
#: The run failed.
FAIL: Final = "fail"

#: Anything that takes documents: ``callback(name, doc)``.
DocumentCallback = Callable[[str, Mapping[str, Any]], None]


def links_to(raw_start: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata that joins a run about the raw run ``raw_start`` to it and its proposal."""
    return {
        RAW_UID: raw_start["uid"],
        **{key: raw_start[key] for key in RUN_LINKS if key in raw_start},
    }
