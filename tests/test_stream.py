"""The document stream: msgpack on the wire, every document in order, bad messages refused."""

from __future__ import annotations

import logging
import pickle
import time

import msgpack
import numpy as np
import pytest
import zmq
from bluesky import RunEngine
from bluesky.plans import count
from ophyd.sim import SynSignal

from sdl.facility.stream import (
    NDARRAY_EXT,
    DocumentPublisher,
    StreamProxy,
    StreamSubscriber,
    deserialize,
    serialize,
)

PROBE = {"uid": "probe", "time": 0.0}


def test_arrays_round_trip_with_dtype_and_shape():
    doc = {
        "data": {
            "pattern": np.arange(2048, dtype="<f8"),
            "image": np.ones((4, 3), dtype="<f4"),
            "big_endian": np.arange(3, dtype=">u2"),
            "n": np.int64(3),
        }
    }
    decoded = deserialize(serialize(doc))
    np.testing.assert_array_equal(decoded["data"]["pattern"], doc["data"]["pattern"])
    assert decoded["data"]["image"].dtype == np.float32 and decoded["data"]["image"].shape == (4, 3)
    assert decoded["data"]["big_endian"].dtype == np.dtype(">u2")
    assert decoded["data"]["n"] == 3


def test_object_arrays_are_refused_both_ways(caplog):
    with pytest.raises(TypeError, match="only numeric arrays"):
        serialize({"x": np.array([{"a": 1}], dtype=object)})
    header = msgpack.packb(["|O", [1]])
    forged = msgpack.packb({"x": msgpack.ExtType(NDARRAY_EXT, header + b"\0" * 8)})
    with caplog.at_level(logging.ERROR, logger="sdl.facility.stream"), pytest.raises(ValueError):
        deserialize(forged)
    assert "non-numeric array" in caplog.text


@pytest.mark.parametrize("payload", [pickle.dumps({"uid": "x"}), b"\xff\x00garbage", b"\x2a"])
def test_pickled_or_malformed_payload_is_refused_and_logged(payload, caplog):
    with caplog.at_level(logging.ERROR, logger="sdl.facility.stream"), pytest.raises(ValueError):
        deserialize(payload)
    assert "refused a stream message" in caplog.text


@pytest.fixture(scope="module")
def proxy():
    stream = StreamProxy().start()
    yield stream
    stream.close()


def _wait_for(condition, timeout_s=20.0):
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)


def _subscribe(proxy, count, **options):
    received = [[] for _ in range(count)]
    subscribers = [
        StreamSubscriber(proxy.out_address, lambda n, d, r=r: r.append((n, d)), **options).start()
        for r in received
    ]
    return received, subscribers


def _until_subscribed(publish, received):
    """PUB/SUB drops what is sent before a subscription arrives: probe until every list has one."""
    deadline = time.monotonic() + 20
    while not all(any(d.get("uid") == "probe" for _, d in r) for r in received):
        assert time.monotonic() < deadline, "the subscribers never joined"
        publish("start", PROBE)
        time.sleep(0.02)


def _documents(received):
    return [(n, d) for n, d in received if d.get("uid") != "probe"]


def _close(*closeables):
    for closeable in closeables:
        closeable.close()


def test_proxy_binds_to_loopback_by_default(proxy):
    assert proxy.in_address.startswith("tcp://127.0.0.1:")
    assert proxy.out_address.startswith("tcp://127.0.0.1:")


def test_a_port_in_use_is_reported(proxy):
    port = int(proxy.in_address.rsplit(":", 1)[1])
    with pytest.raises(RuntimeError, match="could not bind"):
        StreamProxy(in_port=port).start()


def test_every_document_of_a_1000_event_run_reaches_two_subscribers_in_order(proxy):
    received, subscribers = _subscribe(proxy, 2)
    publisher = DocumentPublisher(proxy.in_address)
    try:
        _until_subscribed(publisher, received)
        published = []
        RE = RunEngine({})
        RE.subscribe(lambda name, doc: published.append((name, doc.get("uid"))))
        RE.subscribe(publisher)
        pattern = SynSignal(func=lambda: np.random.default_rng(0).random(256), name="pattern")
        RE(count([pattern], num=1000))
        for docs in received:
            _wait_for(lambda docs=docs: len(_documents(docs)) >= len(published))
            docs = _documents(docs)
            assert [(n, d.get("uid")) for n, d in docs] == published
            events = [d for n, d in docs if n == "event"]
            assert len(events) == 1000 and [e["seq_num"] for e in events] == list(range(1, 1001))
            assert events[-1]["data"]["pattern"].shape == (256,)
    finally:
        _close(publisher, *subscribers)


def test_a_late_joiner_gets_the_later_documents(proxy):
    (early,), (first,) = _subscribe(proxy, 1)
    publisher = DocumentPublisher(proxy.in_address)
    late_subscriber = None
    try:
        _until_subscribed(publisher, [early])
        publisher("start", {"uid": "run-1", "time": 0.0})
        _wait_for(lambda: len(_documents(early)) >= 1)  # run-1 is past the proxy
        (late,), (late_subscriber,) = _subscribe(proxy, 1)
        _until_subscribed(publisher, [late])
        publisher("start", {"uid": "run-2", "time": 1.0})
        _wait_for(lambda: len(_documents(late)) >= 1 and len(_documents(early)) >= 2)
        assert [d["uid"] for _, d in _documents(early)] == ["run-1", "run-2"]
        assert [d["uid"] for _, d in _documents(late)] == ["run-2"]
    finally:
        _close(publisher, first, *([late_subscriber] if late_subscriber else []))


def test_a_prefix_selects_one_publishers_documents(proxy):
    (everything,), (all_subscriber,) = _subscribe(proxy, 1)
    (only_b,), (b_subscriber,) = _subscribe(proxy, 1, prefix=b"b")
    publisher_a = DocumentPublisher(proxy.in_address, prefix=b"a")
    publisher_b = DocumentPublisher(proxy.in_address, prefix=b"b")
    try:
        _until_subscribed(publisher_b, [everything, only_b])
        publisher_a("start", {"uid": "from-a", "time": 0.0})
        publisher_b("start", {"uid": "from-b", "time": 0.0})
        _wait_for(lambda: len(_documents(everything)) >= 2 and _documents(only_b))
        assert {d["uid"] for _, d in _documents(everything)} == {"from-a", "from-b"}
        assert [d["uid"] for _, d in _documents(only_b)] == ["from-b"]
    finally:
        _close(publisher_a, publisher_b, all_subscriber, b_subscriber)
    with pytest.raises(ValueError, match="without b' '"):
        DocumentPublisher(proxy.in_address, prefix=b"a b")


@pytest.fixture
def attacker(proxy):
    """A raw PUB-like socket on the proxy's input, as anyone who can reach the port has."""
    context = zmq.Context()
    socket = context.socket(zmq.XPUB)  # XPUB: it sees the proxy subscribe, so nothing is lost
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(proxy.in_address)
    assert socket.poll(20_000), "the proxy never subscribed"
    socket.recv()
    yield socket
    socket.close()
    context.term()


BAD_MESSAGES = [
    pickle.dumps({"uid": "evil"}),  # a bare pickle, no framing
    b" start " + pickle.dumps({"uid": "evil"}),  # a pickle framed as a start document
    b"garbage-without-spaces",
    b" start \xc1\xc1\xc1",  # msgpack's never-used byte
    b" start \x93\x01\x02\x03",  # msgpack, but a list
    b" \xff\xfe start " + serialize({"uid": "evil"}),  # a name that is not utf-8
    b" shutdown " + serialize({"uid": "evil"}),  # not a document name
]


def test_malformed_or_pickled_messages_are_logged_and_the_subscriber_keeps_going(
    proxy, attacker, caplog
):
    (received,), (subscriber,) = _subscribe(proxy, 1)

    def send(name, doc):
        attacker.send(b" " + name.encode() + b" " + serialize(doc))

    try:
        _until_subscribed(send, [received])
        with caplog.at_level(logging.ERROR, logger="sdl.facility.stream"):
            for message in BAD_MESSAGES:
                attacker.send(message)
            send("start", {"uid": "good", "time": 0.0})
            send("stop", {"uid": "good-stop", "time": 1.0})
            _wait_for(lambda: len(_documents(received)) >= 2)
    finally:
        subscriber.close()
    assert [(n, d["uid"]) for n, d in _documents(received)] == [
        ("start", "good"),
        ("stop", "good-stop"),
    ]
    refusals = [r for r in caplog.records if "refused a stream message" in r.getMessage()]
    assert len(refusals) == len(BAD_MESSAGES)


def test_a_failing_callback_is_logged_and_the_next_document_still_arrives(proxy, caplog):
    received = []

    def fragile(name, doc):
        if doc["uid"] == "boom":
            raise RuntimeError("callback bug")
        received.append((name, doc))

    subscriber = StreamSubscriber(proxy.out_address, fragile).start()
    publisher = DocumentPublisher(proxy.in_address)
    try:
        _until_subscribed(publisher, [received])
        with caplog.at_level(logging.ERROR, logger="sdl.facility.stream"):
            publisher("start", {"uid": "boom", "time": 0.0})
            publisher("start", {"uid": "after", "time": 1.0})
            _wait_for(lambda: _documents(received))
    finally:
        _close(publisher, subscriber)
    assert [d["uid"] for _, d in _documents(received)] == ["after"]
    assert "a stream callback failed" in caplog.text


def test_a_publisher_without_a_proxy_warns_and_does_not_raise(caplog):
    context = zmq.Context()
    vacant = context.socket(zmq.PULL)  # a port nobody subscribes on
    port = vacant.bind_to_random_port("tcp://127.0.0.1")
    with caplog.at_level(logging.WARNING, logger="sdl.facility.stream"):
        publisher = DocumentPublisher(f"tcp://127.0.0.1:{port}", connect_timeout_s=0.1)
    publisher("start", {"uid": "nobody", "time": 0.0})
    publisher.close()
    vacant.close()
    context.term()
    assert "no stream proxy subscribed" in caplog.text


def test_bluesky_publishers_with_our_serializer_are_understood(proxy):
    from bluesky.callbacks.zmq import Publisher

    (received,), (subscriber,) = _subscribe(proxy, 1)
    publisher = Publisher(proxy.in_address, serializer=serialize)
    try:
        _until_subscribed(publisher, [received])
        publisher("event", {"uid": "e", "data": {"image": np.eye(3, dtype="<u2")}})
        _wait_for(lambda: _documents(received))
    finally:
        _close(publisher, subscriber)
    ((name, doc),) = _documents(received)
    assert name == "event" and doc["data"]["image"].dtype == np.uint16
