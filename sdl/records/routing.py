"""Following a document stream run by run, with event-model's :class:`~event_model.RunRouter`.

A stream's reader (the analysis service, the agent's outcome follower, a dashboard) may join
while a run is under way; event-model's router raises on the documents of a run whose start
it did not see. :class:`RunFollower` passes those over instead: a run is followed from its
start document or not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from event_model import RunRouter

#: A callback of one run: ``callback(name, doc)``; it sees events and datums as pages.
RunCallback = Callable[[str, dict[str, Any]], Any]

#: ``subfactory("descriptor", descriptor_doc) -> callbacks of that event stream``.
SubFactory = Callable[[str, Mapping[str, Any]], list[RunCallback]]

#: What a factory returns for one run: its callbacks and its subfactories.
RunCallbacks = tuple[list[RunCallback], list[SubFactory]]

#: ``factory("start", start_doc) -> (callbacks of that run, subfactories)``, as RunRouter takes.
RunFactory = Callable[[str, Mapping[str, Any]], RunCallbacks]


class RunFollower(RunRouter):
    """A :class:`~event_model.RunRouter` that skips the documents of runs begun before it joined.

    Parameters
    ----------
    factories
        Make each run's callbacks from its start document (see :class:`~event_model.RunRouter`).
        Callbacks receive events and datums as pages (``event_page``, ``datum_page``).
    on_unseen_stop
        Called with the stop document of a run begun before the router joined: that run was
        under way when its follower started, and is over now.
    """

    def __init__(
        self,
        factories: Sequence[RunFactory],
        on_unseen_stop: Callable[[Mapping[str, Any]], None] | None = None,
    ) -> None:
        super().__init__(list(factories))
        self._on_unseen_stop = on_unseen_stop

    def __call__(
        self, name: str, doc: Mapping[str, Any], validate: bool = False
    ) -> tuple[str, dict[str, Any]]:
        document = cast(dict[str, Any], doc)
        if name != "start" and not self._of_a_run_seen(name, doc):
            if name == "stop" and self._on_unseen_stop is not None:
                self._on_unseen_stop(doc)
            return name, document
        return super().__call__(name, document, validate)

    def _of_a_run_seen(self, name: str, doc: Mapping[str, Any]) -> bool:
        """Whether ``doc`` belongs to a run whose start this router saw."""
        if name in ("event", "event_page"):
            return doc["descriptor"] in self._descriptor_to_start
        if name in ("datum", "datum_page"):
            resource = doc["resource"]
            return resource in self._resources or resource in self._unlabeled_resources
        if name == "stream_datum":
            return doc["stream_resource"] in self._stream_resources
        if "run_start" in doc:  # descriptor, stop, stream_resource, a labelled resource
            return doc["run_start"] in self._start_to_start_doc
        return True  # an unlabelled resource: RunRouter offers it to every run


class RunCollector:
    """One run's documents, kept until its stop document; then ``on_stop(documents)``.

    A per-run callback for :class:`RunFollower`'s factories, for work that needs the whole run
    (filling its images from their files, which are closed only when the run ends).
    """

    def __init__(self, on_stop: Callable[[list[tuple[str, Mapping[str, Any]]]], None]) -> None:
        self.documents: list[tuple[str, Mapping[str, Any]]] = []
        self._on_stop = on_stop

    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:
        self.documents.append((name, doc))
        if name == "stop":
            self._on_stop(self.documents)
