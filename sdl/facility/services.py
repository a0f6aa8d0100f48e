"""The two services of a facility deployment, each its own process: analysis and agent.

Both read the document stream (:mod:`sdl.facility.stream`) and write to a tiled server; the agent
service also drives the stations' queueservers. ``sdl stack`` starts them with everything
else; ``sdl analysis-service`` and ``sdl agent-service`` run one on its own (e.g. the agent
on a GPU host), given the addresses. The tiled API key comes from ``SDL_TILED_API_KEY``, not
the command line, which other users of the host can read.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from tiled.client import from_uri

from sdl.campaign.config import CampaignConfig
from sdl.campaign.results import CampaignResult
from sdl.facility.analysis_service import AnalysisService
from sdl.facility.commands import API_KEY_VARIABLE, READY_LINE
from sdl.facility.queue_station import QueueStation, StreamOutcomes
from sdl.facility.stream import DocumentPublisher, StreamSubscriber
from sdl.loop.runner import CampaignRunner
from sdl.records.catalog import make_writer

logger = logging.getLogger(__name__)


def tiled_client(uri: str) -> Any:
    """A client of the tiled server at ``uri``, with the key from ``SDL_TILED_API_KEY``."""
    return from_uri(uri, api_key=os.environ.get(API_KEY_VARIABLE))


@contextmanager
def _subscribed(address: str, callback: Any) -> Iterator[None]:
    subscriber = StreamSubscriber(address, callback).start()
    try:
        yield
    finally:
        subscriber.close()


def run_analysis_service(
    config: CampaignConfig, tiled_uri: str, stream_out: str, stream_in: str
) -> int:
    """Analyse the campaign's raw runs from the stream until SIGTERM or Ctrl-C."""
    client = tiled_client(tiled_uri)
    writer = make_writer(client)
    publisher = DocumentPublisher(stream_in)
    lock = threading.Lock()

    def emit(name: str, doc: Mapping[str, Any]) -> None:
        with lock:
            writer(name, doc)
            publisher(name, doc)

    service = AnalysisService(config, emit, client).start()
    stopped = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.set())
    with _subscribed(stream_out, service):
        time.sleep(0.5)  # ZeroMQ's slow joiner: let the subscription reach the proxy
        # After subscribing, so nothing falls in between: a run that ended before is in the
        # catalog; one under way now is read from there when its stop comes down the stream.
        missed = service.catch_up()
        if missed:
            logger.warning("analysing %d raw runs that ended while no analysis ran", missed)
        print(f"{READY_LINE}: campaign {config.name}, reading {stream_out}", flush=True)
        stopped.wait()
    service.stop()
    logger.info("analysis service stopped after %d runs", service.analysed)
    return 0


def agent_service(
    config: CampaignConfig,
    tiled_uri: str,
    stations: Mapping[str, str],
    outcomes: StreamOutcomes,
    *,
    serve_control: bool = True,
    lock_database: str | None = None,
) -> CampaignRunner:
    """The campaign's closed loop over queueserver ``stations`` (name -> control address),
    learning each attempt's outcome from ``outcomes`` (which must follow the stream); with
    ``lock_database`` (a PostgreSQL URI) it holds the campaign's lock there too.

    The same :class:`CampaignRunner` as ``sdl run``: resuming from the catalog, fault
    policies, refusals and control requests included.
    """

    def queue_stations(runner: CampaignRunner) -> list[QueueStation]:
        timeout_s = config.devices.action_timeout_s or 3600.0
        return [
            QueueStation(
                name,
                address,
                outcomes,
                runner.checkpoint,
                timeout_s=timeout_s,
                requests=config.devices.queueserver,
                expected=runner.expected_duration,
            )
            for name, address in stations.items()
        ]

    return CampaignRunner(
        config,
        client=tiled_client(tiled_uri),
        stations=queue_stations,
        serve_control=serve_control,
        lock_database=lock_database,
    )


def run_agent_service(
    runner: CampaignRunner, outcomes: StreamOutcomes, stream_out: str, *, dashboard: bool = False
) -> CampaignResult:
    """Run an :func:`agent_service`'s campaign with ``outcomes`` following ``stream_out``;
    with ``dashboard``, also serve the live page on 127.0.0.1, fed by the stream."""
    followers: list[Callable[[str, Mapping[str, Any]], Any]] = [outcomes]
    page = None
    if dashboard:
        from sdl.views.dashboard import Dashboard

        page = Dashboard.for_runner(runner)
        followers.append(page.feed)
        print(f"dashboard (open in a browser on this machine): {page.start()}", flush=True)

    def follow(name: str, doc: Mapping[str, Any]) -> None:
        for follower in followers:
            follower(name, doc)

    try:
        with _subscribed(stream_out, follow):
            return runner.run()
    finally:
        if page is not None:
            page.stop()
        for station in runner.stations:
            if isinstance(station, QueueStation):
                station.close()
