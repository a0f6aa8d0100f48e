"""Streaming XRD analysis: a bluesky callback that analyses every pattern as its event arrives.

Subscribe an :class:`XRDStreamAnalysis` to a RunEngine (``RE.subscribe(callback)``) or to a
ZeroMQ ``RemoteDispatcher``: it routes the documents run by run (event-model's ``RunRouter``,
so interleaved runs do not mix), and for each raw run it opens an analysis run (``purpose:
analysis``, ``raw_uid``, the raw run's campaign keys), emits one ``xrd_features`` event per
pattern event (``event`` or ``event_page``) and closes it when the raw run stops, passing
these documents to ``emit`` (e.g. a TiledWriter or a Publisher), so reduced data flows on as
documents, as in the NSLS-II XPD loop. A pattern the analysis refuses is logged, counted and
skipped; it never stops the stream.

Analysis functions: :func:`whole_pattern_analysis` (the physics-based fit of
:mod:`sdl.analysis.xrd.whole_pattern`) and :func:`classifier_analysis` (the CNN of
:mod:`sdl.analysis.xrd.classifier`), or any callable ``(two_theta_deg, counts) -> {name: value}``.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from event_model import (
    ComposeDescriptorBundle,
    ComposeRunBundle,
    DocumentRouter,
    Event,
    compose_run,
)

from physics.phases import TIO2_POLYMORPHS
from sdl.analysis.xrd.classifier import XRDClassifier
from sdl.analysis.xrd.whole_pattern import analyse_pattern
from sdl.records.routing import RunCallbacks, RunFollower
from sdl.records.vocabulary import PURPOSE, SUCCESS, DocumentCallback, Purpose, links_to

logger = logging.getLogger(__name__)

#: What an analysis function returns: feature name -> value.
Analysis = Callable[[np.ndarray, np.ndarray], Mapping[str, float]]


def whole_pattern_analysis(
    phases: Sequence[str] = TIO2_POLYMORPHS, include_amorphous: bool = True
) -> Analysis:
    """The whole-pattern fit's features (fractions, sizes, their ``_std``, ``rwp``)."""

    def analyse(two_theta_deg: np.ndarray, counts: np.ndarray) -> Mapping[str, float]:
        return analyse_pattern(two_theta_deg, counts, phases, include_amorphous).as_dict()

    return analyse


def classifier_analysis(classifier: XRDClassifier) -> Analysis:
    """The CNN's features: ``<component>_probability`` and ``<component>_fraction``."""

    def analyse(two_theta_deg: np.ndarray, counts: np.ndarray) -> Mapping[str, float]:
        prediction = classifier.predict(two_theta_deg, counts)
        features: dict[str, float] = {}
        for index, component in enumerate(prediction.components):
            features[f"{component}_probability"] = float(prediction.probability[0, index])
            features[f"{component}_fraction"] = float(prediction.fractions[0, index])
        return features

    return analyse


class XRDStreamAnalysis:
    """A ``(name, doc)`` callback that runs ``analysis`` on every XRD pattern event.

    Parameters
    ----------
    analysis
        ``(two_theta_deg, counts) -> features``.
    emit
        Receives the analysis runs' documents; None keeps only :attr:`results`.
    counts_key, two_theta_key
        Data keys of the pattern in the raw events.
    keep
        How many recent results :attr:`results` holds.
    """

    def __init__(
        self,
        analysis: Analysis,
        emit: DocumentCallback | None = None,
        counts_key: str = "xrd_counts",
        two_theta_key: str = "xrd_two_theta",
        keep: int = 1000,
    ) -> None:
        self.analysis = analysis
        self.emit = emit
        self.counts_key = counts_key
        self.two_theta_key = two_theta_key
        #: ``(raw run uid, event seq_num, features)`` of the latest analysed patterns.
        self.results: deque[tuple[str, int, dict[str, float]]] = deque(maxlen=keep)
        self.failures = 0
        self._router = RunFollower([self._follow])

    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:
        self._router(name, doc)

    def _follow(self, name: str, start: Mapping[str, Any]) -> RunCallbacks:
        return [_PatternRun(self, start)], []

    def features(self, event: Mapping[str, Any], raw_uid: str) -> dict[str, float] | None:
        """The features of one event's pattern; None if it has none or the analysis refuses it
        (logged and counted in :attr:`failures`)."""
        data = event["data"]
        if self.counts_key not in data or self.two_theta_key not in data:
            return None
        try:
            features = {
                key: float(value)
                for key, value in self.analysis(
                    np.asarray(data[self.two_theta_key], dtype=float),
                    np.asarray(data[self.counts_key], dtype=float),
                ).items()
            }
        except ValueError as error:
            self.failures += 1
            logger.warning(
                "pattern %s of run %s not analysed: %s", event.get("seq_num"), raw_uid, error
            )
            return None
        self.results.append((raw_uid, int(event.get("seq_num", 0)), features))
        return features


class _PatternRun(DocumentRouter):
    """One raw run followed by an :class:`XRDStreamAnalysis`: its analysis run, opened at the
    first analysed pattern and closed when the raw run stops."""

    def __init__(self, stream: XRDStreamAnalysis, raw_start: Mapping[str, Any]) -> None:
        self._stream = stream
        self._raw_start = raw_start
        self._bundle: ComposeRunBundle | None = None
        self._descriptor: ComposeDescriptorBundle | None = None

    def event(self, doc: Event) -> Event:
        features = self._stream.features(doc, self._raw_start["uid"])
        if features is not None and self._stream.emit is not None:
            self._emit_event(self._stream.emit, features)
        return doc

    def _emit_event(self, emit: DocumentCallback, features: dict[str, float]) -> None:
        if self._bundle is None or self._descriptor is None:
            self._bundle = compose_run(
                metadata={PURPOSE: Purpose.ANALYSIS, "streamed": True, **links_to(self._raw_start)}
            )
            emit("start", self._bundle.start_doc)
            data_keys: dict[str, Any] = {
                name: {"source": "sdl.analysis.xrd.stream", "dtype": "number", "shape": []}
                for name in features
            }
            self._descriptor = self._bundle.compose_descriptor(
                name="xrd_features", data_keys=data_keys
            )
            emit("descriptor", self._descriptor.descriptor_doc)
        now = time.time()
        emit(
            "event",
            self._descriptor.compose_event(data=features, timestamps=dict.fromkeys(features, now)),
        )

    def stop(self, doc: Any) -> None:
        if self._bundle is not None and self._stream.emit is not None:
            self._stream.emit(
                "stop", self._bundle.compose_stop(exit_status=doc.get("exit_status", SUCCESS))
            )
