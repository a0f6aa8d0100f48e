"""The learned XRD classifier and the streaming callback that analyses every pattern event."""

from __future__ import annotations

import numpy as np
import pytest
from event_model import compose_run, pack_event_page, unpack_event_page

from sdl.analysis.xrd.classifier import GRID_POINTS, PhaseNet, XRDClassifier, preprocess
from sdl.analysis.xrd.stream import XRDStreamAnalysis, classifier_analysis, whole_pattern_analysis
from sdl.analysis.xrd.whole_pattern import analyse_pattern
from sdl.training.xrd_classifier import Randomisation, simulate_patterns, train_classifier


def test_simulated_training_set_has_valid_mixtures_and_truth():
    data = simulate_patterns(40, np.random.default_rng(0))
    assert data.counts.shape == (40, data.two_theta_deg.size)
    assert data.components == ("amorphous", "anatase", "brookite", "rutile")
    np.testing.assert_allclose(data.fractions.sum(axis=1), 1.0)
    present = data.fractions > 0
    assert np.all(data.fractions[present] >= 0.05 - 1e-12)
    assert np.array_equal(np.isfinite(data.crystallite_size_nm[:, 1:]), present[:, 1:])
    assert np.all(data.counts >= 0) and np.all(data.counts == np.round(data.counts))


def test_preprocessing_ignores_the_counting_time_and_resamples_any_grid():
    data = simulate_patterns(2, np.random.default_rng(1))
    once = preprocess(data.two_theta_deg, data.counts)
    assert once.shape == (2, GRID_POINTS)
    assert once.min() == 0.0 and once.max() == pytest.approx(1.0)
    coarse = preprocess(data.two_theta_deg[::2], data.counts[:, ::2])
    assert np.mean(np.abs(coarse - once)) < 0.02
    scaled = preprocess(data.two_theta_deg, 4.0 * data.counts)
    np.testing.assert_allclose(scaled, once, atol=1e-6)


def test_weights_round_trip_through_a_file(tmp_path):
    classifier = XRDClassifier(PhaseNet(4), ("amorphous", "anatase", "brookite", "rutile"))
    path = tmp_path / "cnn.pt"
    classifier.save(path)
    loaded = XRDClassifier.load(path)
    data = simulate_patterns(3, np.random.default_rng(2))
    before = classifier.predict(data.two_theta_deg, data.counts)
    after = loaded.predict(data.two_theta_deg, data.counts)
    np.testing.assert_allclose(after.probability, before.probability, atol=1e-6)
    assert loaded.components == classifier.components
    np.testing.assert_allclose(after.fractions.sum(axis=1), 1.0)


@pytest.mark.slow
def test_a_briefly_trained_cnn_tells_anatase_from_rutile():
    """Two phases, no amorphous competitor: a few hundred patterns are enough to learn."""
    randomisation = Randomisation(min_fraction=0.2)
    classifier = train_classifier(
        n_patterns=400,
        epochs=5,
        seed=0,
        phases=("anatase", "rutile"),
        batch_size=32,
        randomisation=randomisation,
    )
    test = simulate_patterns(100, np.random.default_rng(99), ("anatase", "rutile"), randomisation)
    predicted = classifier.predict(test.two_theta_deg, test.counts)
    crystalline = slice(1, None)
    accuracy = np.mean(predicted.present[:, crystalline] == (test.fractions[:, crystalline] > 0))
    assert accuracy > 0.85


def raw_run(n_events, rng_seed=3, page=False):
    data = simulate_patterns(n_events, np.random.default_rng(rng_seed))
    bundle = compose_run(metadata={"purpose": "experiment", "campaign_id": "c1", "_id": "p1"})
    keys = {
        k: {"source": "sim", "dtype": "array", "shape": [data.two_theta_deg.size]}
        for k in ("xrd_two_theta", "xrd_counts")
    }
    descriptor = bundle.compose_descriptor(name="primary", data_keys=keys)
    events = [
        descriptor.compose_event(
            data={"xrd_two_theta": data.two_theta_deg, "xrd_counts": counts},
            timestamps={"xrd_two_theta": 0.0, "xrd_counts": 0.0},
            validate=False,
        )
        for counts in data.counts
    ]
    documents = [("start", bundle.start_doc), ("descriptor", descriptor.descriptor_doc)]
    documents += (
        [("event_page", pack_event_page(*events))] if page else [("event", e) for e in events]
    )
    documents.append(("stop", bundle.compose_stop()))
    return bundle.start_doc, data, documents


def test_stream_callback_fits_every_pattern_and_emits_an_analysis_run():
    start, data, documents = raw_run(2)
    emitted = []
    callback = XRDStreamAnalysis(whole_pattern_analysis(), emit=lambda n, d: emitted.append((n, d)))
    for name, doc in documents:
        callback(name, doc)
    assert [n for n, _ in emitted] == ["start", "descriptor", "event", "event", "stop"]
    analysis_start = emitted[0][1]
    assert analysis_start["raw_uid"] == start["uid"]
    assert analysis_start["campaign_id"] == "c1" and analysis_start["_id"] == "p1"
    direct = analyse_pattern(data.two_theta_deg, data.counts[1]).as_dict()
    streamed = emitted[3][1]["data"]
    assert streamed["anatase_fraction"] == pytest.approx(direct["anatase_fraction"])
    assert [r[0] for r in callback.results] == [start["uid"]] * 2


def test_stream_callback_reads_event_pages_and_survives_a_bad_pattern():
    classifier = XRDClassifier(PhaseNet(4), ("amorphous", "anatase", "brookite", "rutile"))
    start, data, documents = raw_run(3, page=True)
    callback = XRDStreamAnalysis(classifier_analysis(classifier))
    first_event = next(unpack_event_page(documents[2][1]))
    bad = {
        **first_event,
        "data": {"xrd_two_theta": data.two_theta_deg, "xrd_counts": data.counts[0][:-5]},
        "seq_num": 99,
    }
    for name, doc in documents[:-1]:
        callback(name, doc)
    callback("event", bad)
    callback(*documents[-1])
    assert len(callback.results) == 3 and callback.failures == 1
    features = callback.results[0][2]
    assert set(features) == {
        f"{c}_{k}" for c in classifier.components for k in ("probability", "fraction")
    }
    assert sum(features[f"{c}_fraction"] for c in classifier.components) == pytest.approx(1.0)
