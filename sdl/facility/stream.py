"""Bluesky documents over ZeroMQ, serialised with msgpack: the stream is network input, no pickle.

The shape and the framing are bluesky's own (``bluesky.callbacks.zmq``): publishers connect to
a proxy that any number of subscribers join, and every message is one frame
``prefix b" " name b" " payload``, so bluesky's ``Publisher(serializer=serialize)`` and
``RemoteDispatcher(deserializer=deserialize)`` interoperate with the classes here. numpy arrays
(patterns, images) travel as raw bytes with their dtype and shape, and only numeric dtypes are
accepted, so no payload can make a receiver build arbitrary objects.

The sockets are pyzmq's rather than bluesky's because bluesky's lose documents: their PUB/SUB
high-water marks (1,000 messages) drop documents when a subscriber falls behind, a publisher
drops what it sends before the proxy's subscription reaches it, and the dispatcher reports
malformed messages with ``print``. Here the high-water marks are unlimited by default (a slow
subscriber costs memory, not documents), the publisher waits for the proxy's subscription, and
anything refused is logged on ``sdl.facility.stream``.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import threading
from collections.abc import Mapping
from typing import Any

import msgpack
import numpy as np
import zmq
from event_model import DocumentNames

from sdl.records.vocabulary import DocumentCallback

logger = logging.getLogger(__name__)

#: msgpack extension code of a numpy array: header [dtype.str, shape], then the raw bytes.
NDARRAY_EXT = 1

#: numpy kinds allowed on the wire: bool, signed/unsigned integer, float, complex.
NUMERIC_KINDS = frozenset("biufc")

#: The names a message may carry; anything else is not a bluesky document.
DOCUMENT_NAMES = frozenset(name.name for name in DocumentNames)

DEFAULT_HOST = "127.0.0.1"

#: ZeroMQ high-water mark meaning "no limit": queue rather than drop.
UNLIMITED = 0

#: How long closing a publisher may wait for queued documents to leave, so the last documents
#: of a run are not discarded, yet a process can still exit when the proxy is gone.
CLOSE_LINGER_MS = 2000

#: How often a subscriber thread looks up from its socket to see whether it was closed.
POLL_MS = 100


def _encode(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in NUMERIC_KINDS:
            raise TypeError(f"only numeric arrays go on the stream, got dtype {obj.dtype}")
        header = msgpack.packb([obj.dtype.str, list(obj.shape)])
        return msgpack.ExtType(NDARRAY_EXT, header + np.ascontiguousarray(obj).tobytes())
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot put a {type(obj).__name__} on the document stream")


def _decode_ext(code: int, data: bytes) -> np.ndarray:
    """A read-only array viewing ``data``: images are not copied once more on arrival."""
    if code != NDARRAY_EXT:
        raise ValueError(f"unknown msgpack extension type {code}")
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(data)
    dtype_str, shape = next(unpacker)
    if not isinstance(dtype_str, str):
        raise ValueError(f"an array's dtype must be a string, got {type(dtype_str).__name__}")
    dtype = np.dtype(dtype_str)
    if dtype.kind not in NUMERIC_KINDS:
        raise ValueError(f"refusing a non-numeric array of dtype {dtype}")
    array = np.frombuffer(data, dtype=dtype, offset=unpacker.tell())
    return array.reshape(shape)


def serialize(doc: Mapping[str, Any]) -> bytes:
    """One document as msgpack bytes, arrays included."""
    return msgpack.packb(doc, default=_encode, use_bin_type=True)


def deserialize(payload: bytes | memoryview) -> dict[str, Any]:
    """A document from msgpack bytes; anything else is logged and refused (ValueError)."""
    try:
        doc = msgpack.unpackb(payload, ext_hook=_decode_ext, raw=False)
    except Exception as error:
        logger.error(
            "refused a stream message that is not a msgpack document (%d bytes): %s",
            len(payload),
            error,
        )
        raise ValueError(f"not a msgpack document: {error}") from None
    if not isinstance(doc, dict):
        logger.error(
            "refused a stream message that decodes to %s, not a document", type(doc).__name__
        )
        raise ValueError(f"a document must be a mapping, got {type(doc).__name__}")
    return doc


def _check_prefix(prefix: bytes) -> bytes:
    """bluesky's rule: the prefix is the first space-separated field, so it has no space."""
    if not isinstance(prefix, bytes) or b" " in prefix:
        raise ValueError(f"a stream prefix is bytes without b' ', got {prefix!r}")
    return prefix


class DocumentPublisher:
    """A RunEngine subscriber that sends every document to the proxy at ``address``.

    The socket is an XPUB so the publisher can see the proxy subscribe: it waits for that (up
    to ``connect_timeout_s``) before the first document, because PUB/SUB silently drops what is
    sent before the subscription arrives, which would lose a run's start document. A missing
    proxy is logged, not raised, so an experiment never stops for its stream.

    Parameters
    ----------
    address
        The proxy's ``in_address``, e.g. ``tcp://127.0.0.1:5577``.
    prefix
        Topic in front of every message; subscribers with the same prefix receive only these.
    connect_timeout_s
        How long to wait for the proxy before publishing regardless.
    """

    def __init__(
        self, address: str, *, prefix: bytes = b"", connect_timeout_s: float = 2.0
    ) -> None:
        self.address = address
        self._prefix = _check_prefix(prefix)
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.XPUB)
        self._socket.setsockopt(zmq.SNDHWM, UNLIMITED)
        self._socket.setsockopt(zmq.LINGER, CLOSE_LINGER_MS)
        self._socket.connect(address)
        self._await_subscription(connect_timeout_s)

    def _await_subscription(self, timeout_s: float) -> None:
        if self._socket.poll(int(timeout_s * 1000)):
            self._socket.recv()
        else:
            logger.warning(
                "no stream proxy subscribed at %s within %g s; documents are lost until one does",
                self.address,
                timeout_s,
            )

    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:
        message = b" ".join([self._prefix, name.encode(), serialize(doc)])
        # The bytes are immutable, so zmq may send large messages (images) without a copy.
        self._socket.send(message, copy=False)

    def close(self) -> None:
        self._socket.close()
        self._context.term()


def _bind(context: zmq.Context, kind: int, host: str, port: int | None, hwm: int) -> zmq.Socket:
    socket = context.socket(kind)
    socket.setsockopt(zmq.SNDHWM, hwm)
    socket.setsockopt(zmq.RCVHWM, hwm)
    socket.bind(f"tcp://{host}:{port or '*'}")
    return socket


def _forward(
    host: str, in_port: int | None, out_port: int | None, hwm: int, addresses: Any
) -> None:
    """The proxy process: report the bound addresses (or why binding failed), then forward."""
    context = zmq.Context()
    try:
        frontend = _bind(context, zmq.SUB, host, in_port, hwm)
        backend = _bind(context, zmq.PUB, host, out_port, hwm)
    except zmq.ZMQError as error:
        addresses.put(str(error))
        return
    frontend.setsockopt(zmq.SUBSCRIBE, b"")
    addresses.put(
        (
            frontend.getsockopt_string(zmq.LAST_ENDPOINT),
            backend.getsockopt_string(zmq.LAST_ENDPOINT),
        )
    )
    zmq.proxy(frontend, backend)


class _Announce:
    """Where :func:`_forward` reports to when the proxy is a service of its own: stdout."""

    def put(self, bound: str | tuple[str, str]) -> None:
        if isinstance(bound, str):
            raise SystemExit(f"error: the stream proxy could not bind: {bound}")
        print(f"stream proxy: publishers to {bound[0]}, subscribers at {bound[1]}", flush=True)


def serve_proxy(host: str, in_port: int, out_port: int, *, hwm: int = UNLIMITED) -> None:
    """Forward the stream in this process until it is stopped: ``sdl stream-proxy``, the
    proxy as a service its own service manager runs (fixed ports, so the others find it)."""
    _forward(host, in_port, out_port, hwm, _Announce())


class StreamProxy:
    """The forwarder publishers send to and subscribers read from, in its own process.

    ``zmq.proxy`` blocks forever in C, so it runs in a child process that :meth:`close`
    terminates; forwarding then costs the experiment's process nothing.

    Parameters
    ----------
    host
        Interface to bind both sockets to; 127.0.0.1 unless the stream must leave the host
        (``0.0.0.0`` for every interface).
    in_port, out_port
        Ports for publishers and subscribers; a free port each when not given.
    hwm
        Messages queued per subscriber before ZeroMQ drops; 0 (unlimited) keeps every
        document of a slow subscriber at the cost of the proxy's memory.
    """

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        in_port: int | None = None,
        out_port: int | None = None,
        *,
        hwm: int = UNLIMITED,
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self._addresses = context.Queue()
        self._process = context.Process(
            target=_forward,
            args=(host, in_port, out_port, hwm, self._addresses),
            name="sdl-stream-proxy",
            daemon=True,
        )
        self.in_address = ""
        self.out_address = ""

    def start(self) -> StreamProxy:
        """Start the proxy's process and wait until it has bound its sockets, for as long as a
        loaded machine takes to start it: only its death ends the wait early."""
        self._process.start()
        while True:
            try:
                bound = self._addresses.get(timeout=0.5)
                break
            except queue.Empty:
                if not self._process.is_alive():
                    raise RuntimeError(
                        f"the stream proxy exited with status {self._process.exitcode} "
                        "before binding its sockets"
                    ) from None
        if isinstance(bound, str):
            self.close()
            raise RuntimeError(f"the stream proxy could not bind: {bound}")
        self.in_address, self.out_address = bound
        return self

    def close(self) -> None:
        self._process.terminate()
        self._process.join(timeout=5)


def _split(message: bytes) -> tuple[bytes, str, memoryview]:
    """bluesky's framing; the payload stays a view so an image is not copied to be decoded."""
    first = message.index(b" ")
    second = message.index(b" ", first + 1)
    name = message[first + 1 : second].decode()
    if name not in DOCUMENT_NAMES:
        raise ValueError(f"{name[:40]!r} is not a document name")
    return message[:first], name, memoryview(message)[second + 1 :]


class StreamSubscriber:
    """Calls ``callback(name, doc)`` for every document on the stream, from a daemon thread.

    Messages that are not documents are logged and dropped, and so is a callback's exception:
    the subscriber keeps running. Arrays in the documents are read-only views of the message.

    Parameters
    ----------
    address
        The proxy's ``out_address``.
    callback
        Called in the subscriber's thread, in the order the documents were published.
    prefix
        Receive only the messages of publishers with this prefix; all messages when empty.
    """

    def __init__(self, address: str, callback: DocumentCallback, *, prefix: bytes = b"") -> None:
        self.address = address
        self._callback = callback
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.SUB)
        self._socket.setsockopt(zmq.RCVHWM, UNLIMITED)
        self._socket.setsockopt(zmq.LINGER, 0)
        prefix = _check_prefix(prefix)
        self._socket.setsockopt(zmq.SUBSCRIBE, prefix + b" " if prefix else b"")
        self._socket.connect(address)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sdl-stream-subscriber", daemon=True)

    def start(self) -> StreamSubscriber:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._socket.close()
        self._context.term()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._socket.poll(POLL_MS):
                self._receive(self._socket.recv())

    def _receive(self, message: bytes) -> None:
        try:
            _, name, payload = _split(message)
        except ValueError as error:
            logger.error(
                "refused a stream message that is not 'prefix name document' (%d bytes): %s",
                len(message),
                error,
            )
            return
        try:
            doc = deserialize(payload)
        except ValueError:
            return  # deserialize has logged it
        try:
            self._callback(name, doc)
        except Exception:
            logger.exception("a stream callback failed on a %s document", name)
