"""The startup module of a station's bluesky-queueserver: its RunEngine, devices and plan.

``start-re-manager --startup-module sdl.facility.qserver_startup`` imports this in the queueserver's
worker. It builds the instruments of the campaign file named by ``SDL_CAMPAIGN`` exactly as
the embedded mode does (same devices, same plan), and sends every document to the tiled
server (``SDL_TILED_URI`` with ``SDL_TILED_API_KEY``) and to the document stream
(``SDL_STREAM``, the proxy's publisher address). ``SDL_STATION`` names the station and
offsets the seed of its simulated random streams. :mod:`sdl.facility.stack` sets all of these.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from bluesky import RunEngine
from bluesky.run_engine import get_bluesky_event_loop
from bluesky.utils import MsgGenerator
from tiled.client import from_uri

from sdl.campaign.config import load_campaign
from sdl.facility.stream import DocumentPublisher
from sdl.lab.instruments import build_instruments
from sdl.records.catalog import make_writer, raw_dir

STATION = os.environ.get("SDL_STATION", "station-0")
_config = load_campaign(os.environ["SDL_CAMPAIGN"])
_config = _config.model_copy(update={"seed": _config.seed + int(STATION.rsplit("-", 1)[-1])})
_instruments = build_instruments(_config, raw_dir(_config.data_dir, _config.name))

# A beamline's ophyd-async devices are bound to the loop their profile connected on.
RE = RunEngine({}, loop=get_bluesky_event_loop() if _instruments.beamline.uses_loop else None)
RE.subscribe(
    make_writer(from_uri(os.environ["SDL_TILED_URI"], api_key=os.environ.get("SDL_TILED_API_KEY")))
)
RE.subscribe(DocumentPublisher(os.environ["SDL_STREAM"]))

reactor = _instruments.reactor
detectors = {detector.name: detector for detector in _instruments.detectors}
globals().update(detectors)
globals().update(
    {d.name: d for d in (*_instruments.beamline.movers.values(), *_instruments.beamline.baseline)}
)


def sdl_experiment(conditions: dict, md: dict | None = None) -> MsgGenerator[str]:  # type: ignore[type-arg]
    """Synthesise one sample at ``conditions`` and measure it with the campaign's detectors.

    The embedded campaign's plan (:func:`plans.experiment.synthesize_and_measure`) on this
    station's devices; ``md`` carries the campaign id, proposal ``_id`` and attempt.
    """
    metadata: Mapping[str, Any] = {**(md or {}), "station": STATION}
    return (yield from _instruments.experiment(dict(conditions), metadata))
