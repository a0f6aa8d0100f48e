"""The document stream: msgpack on the wire, every document in order, bad messages refused."""

from __future__ import annotations

import logging
import pickle
import time

import numpy as np
import pytest
import zmq
from bluesky import RunEngine
from bluesky.plans import count
from ophyd.sim import SynSignal

from sdl.stream import DocumentPublisher, StreamProxy, StreamSubscriber, deserialize, serialize


def test_arrays_round_trip_with_dtype_and_shape():
    doc = {"data": {"pattern": np.arange(2048, dtype="<f8"),
                    "image": np.ones((4, 3), dtype="<f4"), "n": np.int64(3)}}
    decoded = deserialize(serialize(doc))
    np.testing.assert_array_equal(decoded["data"]["pattern"], doc["data"]["pattern"])
    assert decoded["data"]["image"].dtype == np.float32 and decoded["data"]["image"].shape == (4, 3)
    assert decoded["data"]["n"] == 3


def test_object_arrays_are_refused_both_ways():
    with pytest.raises(TypeError, match="only numeric arrays"):
        serialize({"x": np.array([{"a": 1}], dtype=object)})


@pytest.mark.parametrize("payload", [pickle.dumps({"uid": "x"}), b"\xff\x00garbage", b"\x2a"])
def test_pickled_or_malformed_payload_is_refused_and_logged(payload, caplog):
    with caplog.at_level(logging.ERROR, logger="sdl.stream"), pytest.raises(ValueError):
        deserialize(payload)
    assert "refused a stream message" in caplog.text


@pytest.fixture
def proxy():
    stream = StreamProxy().start()
    yield stream
    stream.close()


def _subscribe(proxy, count):
    received = [[] for _ in range(count)]
    subscribers = [StreamSubscriber(proxy.out_address, lambda n, d, r=r: r.append((n, d))).start()
                   for r in received]
    time.sleep(0.5)  # PUB/SUB: let the subscriptions reach the proxy before publishing
    return received, subscribers


def _wait_for(condition, timeout_s=30.0):
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_proxy_binds_to_loopback_by_default(proxy):
    assert proxy.in_address.startswith("tcp://127.0.0.1:")
    assert proxy.out_address.startswith("tcp://127.0.0.1:")


def test_every_document_of_a_1000_event_run_reaches_two_subscribers_in_order(proxy):
    received, subscribers = _subscribe(proxy, 2)
    published = []
    RE = RunEngine({})
    RE.subscribe(lambda name, doc: published.append((name, doc["uid"] if "uid" in doc else None)))
    publisher = DocumentPublisher(proxy.in_address)
    RE.subscribe(publisher)
    pattern = SynSignal(func=lambda: np.random.default_rng(0).random(256), name="pattern")
    RE(count([pattern], num=1000))
    try:
        for docs in received:
            _wait_for(lambda docs=docs: len(docs) >= len(published))
            assert [(n, d.get("uid")) for n, d in docs] == published
            events = [d for n, d in docs if n == "event"]
            assert len(events) == 1000 and [e["seq_num"] for e in events] == list(range(1, 1001))
            assert events[-1]["data"]["pattern"].shape == (256,)
    finally:
        publisher.close()
        for subscriber in subscribers:
            subscriber.close()


def test_a_pickled_message_is_dropped_and_the_subscriber_keeps_going(proxy, caplog):
    received, subscribers = _subscribe(proxy, 1)
    context = zmq.Context()
    attacker = context.socket(zmq.PUB)
    attacker.setsockopt(zmq.LINGER, 0)
    attacker.connect(proxy.in_address)
    time.sleep(0.3)
    with caplog.at_level(logging.ERROR, logger="sdl.stream"):
        attacker.send(b" start " + pickle.dumps({"uid": "evil"}))
        attacker.send(b" start " + serialize({"uid": "good", "time": 0.0}))
        _wait_for(lambda: received[0])
    attacker.close()
    context.term()
    subscribers[0].close()
    assert [doc["uid"] for _, doc in received[0]] == ["good"]
    assert "refused a stream message" in caplog.text
