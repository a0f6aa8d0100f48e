"""Bluesky documents over ZeroMQ, serialised with msgpack: the stream is network input, no pickle.

The shape is bluesky's own (``bluesky.callbacks.zmq``): publishers connect to a proxy that any
number of subscribers join; this module supplies the safe wire format and binds to 127.0.0.1
unless told otherwise. numpy arrays (patterns, images) travel as raw bytes with their dtype
and shape, and only numeric dtypes are accepted, so no payload can make a receiver build
arbitrary objects.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import queue
import threading
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np
import zmq
from bluesky.callbacks.zmq import Proxy, Publisher, RemoteDispatcher

logger = logging.getLogger(__name__)

#: msgpack extension code of a numpy array: header [dtype.str, shape], then the raw bytes.
NDARRAY_EXT = 1

#: numpy kinds allowed on the wire: bool, signed/unsigned integer, float, complex.
NUMERIC_KINDS = frozenset("biufc")

DEFAULT_HOST = "127.0.0.1"


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
    if code != NDARRAY_EXT:
        raise ValueError(f"unknown msgpack extension type {code}")
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(data)
    dtype_str, shape = next(unpacker)
    dtype = np.dtype(dtype_str)
    if dtype.kind not in NUMERIC_KINDS:
        raise ValueError(f"refusing a non-numeric array of dtype {dtype}")
    array = np.frombuffer(data, dtype=dtype, offset=unpacker.tell())
    return array.reshape(shape)


def serialize(doc: dict[str, Any]) -> bytes:
    """One document as msgpack bytes, arrays included."""
    return msgpack.packb(doc, default=_encode, use_bin_type=True)


def deserialize(payload: bytes) -> dict[str, Any]:
    """A document from msgpack bytes; anything else is logged and refused (ValueError)."""
    try:
        doc = msgpack.unpackb(payload, ext_hook=_decode_ext, raw=False)
    except Exception as error:
        logger.error("refused a stream message that is not a msgpack document (%d bytes): %s",
                     len(payload), error)
        raise ValueError(f"not a msgpack document: {error}") from None
    if not isinstance(doc, dict):
        logger.error("refused a stream message that decodes to %s, not a document",
                     type(doc).__name__)
        raise ValueError(f"a document must be a mapping, got {type(doc).__name__}")
    return doc


class DocumentPublisher(Publisher):
    """A RunEngine subscriber that sends every document to the proxy at ``address``.

    bluesky's Publisher with our wire format and no linger, so a process can always exit,
    even when the proxy is gone and documents are still queued.
    """

    def __init__(self, address: str) -> None:
        super().__init__(address, serializer=serialize)
        self._socket.setsockopt(zmq.LINGER, 0)


def _forward(host: str, in_port: int | None, out_port: int | None, addresses: Any) -> None:
    in_address = f"tcp://{host}" + (f":{in_port}" if in_port else "")
    out_address = f"tcp://{host}" + (f":{out_port}" if out_port else "")
    proxy = Proxy(in_address, out_address)
    # bluesky's Proxy records the address each socket actually bound (port included).
    addresses.put((proxy.in_port, proxy.out_port))
    proxy.start()


class StreamProxy:
    """The forwarder publishers send to and subscribers read from, in its own process.

    bluesky's Proxy blocks forever and has no stop(), so it runs in a child process that
    :meth:`close` terminates.

    Parameters
    ----------
    host
        Interface to bind both sockets to; 127.0.0.1 unless the stream must leave the host.
    in_port, out_port
        Ports for publishers and subscribers; a free port each when not given.
    """

    def __init__(self, host: str = DEFAULT_HOST, in_port: int | None = None,
                 out_port: int | None = None) -> None:
        context = multiprocessing.get_context("spawn")
        self._addresses = context.Queue()
        self._process = context.Process(
            target=_forward, args=(host, in_port, out_port, self._addresses),
            name="sdl-stream-proxy", daemon=True,
        )
        self.in_address = ""
        self.out_address = ""

    def start(self, timeout_s: float = 30.0) -> StreamProxy:
        self._process.start()
        try:
            self.in_address, self.out_address = self._addresses.get(timeout=timeout_s)
        except queue.Empty:
            self.close()
            raise RuntimeError(f"the stream proxy did not bind within {timeout_s:g} s") from None
        return self

    def close(self) -> None:
        self._process.terminate()
        self._process.join(timeout=5)


class StreamSubscriber:
    """Calls ``callback(name, doc)`` for every document on the stream, from a daemon thread.

    Messages that are not documents are logged and dropped; the subscriber keeps running.
    """

    def __init__(self, address: str, callback: Callable[[str, dict[str, Any]], None]) -> None:
        self._dispatcher = RemoteDispatcher(address, deserializer=deserialize)
        self._dispatcher.subscribe(callback)
        self._thread = threading.Thread(target=self._run, name="sdl-stream-subscriber",
                                        daemon=True)

    def _run(self) -> None:
        try:
            self._dispatcher.start()
        except asyncio.CancelledError:
            # close() cancels the receiving task; start() then cleans up and re-raises.
            logger.debug("stream subscriber stopped")

    def start(self) -> StreamSubscriber:
        self._thread.start()
        return self

    def close(self) -> None:
        loop = self._dispatcher.loop
        loop.call_soon_threadsafe(self._cancel_receiving)
        self._thread.join(timeout=5)

    def _cancel_receiving(self) -> None:
        for task in asyncio.all_tasks(self._dispatcher.loop):
            task.cancel()
