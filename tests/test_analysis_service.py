"""The analysis service: raw runs from the stream, and those it missed from the catalog."""

from __future__ import annotations

import time
from pathlib import Path

import yaml
from bluesky import RunEngine

from plans.experiment import synthesize_and_measure
from sdl.campaign.config import parse_campaign
from sdl.facility.analysis_service import AnalysisService
from sdl.lab.instruments import build_simulated_instruments
from sdl.records.catalog import make_writer, open_catalog, raw_dir

EXAMPLE = Path(__file__).parent.parent / "examples" / "tio2_bo.yaml"
CONDITIONS = {"temperature_c": 550.0, "duration_h": 2.0, "ph": 4.0, "h2o_ti_ratio": 20.0}


def _analysis_runs(documents):
    starts = [doc for name, doc in documents if name == "start"]
    events = [doc for name, doc in documents if name == "event"]
    return starts, events


def test_it_analyses_runs_from_the_stream_and_catches_up_on_those_it_missed(data_dir):
    data = yaml.safe_load(EXAMPLE.read_text())
    data.update(data_dir=str(data_dir))
    config = parse_campaign(data)
    client = open_catalog(data_dir)
    instruments = build_simulated_instruments(config, raw_dir(data_dir))
    engine = RunEngine({}, call_returns_result=False)
    engine.subscribe(make_writer(client))

    def experiment(campaign: str, proposal: str) -> str:
        md = {"campaign_id": campaign, "_id": proposal, "iteration": 0, "attempt": 1}
        (uid,) = engine(
            synthesize_and_measure(instruments.reactor, instruments.detectors, CONDITIONS, md=md)
        )
        return uid

    missed = experiment(config.name, "while-down")
    documents: list = []
    service = AnalysisService(
        config, lambda name, doc: documents.append((name, doc)), client
    ).start()
    try:
        assert service.catch_up() == 1
        streamed = []
        token = engine.subscribe(lambda name, doc: streamed.append((name, doc)))
        live = experiment(config.name, "live")
        under_way = experiment(config.name, "under-way")
        experiment("another-campaign", "not-ours")
        engine.unsubscribe(token)
        starts = [index for index, (name, _) in enumerate(streamed) if name == "start"]
        # The service joined the stream after the third run's start document went by.
        del streamed[starts[1]]
        for name, doc in streamed:  # as the stream would deliver them
            service(name, doc)
        assert service.catch_up() == 0  # queued once already, never twice
        deadline = time.monotonic() + 120
        while service.analysed < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        service.stop()
    starts, events = _analysis_runs(documents)
    assert sorted(start["raw_uid"] for start in starts) == sorted([missed, live, under_way])
    assert all(
        start["purpose"] == "analysis" and start["campaign_id"] == config.name for start in starts
    )
    assert all(event["data"]["photoactive_area_m2_g"] >= 0 for event in events)
