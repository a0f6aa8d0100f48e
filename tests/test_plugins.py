"""Bring your own lab: plug-in materials systems and instruments, reached from a campaign file,
refused with a reason when they lack what their role needs; the example package installed and
run from outside."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ophyd import Component as Cpt
from ophyd import Device, Signal

from sdl.campaign.config import CampaignConfigError, parse_campaign
from sdl.campaign.systems import MaterialsSystem, get_system
from sdl.lab.instruments import build_simulated_instruments
from sdl.plugins import InstrumentPlugin, PluginError, check_device, instrument_plugin
from tests.test_control import quick_campaign

ROOT = Path(__file__).parent.parent
EXAMPLE_PACKAGE = ROOT / "examples" / "plugin_example"

#: Not an InstrumentPlugin: refused, saying what an instrument plug-in is.
NOT_A_PLUGIN = {"name": "uvvis"}


class _Untriggerable:
    """Readable, but nothing to trigger."""

    name = "silent"

    def read(self):
        return {}

    def describe(self):
        return {}


class Gauge(Device):
    """The smallest plug-in instrument: one number per trigger, off the simulated lab."""

    level = Cpt(Signal, value=0.0, kind="hinted")
    measurement_time_s = Cpt(Signal, value=0.0, kind="normal")

    def __init__(self, *args, lab, raw_dir, **kwargs):
        super().__init__(*args, **kwargs)
        self._lab = lab

    def trigger(self):
        def measure() -> float:
            self._lab.faults.begin_action(self.name)
            self._lab.require_sample()
            self.level.put(float(self._lab.new_rng().normal(5.0, 0.1)))
            self.measurement_time_s.put(10.0)
            return 10.0

        return self._lab.run_action(self, measure, f"{self.name} reading")


GAUGE = InstrumentPlugin(
    name="gauge",
    features=("level",),
    simulated=Gauge,
    analyse=lambda readings: {"level": readings["gauge_level"], "level_std": 0.1},
)

SILENT = InstrumentPlugin(
    name="silent",
    features=("loudness",),
    simulated=lambda name, lab, raw_dir: _Untriggerable(),
    analyse=lambda readings: {"loudness": 0.0},
)

#: A materials system whose simulator cannot synthesise.
NO_SIMULATOR = MaterialsSystem(
    name="no-simulator",
    description="a simulator without synthesize",
    model="builtins:object",
    condition_limits={"temperature_c": (20.0, 100.0, "degC")},
    phases=(),
)


class CoordinateSearch:
    """An optimizer from outside sdl, with bluesky-adaptive's Optimizer surface only: it moves
    one condition at a time from the best point so far, by ``step`` of its range."""

    def __init__(self, parameters, objectives, seed, step=0.25):
        self.parameters, self.step = parameters, step
        (objective,) = objectives
        self.sign = 1.0 if objective["direction"] == "maximize" else -1.0
        self.objective = objective["name"]
        self.rng = random.Random(seed)
        self.results: dict[str, tuple[dict, dict]] = {}
        self.suggested = 0

    def suggest(self, num_points=None):
        points = []
        for _ in range(num_points or 1):
            best = self.get_best_points()
            centre = (
                best[0][1]
                if best
                else {p["name"]: (p["low"] + p["high"]) / 2 for p in self.parameters}
            )
            p = self.rng.choice(self.parameters)
            move = self.rng.choice((-1, 1)) * self.step * (p["high"] - p["low"])
            point = dict(centre)
            point[p["name"]] = min(p["high"], max(p["low"], centre[p["name"]] + move))
            self.suggested += 1
            points.append({**point, "_id": f"cs-{self.suggested}"})
        return points

    def ingest(self, points):
        for point in points:
            names = [p["name"] for p in self.parameters]
            self.results[str(point["_id"])] = (
                {n: point[n] for n in names},
                {self.objective: point[self.objective]},
            )

    def get_best_points(self):
        if not self.results:
            return []
        best = max(self.results, key=lambda k: self.sign * self.results[k][1][self.objective])
        return [(best, *self.results[best])]


def make_coordinate_search(parameters, objectives, seed, **options):
    """The factory a campaign file names (``agent.name``); ``options`` are its own."""
    return CoordinateSearch(parameters, objectives, seed, **options)


def make_nothing(parameters, objectives, seed):
    return object()


def test_a_plugin_named_by_import_path_that_is_not_one_is_refused_with_what_it_needs():
    with pytest.raises(PluginError, match="not an sdl.plugins.InstrumentPlugin"):
        instrument_plugin("tests.test_plugins:NOT_A_PLUGIN")
    with pytest.raises(PluginError, match="could not be imported"):
        instrument_plugin("tests.no_such_module:UVVIS")
    assert instrument_plugin("uvvis-not-installed") is None
    with pytest.raises(PluginError, match="not an sdl.campaign.systems.MaterialsSystem"):
        get_system("tests.test_plugins:NOT_A_PLUGIN")
    with pytest.raises(PluginError, match=r"has no \['synthesize', 'duration_s'\]"):
        get_system("tests.test_plugins:NO_SIMULATOR").make_model()


def test_a_campaign_file_naming_an_unknown_instrument_lists_the_known_ones(tmp_path):
    data = quick_campaign(tmp_path, 1).model_dump(mode="json")
    with pytest.raises(CampaignConfigError) as refused:
        parse_campaign({**data, "instruments": ["xrd", "raman"]})
    assert "instruments.1" in str(refused.value) and "unknown instrument 'raman'" in str(
        refused.value
    )
    assert "choose from ['magnetometer', 'microscope'" in str(refused.value)


def test_a_device_bluesky_cannot_trigger_is_refused_naming_the_protocol(tmp_path):
    with pytest.raises(PluginError, match="not bluesky-Triggerable"):
        check_device(_Untriggerable(), "silent")
    data = quick_campaign(tmp_path, 1).model_dump(mode="json")
    config = parse_campaign(
        {
            **data,
            "instruments": ["xrd", "tests.test_plugins:SILENT"],
            "objectives": [{"name": "loudness", "direction": "maximize"}],
        }
    )
    with pytest.raises(PluginError, match="instrument 'silent'.*Triggerable"):
        build_simulated_instruments(config, tmp_path)


@pytest.mark.slow
def test_the_example_package_installed_from_outside_runs_a_campaign(tmp_path):
    """pip installs examples/plugin_example (nothing of sdl changed) into a folder of its own;
    `sdl run` finds its materials system and instrument by their entry points."""
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(EXAMPLE_PACKAGE),
        ],
        check=True,
        timeout=600,
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), str(ROOT)])}
    own_tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=EXAMPLE_PACKAGE,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert own_tests.returncode == 0, own_tests.stdout[-3000:]  # the package's own tests
    campaign = yaml.safe_load((EXAMPLE_PACKAGE / "perovskite_uvvis.yaml").read_text())
    campaign.update(data_dir=str(tmp_path / "data"), budget=4, agent={"name": "random"})
    campaign_file = tmp_path / "campaign.yaml"
    campaign_file.write_text(yaml.safe_dump(campaign))
    completed = subprocess.run(
        [sys.executable, "-m", "sdl.cli", "run", str(campaign_file)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    from sdl.records.catalog import campaign_runs, open_catalog, recorded_features

    client = open_catalog(tmp_path / "data")
    analyses = campaign_runs(client, campaign["name"], "analysis")
    assert len(analyses) == 4
    features = recorded_features(analyses[0])
    assert 1.5 < features["band_gap_ev"] < 2.6 and features["band_gap_ev_std"] > 0
    (experiment, *_) = campaign_runs(client, campaign["name"], "experiment")
    assert "uvvis_absorbance" in experiment["primary"]


def test_an_agent_factory_making_no_optimizer_or_taking_no_such_option_is_refused(tmp_path):
    from sdl.campaign.agent import build_agent

    data = quick_campaign(tmp_path, 1).model_dump(mode="json")
    nothing = parse_campaign({**data, "agent": {"name": "tests.test_plugins:make_nothing"}})
    with pytest.raises(CampaignConfigError, match=r"not an optimizer: it has no \['suggest'"):
        build_agent(nothing)
    misspelt = parse_campaign(
        {
            **data,
            "agent": {"name": "tests.test_plugins:make_coordinate_search", "options": {"stp": 1}},
        }
    )
    with pytest.raises(CampaignConfigError, match="unexpected keyword argument 'stp'"):
        build_agent(misspelt)
    with pytest.raises(CampaignConfigError, match="unknown agent 'annealer'"):
        parse_campaign({**data, "agent": {"name": "annealer"}})


@pytest.mark.slow
def test_an_external_optimizer_runs_a_campaign_and_learns_the_earlier_results_on_resume(
    data_dir,
):
    from sdl.loop.runner import CampaignRunner

    agent = {"name": "tests.test_plugins:make_coordinate_search", "options": {"step": 0.2}}
    data = quick_campaign(data_dir, 3).model_dump(mode="json")
    first = CampaignRunner(parse_campaign({**data, "agent": agent}))
    result = first.run()
    optimizer = first.agent.optimizer
    assert len(result.records) == 3 and sorted(optimizer.results) == ["cs-1", "cs-2", "cs-3"]
    resumed = CampaignRunner(parse_campaign({**data, "budget": 5, "agent": agent}))
    result = resumed.run()
    assert len(result.records) == 5
    learned = resumed.agent.optimizer.results
    earlier = {r.proposal_id for r in result.records[:3]}
    assert earlier <= set(learned)  # the earlier results, under the campaign's ids
    assert len(learned) == 5


def test_a_plugin_that_fails_to_import_or_analyse_is_named_not_a_traceback():
    with pytest.raises(PluginError, match="':make' could not be imported: ValueError"):
        instrument_plugin(":make")

    def broken(readings):
        return {"loudness": [][1]}

    plugin = InstrumentPlugin("silent", ("loudness",), SILENT.simulated, broken)
    with pytest.raises(ValueError, match="silent analysis step failed: IndexError"):
        plugin.features_of({"silent_level": 1.0})


def test_faults_strike_a_plugin_instrument_named_in_the_campaign_file(data_dir):
    from sdl.loop.runner import CampaignRunner

    data = quick_campaign(data_dir, 2).model_dump(mode="json")
    gauge = {
        **data,
        "instruments": ["tests.test_plugins:GAUGE"],
        "objectives": [{"name": "level", "direction": "maximize"}],
        "on_fault": {"instrument_error": {"action": "skip"}},
    }
    with pytest.raises(CampaignConfigError, match="nan_data cannot strike 'gauge'"):
        parse_campaign(
            {**gauge, "devices": {"faults": {"nan_data": {"at": [0], "devices": ["gauge"]}}}}
        )
    config = parse_campaign(
        {**gauge, "devices": {"faults": {"instrument_error": {"at": [0], "devices": ["gauge"]}}}}
    )
    result = CampaignRunner(config).run()
    assert [(f.kind, f.action) for f in result.faults] == [("instrument_error", "skip")]
    assert "gauge" in result.faults[0].reason
    assert [r.failed for r in result.records] == [True, False]
    assert result.records[1].features["level"] == pytest.approx(5.0, abs=1.0)
