"""How fast, how late and how complete is the document stream between two processes?

Documents go from this process through ``StreamProxy`` (its own process) to one
``StreamSubscriber`` in a third process (multiprocessing spawn), all over TCP on 127.0.0.1.
Every document is stamped with ``time.time_ns()`` and a sequence number as it is handed to the
``DocumentPublisher``; the subscriber records receipt time and checks the sequence, so:

* ``emit/s``: documents per second the publishing side produced (RunEngine or loop);
* ``recv/s``: documents received / (last receipt - first emission), the end-to-end rate;
* ``p50 ms`` / ``p99 ms``: emission-to-receipt latency of the run's documents;
* ``lost`` / ``misordered``: documents that never arrived / arrived out of order (both must be 0).

Sources and payloads (scalar, a 2048-point float64 pattern, a 512x512 image):

* ``RunEngine``: bluesky's ``count`` of an ``ophyd.sim.SynSignal``; the RunEngine is the
  bottleneck (about a millisecond per event), so latency here is the stream's own;
* ``raw``: documents of one run composed beforehand with ``event_model.compose_run`` and
  published in a tight loop, the most the stream carries; the subscriber falls behind, so
  latency here is mostly time spent queued;
* ``paced``: the same scalar run published at the issue's target of 10,000 documents per
  second, so the latency is the stream's own at that rate.

    python benchmarks/stream_throughput.py
    python benchmarks/stream_throughput.py --scale 0.1   # a quick look

Prints one table and writes ``benchmarks/results/stream_throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import queue
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
PROBE_UID = "probe"
#: (source, payload, documents at --scale 1)
ROWS = (
    ("RunEngine", "scalar", 5000),
    ("RunEngine", "pattern", 2000),
    ("RunEngine", "image", 300),
    ("raw", "scalar", 50000),
    ("raw", "pattern", 20000),
    ("raw", "image", 1000),
    ("paced", "scalar", 20000),
)
PACED_PER_S = 10_000
PATTERN_POINTS = 2048
IMAGE_SHAPE = (512, 512)


def payload_factory(payload: str, image_dtype: str) -> Callable[[], Any]:
    """A function giving one reading: a float, a float64 pattern or an image of noise."""
    rng = np.random.default_rng(0)
    if payload == "scalar":
        return lambda: float(rng.random())
    if payload == "pattern":
        patterns = rng.random((4, PATTERN_POINTS))
        return lambda: patterns[rng.integers(4)]
    images = (rng.random((4, *IMAGE_SHAPE)) * 4000).astype(image_dtype)
    return lambda: images[rng.integers(4)]


def summarise(
    latencies_ns: list[int], first_sent_ns: int, last_received_ns: int, misordered: int
) -> dict[str, Any]:
    """What the subscriber reports for one run."""
    latencies_ms = np.asarray(latencies_ns) / 1e6
    return {
        "received": len(latencies_ns),
        "misordered": misordered,
        "span_s": (last_received_ns - first_sent_ns) / 1e9,
        "p50_ms": float(np.percentile(latencies_ms, 50)),
        "p99_ms": float(np.percentile(latencies_ms, 99)),
    }


def subscriber_process(address: str, ready: Any, results: Any) -> None:
    """The receiving process: one summary per run, put on ``results`` at each stop document."""
    from sdl.facility.stream import StreamSubscriber

    run: dict[str, Any] = {"latencies": [], "first_sent": None, "last_seq": -1, "misordered": 0}

    def receive(name: str, doc: dict[str, Any]) -> None:
        now = time.time_ns()
        if doc.get("uid") == PROBE_UID:
            ready.set()
            return
        run["first_sent"] = run["first_sent"] or doc["sent_ns"]
        run["latencies"].append(now - doc["sent_ns"])
        run["misordered"] += doc["seq"] <= run["last_seq"]
        run["last_seq"] = doc["seq"]
        if name == "stop":
            results.put(summarise(run["latencies"], run["first_sent"], now, run["misordered"]))
            run.update(latencies=[], first_sent=None, last_seq=-1, misordered=0)

    subscriber = StreamSubscriber(address, receive).start()
    while True:
        time.sleep(1)
        if not multiprocessing.parent_process().is_alive():
            subscriber.close()
            return


class Stamper:
    """Wraps the publisher: each document leaves with its emission time and sequence number."""

    def __init__(self, publish: Callable[[str, dict[str, Any]], None]) -> None:
        self.publish = publish
        self.count = 0
        self.first_ns = 0
        self.last_ns = 0

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        now = time.time_ns()
        self.first_ns = self.first_ns or now
        self.publish(name, {**doc, "sent_ns": now, "seq": self.count})
        self.count += 1
        self.last_ns = time.time_ns()


def run_engine_source(payload: str, n: int, image_dtype: str) -> Callable[[Stamper], None]:
    """A bluesky ``count`` of ``n`` readings, its documents handed to the stamper."""
    from bluesky import RunEngine
    from bluesky.plans import count
    from ophyd.sim import SynSignal

    signal = SynSignal(func=payload_factory(payload, image_dtype), name=payload)
    RE = RunEngine({})

    def emit(stamper: Stamper) -> None:
        token = RE.subscribe(stamper)
        RE(count([signal], num=n))
        RE.unsubscribe(token)

    return emit


def raw_documents(payload: str, n: int, image_dtype: str) -> Iterator[tuple[str, dict]]:
    """One run's documents from event_model, as a RunEngine would emit them."""
    from event_model import compose_run

    reading = payload_factory(payload, image_dtype)
    shape = {"scalar": [], "pattern": [PATTERN_POINTS], "image": list(IMAGE_SHAPE)}[payload]
    bundle = compose_run(metadata={"purpose": "stream benchmark"})
    yield "start", bundle.start_doc
    descriptor = bundle.compose_descriptor(
        name="primary",
        data_keys={
            payload: {"source": "sim", "dtype": "array" if shape else "number", "shape": shape}
        },
    )
    yield "descriptor", descriptor.descriptor_doc
    for seq in range(1, n + 1):
        yield (
            "event",
            descriptor.compose_event(
                data={payload: reading()}, timestamps={payload: time.time()}, seq_num=seq
            ),
        )
    yield "stop", bundle.compose_stop()


def raw_source(payload: str, n: int, image_dtype: str) -> Callable[[Stamper], None]:
    """The run composed beforehand, so the timing is the stream's, not event_model's."""
    documents = list(raw_documents(payload, n, image_dtype))

    def emit(stamper: Stamper) -> None:
        for name, doc in documents:
            stamper(name, doc)

    return emit


def paced_source(payload: str, n: int, image_dtype: str) -> Callable[[Stamper], None]:
    """The composed run at ``PACED_PER_S``: each document waits (busy) for its due time."""
    documents = list(raw_documents(payload, n, image_dtype))

    def emit(stamper: Stamper) -> None:
        started = time.perf_counter()
        for index, (name, doc) in enumerate(documents):
            while time.perf_counter() < started + index / PACED_PER_S:
                pass
            stamper(name, doc)

    return emit


SOURCES = {"RunEngine": run_engine_source, "raw": raw_source, "paced": paced_source}


def measure(
    publisher: Any,
    results: Any,
    source: str,
    payload: str,
    n: int,
    image_dtype: str,
    timeout_s: float,
) -> dict[str, Any]:
    """One table row: run the source once through the stream and read the subscriber's summary."""
    emit = SOURCES[source](payload, n, image_dtype)
    stamper = Stamper(publisher)
    emit(stamper)
    row = {
        "source": source,
        "payload": payload,
        "events": n,
        "published": stamper.count,
        "emit_per_s": stamper.count / ((stamper.last_ns - stamper.first_ns) / 1e9),
    }
    try:
        received = results.get(timeout=timeout_s)
    except queue.Empty:  # the stop document never came
        received = {
            "received": 0,
            "misordered": 0,
            "span_s": float("nan"),
            "p50_ms": float("nan"),
            "p99_ms": float("nan"),
        }
    row.update(
        received,
        lost=stamper.count - received["received"],
        recv_per_s=received["received"] / received["span_s"],
    )
    return row


def wait_for_subscriber(publisher: Any, ready: Any, timeout_s: float = 60) -> None:
    """Probe until the subscriber process has joined: PUB/SUB has no late-joiner replay."""
    deadline = time.monotonic() + timeout_s
    while not ready.wait(0.05):
        if time.monotonic() > deadline:
            raise RuntimeError("the subscriber process never joined the stream")
        publisher("start", {"uid": PROBE_UID, "time": time.time()})


COLUMNS = (
    ("source", "{}"),
    ("payload", "{}"),
    ("published", "{}"),
    ("emit_per_s", "{:,.0f}"),
    ("recv_per_s", "{:,.0f}"),
    ("p50_ms", "{:.2f}"),
    ("p99_ms", "{:.2f}"),
    ("lost", "{}"),
    ("misordered", "{}"),
)


def print_table(rows: list[dict[str, Any]]) -> None:
    print(" | ".join(name for name, _ in COLUMNS))
    for row in rows:
        print(" | ".join(fmt.format(row[name]) for name, fmt in COLUMNS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply every row's number of events (default 1)"
    )
    parser.add_argument("--image-dtype", default="uint16", choices=("uint16", "float32"))
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait for one run's stop document"
    )
    args = parser.parse_args()

    from sdl.facility.stream import DocumentPublisher, StreamProxy

    proxy = StreamProxy().start()
    spawn = multiprocessing.get_context("spawn")
    ready, results = spawn.Event(), spawn.Queue()
    subscriber = spawn.Process(
        target=subscriber_process, args=(proxy.out_address, ready, results), daemon=True
    )
    subscriber.start()
    publisher = DocumentPublisher(proxy.in_address)
    load = os.getloadavg()
    try:
        wait_for_subscriber(publisher, ready)
        rows = [
            measure(
                publisher,
                results,
                source,
                payload,
                max(1, round(n * args.scale)),
                args.image_dtype,
                args.timeout,
            )
            for source, payload, n in ROWS
        ]
    finally:
        publisher.close()
        subscriber.terminate()
        proxy.close()
    print_table(rows)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "stream_throughput.json").write_text(
        json.dumps(
            {
                "rows": rows,
                "image": {"shape": list(IMAGE_SHAPE), "dtype": args.image_dtype},
                "pattern_points": PATTERN_POINTS,
                "cpus": os.cpu_count(),
                "load_average_1m": load[0],
                "python": platform.python_version(),
                "machine": platform.machine(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
