"""The ``sdl`` command: run and check campaigns."""

from __future__ import annotations

import argparse
import importlib
import logging
import math
import os
import sys
import threading
from pathlib import Path
from typing import Any

import yaml

from agents.options import AGENT_OPTIONS
from physics.diffraction import CU_KALPHA1_ANGSTROM, CU_KALPHA2_ANGSTROM, CU_KALPHA2_RATIO
from physics.phases import LINE_PROFILE_STANDARDS
from sdl.campaign.config import CampaignConfig, CampaignConfigError, load_campaign, parse_campaign
from sdl.campaign.control import CTRL_C
from sdl.records.console import quiet_libraries
from sdl.records.errors import CampaignLocked, CatalogError


def _with_overrides(path: str, args: argparse.Namespace) -> CampaignConfig:
    config = load_campaign(path)
    overrides: dict[str, Any] = {}
    if args.data_dir is not None:
        overrides["data_dir"] = args.data_dir
    if args.budget is not None:
        overrides["budget"] = args.budget
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.agent is not None:
        overrides["agent"] = {"name": args.agent}
    if args.name is not None:
        overrides["name"] = args.name
    if not overrides:
        return config
    return parse_campaign({**config.model_dump(), **overrides}, source=path)


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from sdl.loop.runner import CampaignRunner

    config = _with_overrides(args.campaign, args)
    runner = CampaignRunner(config, serve_control=True)
    bar = tqdm(total=config.budget, unit="exp", desc=config.name, disable=args.quiet)

    def progress(result: Any) -> None:
        bar.n = len(result.records)
        best = result.best
        if best is not None:
            bar.set_postfix({f"best {result.objective}": f"{best.features[result.objective]:.4g}"})
        bar.refresh()

    runner.on_experiment = progress
    dashboard = _start_dashboard(runner, args.port) if args.dashboard else None
    try:
        result = runner.run()
    finally:
        if dashboard is not None:
            dashboard.stop()
    bar.close()
    return _finish(
        runner,
        result,
        f"{Path(config.data_dir).resolve()} (open with sdl.records.catalog.open_catalog)",
    )


def _finish(runner: Any, result: Any, catalog: str) -> int:
    """Summary, PNG report and exit status of a campaign that has stopped."""
    from sdl.views.summary import plot_report, summary_text

    config = runner.config
    if result.records:
        report = plot_report(
            result, runner.client, Path(config.data_dir) / f"{config.name}-report.png"
        )
        print(summary_text(result))
        print(f"report: {report}")
    print(f"catalog: {catalog}")
    if result.stopped is None:
        return 0
    print(
        f"stopped: {result.stopped}\nrun the same command again to resume the campaign",
        file=sys.stderr,
    )
    return 130 if CTRL_C in result.stopped else 3


def _start_dashboard(runner: Any, port: int) -> Any:
    from sdl.views.dashboard import Dashboard

    dashboard = Dashboard.for_runner(runner, port=port)
    print(f"dashboard (open in a browser on this machine): {dashboard.start()}", flush=True)
    return dashboard


def _stack(args: argparse.Namespace) -> int:
    from sdl.facility.stack import Stack, StackError, StackSettings

    config = _with_overrides(args.campaign, args)
    settings = StackSettings(stations=args.stations, redis=args.redis, postgres=args.postgres)
    try:
        with Stack(config, settings) as stack:
            assert stack.proxy is not None  # up while the stack is
            print(
                f"stack up: catalog {stack.tiled_uri} (PostgreSQL), stream "
                f"{stack.proxy.out_address}, {len(stack.stations)} station(s); "
                f"logs in {stack.run_dir}",
                flush=True,
            )
            agent = stack.start_services(dashboard=args.dashboard)
            if args.dashboard:
                print(stack.dashboard_address(agent), flush=True)
            try:
                status = agent.wait()
            except KeyboardInterrupt:
                print(
                    "stopping the stack (the campaign resumes when started again)", file=sys.stderr
                )
                status = 130
            print(stack.agent_summary(agent), end="")
            print(
                f"the catalog stays in PostgreSQL ({settings.postgres}) with the files in "
                f"{stack.data_dir}; docs/facility.md shows how to serve it again"
            )
    except StackError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"stack down; agent service exited with status {status}")
    return status


def _units(args: argparse.Namespace) -> int:
    from sdl.facility.units import UnitSettings, write_units

    config = _with_overrides(args.campaign, args)
    settings = UnitSettings(
        stations=args.stations,
        redis=args.redis,
        postgres=args.postgres,
        host=args.host,
        tiled_port=args.tiled_port,
        stream_in_port=args.stream_ports[0],
        stream_out_port=args.stream_ports[1],
        station_port=args.station_port,
        user=args.user,
    )
    written = write_units(config, settings, Path(args.out))
    target = next(path for path in written if path.suffix == ".target")
    print("\n".join(f"wrote {path}" for path in written))
    print(
        f"install: sudo cp {args.out}/*.service {target} /etc/systemd/system/ && "
        f"sudo systemctl daemon-reload && sudo systemctl start {target.name}\n"
        f"catalog: {settings.tiled_uri} (API key in {written[1]}); follow: journalctl -f -u "
        f"'{target.stem}-*'"
    )
    return 0


def _stream_proxy(args: argparse.Namespace) -> int:
    from sdl.facility.stream import serve_proxy

    serve_proxy(args.host, args.in_port, args.out_port)
    return 0


def _analysis_service(args: argparse.Namespace) -> int:
    from sdl.facility.services import run_analysis_service

    return run_analysis_service(
        load_campaign(args.campaign), args.tiled, args.stream_out, args.stream_in
    )


def _agent_service(args: argparse.Namespace) -> int:
    from sdl.facility.commands import SUMMARY_LINE
    from sdl.facility.queue_station import StreamOutcomes
    from sdl.facility.services import agent_service, run_agent_service

    config = load_campaign(args.campaign)
    stations = dict(item.split("=", 1) for item in args.station)
    outcomes = StreamOutcomes(config.name)
    runner = agent_service(config, args.tiled, stations, outcomes, lock_database=args.lock_database)
    result = run_agent_service(runner, outcomes, args.stream_out, dashboard=args.dashboard)
    print(SUMMARY_LINE, flush=True)
    return _finish(runner, result, f"{args.tiled} (tiled server)")


def _report(args: argparse.Namespace) -> int:
    from sdl.views.report_html import write_report

    config = _with_overrides(args.campaign, args)
    out = args.out or Path(config.data_dir) / f"{config.name}-report.html"
    try:
        client, where = _catalog(args.tiled, config.data_dir)
        path = write_report(client, config.name, where, out)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"report: {path.resolve()}")
    return 0


def _catalog(tiled: str | None, data_dir: Path | str) -> tuple[Any, str]:
    """The catalog a command reads, and how to name it: the tiled server at ``tiled`` (API key
    from $SDL_TILED_API_KEY), else the data directory's SQLite file."""
    if tiled:
        from sdl.facility.services import tiled_client

        return tiled_client(tiled), tiled
    from sdl.records.catalog import CATALOG_FILE, open_catalog

    return open_catalog(data_dir), str(Path(data_dir).resolve() / CATALOG_FILE)


def _dashboard(args: argparse.Namespace) -> int:
    from sdl.facility.control_room import ControlRoom

    try:
        client, where = _catalog(args.tiled, args.data_dir)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    room = ControlRoom(client, args.data_dir, where, port=args.port)
    print(f"control room (open in a browser on this machine): {room.start()}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        room.stop()
    return 0


def _control(args: argparse.Namespace) -> int:
    from sdl.loop.control_server import connection_file, send_request

    config = _with_overrides(args.campaign, args)
    fields: dict[str, Any] = {"who": args.who, "reason": args.reason}
    if args.action == "inject" and not args.set:
        print("error: inject needs the conditions, e.g. --set temperature_c=600", file=sys.stderr)
        return 2
    if args.set:
        fields["conditions"] = dict(_assignment(item) for item in args.set)
    if args.action in ("approve", "reject"):
        if not args.proposal:
            print(
                f"error: {args.action} needs --proposal ID (sdl control ... status lists "
                "the proposals awaiting approval)",
                file=sys.stderr,
            )
            return 2
        fields["proposal_id"] = args.proposal
    try:
        reply = send_request(connection_file(config.data_dir, config.name), args.action, **fields)
    except (FileNotFoundError, TimeoutError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(yaml.safe_dump(reply, sort_keys=False).rstrip())
    return 0 if reply.get("ok") else 1


def _assignment(item: str) -> tuple[str, float]:
    name, _, value = item.partition("=")
    try:
        return name.strip(), float(value)
    except ValueError:
        raise SystemExit(f"error: --set {item!r}: expected NAME=NUMBER, e.g. ph=4.5") from None


def _validate(args: argparse.Namespace) -> int:
    config = load_campaign(args.campaign)
    if config.agent.name == "rl" or config.agent.name not in AGENT_OPTIONS:
        # Whether the policy file was trained for this problem (reading it needs torch), or
        # the plug-in's factory makes an optimizer.
        from sdl.campaign.agent import build_agent

        build_agent(config)
    print(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    print(f"{args.campaign}: valid")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from sdl.loop.sweep import load_sweep, run_sweep, summary_table, write_results

    sweep, cells = load_sweep(args.sweep)
    where = f"Dask ({args.dask})" if args.dask else f"{sweep.workers} processes"
    print(f"sweep {sweep.name}: {len(cells)} campaigns on {where}", flush=True)
    finished = 0

    def report(cell: Any, result: dict[str, Any]) -> None:
        nonlocal finished
        finished += 1
        print(
            f"[{finished}/{len(cells)}] {cell.config.name} ({cell.label}): best "
            f"{result['best_measured']:.4g} in {result['experiments']} experiments, "
            f"{result['wall_s']:.0f} s",
            flush=True,
        )

    results = run_sweep(sweep, cells, dask=args.dask, on_result=report)
    table = summary_table(results, cells)
    print(f"\n{cells[0].config.objectives[0].name}:\n{table}")
    json_path, png_path = write_results(sweep, cells, results, table)
    print(f"\nresults: {json_path}\nconvergence: {png_path}")
    return 0


def _check_devices(args: argparse.Namespace) -> int:
    from sdl.lab.device_check import check_devices
    from sdl.records.catalog import raw_dir

    config = load_campaign(args.campaign)
    if config.devices.backend != "epics":
        print(
            f"error: {args.campaign} uses devices.backend: {config.devices.backend}; "
            "check-devices checks EPICS devices",
            file=sys.stderr,
        )
        return 2
    check = check_devices(config, raw_dir(config.data_dir))
    for line in check.pvs:
        print(line)
    for line in check.problems:
        print(f"PROBLEM {line}")
    print(f"{args.campaign}: {len(check.pvs)} PVs, {len(check.problems)} problem(s)")
    return 0 if check.ok else 1


def _ioc(args: argparse.Namespace) -> int:
    from sdl.campaign.systems import get_system
    from sdl.facility.ioc_process import READY_LINE
    from simulators.lab_ioc import lab_pvdb, serve

    system = get_system(args.system)
    pvdb = lab_pvdb(
        args.prefix,
        system.make_model(),
        system.condition_limits,
        seed=args.seed,
        speedup=args.speedup,
        motor_conditions=args.motor_conditions,
    )
    port = os.environ.get("EPICS_CA_SERVER_PORT", "5064")
    serve(
        pvdb,
        host=args.host,
        on_ready=lambda: print(
            f"{READY_LINE}: {len(pvdb)} PVs {args.prefix}* on {args.host}, CA port {port}",
            flush=True,
        ),
    )
    return 0


def _calibrate_xrd(args: argparse.Namespace) -> int:
    from sdl.analysis.xrd.calibration import calibrate
    from sdl.analysis.xrd.instrument import ProfileShape
    from sdl.views.calibration_plot import plot_calibration

    try:
        two_theta_deg, counts = read_pattern_file(args.scan)
        shape = ProfileShape(args.wavelength, args.wavelength2, args.kalpha2_ratio)
        fit = calibrate(two_theta_deg, counts, args.standard, shape=shape, source=args.scan.name)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    calibration = fit.calibration
    calibration.write(args.out)
    plot = plot_calibration(fit, two_theta_deg, counts, args.out.with_suffix(".png"))
    u, v, w = calibration.shape.caglioti_uvw_deg2
    sigma = calibration.uncertainty
    print(
        f"{args.standard} from {args.scan} ({two_theta_deg.size} points):\n"
        f"  Caglioti U {u:.3e} ± {sigma['caglioti_u_deg2']:.1e}, "
        f"V {v:.3e} ± {sigma['caglioti_v_deg2']:.1e}, "
        f"W {w:.3e} ± {sigma['caglioti_w_deg2']:.1e} deg^2\n"
        f"  Lorentzian X {calibration.shape.lorentz_x_deg:.3e} "
        f"± {sigma['lorentz_x_deg']:.1e} deg\n"
        f"  zero {calibration.zero_shift_deg:+.4f} ± {sigma['zero_shift_deg']:.4f} deg\n"
        f"  Rwp {calibration.rwp:.3f}, reduced chi2 {calibration.reduced_chi2:.2f}"
        + ("  (POOR FIT: look at the plot before using it)" if calibration.poor_fit else "")
    )
    print(f"written: {args.out} (name it as analysis.xrd_instrument), plot: {plot}")
    return 1 if calibration.poor_fit else 0


def _calibrate_phases(args: argparse.Namespace) -> int:
    from sdl.analysis.xrd.calibration import calibration_at
    from sdl.analysis.xrd.phase_calibration import (
        Standard,
        calibrate_phases,
        parse_weights,
        xrd_phases_block,
    )

    config = load_campaign(args.campaign)
    phases = config.analysis.xrd_phase_set()
    if phases is None:
        print(
            f"error: analysis.xrd_phases: {args.campaign} names no phases of its own; "
            "calibrate-phases fits the factors of a campaign's xrd_phases (name, cif)",
            file=sys.stderr,
        )
        return 2
    if len(args.weights) not in (1, len(args.scans)):
        print(
            f"error: --weights: given {len(args.weights)} times for {len(args.scans)} scans; "
            "give it once (every scan of one standard) or once per scan, in the scans' order",
            file=sys.stderr,
        )
        return 2
    weights = args.weights * len(args.scans) if len(args.weights) == 1 else args.weights
    standards = []
    for number, (scan, text) in enumerate(zip(args.scans, weights, strict=True), start=1):
        try:
            known = parse_weights(text, phases.names)
        except ValueError as error:
            print(f"error: --weights (scan {number}, {scan}): {error}", file=sys.stderr)
            return 2
        try:
            two_theta_deg, counts = read_pattern_file(scan)
        except (OSError, ValueError) as error:
            print(f"error: scan {scan}: {error}", file=sys.stderr)
            return 2
        standards.append(Standard(str(scan), two_theta_deg, counts, known))
    try:
        factors = calibrate_phases(
            standards,
            phases,
            calibration_at(config.analysis.xrd_instrument),
            args.reference,
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for number, result in enumerate(factors.standards, start=1):
        fitted = ", ".join(
            f"{name} {result.fractions[name]:.3f} ± {result.fractions_std[name]:.3f} "
            f"(known {weight:.3f})"
            for name, weight in result.weights.items()
        )
        flags = f"  [{', '.join(result.fit_flags)}]" if result.fit_flags else ""
        print(
            f"#{number} {result.source}: {fitted}; Rwp {result.rwp:.3f}, "
            f"reduced chi2 {result.reduced_chi2:.1f}{flags}"
        )
    numbers = ", ".join(f"#{number}" for number in range(1, len(factors.standards) + 1))
    print(f"\n{'phase':<16} {'factor':>8} {'std':>8}  per scan ({numbers})")
    for name in (name for name in phases.names if name in factors.factors):
        per_scan = "  ".join(
            f"{value:.3f}" if math.isfinite(value) else "  -  "
            for value in factors.per_standard[name]
        )
        print(
            f"{name:<16} {factors.factors[name]:>8.4f} {factors.factors_std[name]:>8.4f}"
            f"  {per_scan}"
        )
    if math.isfinite(factors.reduced_chi2):
        print(f"scatter between scans: reduced chi2 {factors.reduced_chi2:.2f}")
    block = xrd_phases_block(phases, factors)
    print(f"\nReplace analysis.xrd_phases in {args.campaign} with:\n\n{block}")
    if args.out is not None:
        args.out.write_text(block)
        print(f"written: {args.out}")
    return 0


def read_pattern_file(path: Path) -> tuple[Any, Any]:
    """2-theta and counts from a two-column text file (comma or whitespace separated, a
    header line and '#' comments allowed)."""
    import numpy as np

    lines = [line for line in path.read_text().splitlines() if line.strip()]
    rows = [line.replace(",", " ").split() for line in lines if not line.lstrip().startswith("#")]
    try:
        start = 0 if _numbers(rows[0]) else 1  # a header line
        data = np.array([[float(v) for v in row[:2]] for row in rows[start:]])
    except (IndexError, ValueError):
        raise ValueError(f"{path}: expected two numeric columns, 2-theta and counts") from None
    if data.ndim != 2 or data.shape[1] != 2:
        raise ValueError(f"{path}: expected two numeric columns, 2-theta and counts")
    return data[:, 0], data[:, 1]


def _numbers(row: list[str]) -> bool:
    try:
        [float(v) for v in row[:2]]
    except ValueError:
        return False
    return len(row) >= 2


#: Commands that train a learned model, by the module whose ``main(argv)`` does it.
TRAINERS = {
    "train-xrd": ("sdl.training.xrd_classifier", "train the 1D-CNN XRD phase classifier"),
    "train-unet": ("sdl.training.unet", "train the U-Net micrograph segmenter"),
    "train-rl": ("sdl.training.rl", "train the RL agent's policy on randomised TiO2 campaigns"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sdl", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser(
        "run", aliases=["resume"], help="run a closed-loop campaign (resumes one already begun)"
    )
    run.add_argument("campaign", help="campaign YAML file")
    run.add_argument("--data-dir", help="override data_dir (catalog location)")
    run.add_argument("--budget", type=int, help="override the number of experiments")
    run.add_argument("--seed", type=int, help="override the seed")
    run.add_argument("--agent", help="override the agent name (bayesian, random, sobol)")
    run.add_argument("--name", help="override the campaign name")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    run.add_argument(
        "--dashboard",
        action="store_true",
        help="serve a live page to watch and steer the campaign (127.0.0.1)",
    )
    run.add_argument(
        "--port", type=int, default=0, help="the dashboard's port (default: a free one)"
    )
    run.set_defaults(func=_run)

    stack = commands.add_parser(
        "stack",
        help="run a campaign on the facility stack: tiled on PostgreSQL, document "
        "stream, a queueserver per station, analysis and agent services",
    )
    stack.add_argument("campaign", help="campaign YAML file (the same as for sdl run)")
    stack.add_argument(
        "--stations",
        type=int,
        default=1,
        help="reactor+instrument stations, each its own queueserver",
    )
    stack.add_argument("--redis", default="127.0.0.1:6379", help="Redis HOST:PORT")
    stack.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432/sdl",
        help="PostgreSQL database for the catalog (created if missing)",
    )
    for flag in ("--data-dir", "--name"):
        stack.add_argument(flag, help=f"as for sdl run {flag}")
    stack.add_argument("--budget", type=int, help="override the number of experiments")
    stack.add_argument(
        "--dashboard",
        action="store_true",
        help="the agent service serves the live page (address printed)",
    )
    stack.set_defaults(func=_stack, seed=None, agent=None)

    units = commands.add_parser(
        "units",
        help="write systemd units for a campaign's facility deployment, one per service, "
        "each restarted on failure",
    )
    units.add_argument("campaign", help="campaign YAML file (the same as for sdl run)")
    units.add_argument("--out", required=True, help="folder for the units and their files")
    units.add_argument("--stations", type=int, default=1, help="queueservers, one per station")
    units.add_argument("--redis", default="127.0.0.1:6379", help="Redis HOST:PORT")
    units.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432/sdl",
        help="PostgreSQL database of the catalog (create it first: docs/facility.md)",
    )
    units.add_argument("--host", default="127.0.0.1", help="interface every service binds to")
    units.add_argument("--tiled-port", type=int, default=8000)
    units.add_argument(
        "--stream-ports", type=int, nargs=2, default=(5577, 5578), metavar=("IN", "OUT")
    )
    units.add_argument(
        "--station-port",
        type=int,
        default=60615,
        help="station i's queueserver control port is this + 2i",
    )
    units.add_argument("--user", help="the account the services run as (default: root)")
    for flag in ("--data-dir", "--name"):
        units.add_argument(flag, help=f"as for sdl run {flag}")
    units.set_defaults(func=_units, budget=None, seed=None, agent=None)

    proxy = commands.add_parser(
        "stream-proxy", help="forward the document stream on fixed ports until stopped"
    )
    proxy.add_argument("--host", default="127.0.0.1", help="interface to bind to")
    proxy.add_argument("--in-port", type=int, required=True, help="publishers send here")
    proxy.add_argument("--out-port", type=int, required=True, help="subscribers read here")
    proxy.set_defaults(func=_stream_proxy)

    for name, func, help_text in (
        (
            "analysis-service",
            _analysis_service,
            "analyse a campaign's raw runs from the document stream into the catalog",
        ),
        (
            "agent-service",
            _agent_service,
            "run a campaign's agent over queueserver stations, outcomes from the stream",
        ),
    ):
        service = commands.add_parser(name, help=help_text)
        service.add_argument("campaign", help="campaign YAML file")
        service.add_argument(
            "--tiled", required=True, help="tiled server URI (API key from $SDL_TILED_API_KEY)"
        )
        service.add_argument(
            "--stream-out",
            required=True,
            help="the stream proxy's subscriber address, tcp://HOST:PORT",
        )
        if name == "analysis-service":
            service.add_argument(
                "--stream-in",
                required=True,
                help="the stream proxy's publisher address, tcp://HOST:PORT",
            )
        else:
            service.add_argument(
                "--station",
                action="append",
                required=True,
                metavar="NAME=tcp://HOST:PORT",
                help="a station's queueserver control address (repeat)",
            )
            service.add_argument(
                "--dashboard",
                action="store_true",
                help="serve the live page to watch and steer (127.0.0.1)",
            )
            service.add_argument(
                "--lock-database",
                metavar="postgresql://USER@HOST:PORT/DATABASE",
                help="also hold the campaign's lock in this PostgreSQL database, so that no "
                "agent service on another host runs the same campaign",
            )
        service.set_defaults(func=func)

    control = commands.add_parser(
        "control",
        help="pause, resume, abort, veto, inject into, or approve and reject proposals of a "
        "running campaign",
    )
    control.add_argument("campaign", help="the running campaign's YAML file")
    control.add_argument(
        "action",
        choices=["status", "pause", "resume", "abort", "veto", "inject", "approve", "reject"],
    )
    control.add_argument(
        "--set",
        action="append",
        metavar="NAME=VALUE",
        help="a condition of the experiment to inject, or an approved proposal's edit "
        "(repeat for each)",
    )
    control.add_argument(
        "--proposal", metavar="ID", help="the waiting proposal to approve or reject"
    )
    control.add_argument(
        "--who",
        default=os.environ.get("USER", "operator"),
        help="recorded with the request (default: $USER)",
    )
    control.add_argument("--reason", default="", help="recorded with the request")
    for flag in ("--data-dir", "--name"):
        control.add_argument(flag, help=f"as given to sdl run {flag}")
    control.set_defaults(func=_control, budget=None, seed=None, agent=None)

    dashboard = commands.add_parser(
        "dashboard",
        help="the control room: every campaign of a catalog, running or finished, in a browser",
    )
    dashboard.add_argument(
        "--data-dir",
        default="sdl-data",
        help="the campaigns' data directory: its catalog, and running campaigns' control "
        "files (default: sdl-data)",
    )
    dashboard.add_argument(
        "--tiled",
        help="read the catalog from this tiled server instead (the facility deployment's, "
        "on PostgreSQL); API key from $SDL_TILED_API_KEY",
    )
    dashboard.add_argument("--port", type=int, default=0, help="default: a free port")
    dashboard.set_defaults(func=_dashboard)

    report = commands.add_parser(
        "report", help="write a campaign's self-contained HTML report from its catalog"
    )
    report.add_argument("campaign", help="the campaign's YAML file")
    report.add_argument(
        "--out", type=Path, help="HTML file to write (default: DATA_DIR/NAME-report.html)"
    )
    for flag in ("--data-dir", "--name"):
        report.add_argument(flag, help=f"as given to sdl run {flag}")
    report.add_argument(
        "--tiled",
        help="read the catalog from this tiled server instead (the facility deployment's, "
        "on PostgreSQL); API key from $SDL_TILED_API_KEY",
    )
    report.set_defaults(func=_report, budget=None, seed=None, agent=None)

    for name, (_, help_text) in TRAINERS.items():
        commands.add_parser(name, add_help=False, help=f"{help_text} (options: sdl {name} --help)")

    calibrate = commands.add_parser(
        "calibrate-xrd",
        help="fit the diffractometer's line breadths and zero to a LaB6 or Si scan",
    )
    calibrate.add_argument("scan", type=Path, help="the standard's scan: 2-theta, counts columns")
    calibrate.add_argument("--standard", default="LaB6", choices=LINE_PROFILE_STANDARDS)
    calibrate.add_argument(
        "--out", type=Path, default=Path("xrd-instrument.yaml"), help="calibration file to write"
    )
    calibrate.add_argument(
        "--wavelength", type=float, default=CU_KALPHA1_ANGSTROM, help="K-alpha1, angstrom"
    )
    calibrate.add_argument(
        "--wavelength2", type=float, default=CU_KALPHA2_ANGSTROM, help="K-alpha2, angstrom"
    )
    calibrate.add_argument(
        "--kalpha2-ratio", type=float, default=CU_KALPHA2_RATIO, help="K-alpha2/K-alpha1"
    )
    calibrate.set_defaults(func=_calibrate_xrd)

    phases = commands.add_parser(
        "calibrate-phases",
        help="fit the calibration factors of a campaign's xrd_phases on standards of known "
        "composition",
    )
    phases.add_argument("campaign", help="campaign YAML file with analysis.xrd_phases")
    phases.add_argument(
        "scans", nargs="+", type=Path, help="the standards' scans: 2-theta, counts columns"
    )
    phases.add_argument(
        "--weights",
        action="append",
        required=True,
        metavar="NAME=W,NAME=W",
        help="known weight fractions of a scan's phases, summing to 1; once for every scan, "
        "or once per scan in their order",
    )
    phases.add_argument(
        "--reference", help="the phase whose factor is 1 (default: the campaign's first held)"
    )
    phases.add_argument("--out", type=Path, help="also write the xrd_phases block to this file")
    phases.set_defaults(func=_calibrate_phases)

    validate = commands.add_parser("validate", help="check a campaign file and print it in full")
    validate.add_argument("campaign", help="campaign YAML file")
    validate.set_defaults(func=_validate)

    sweep = commands.add_parser(
        "sweep", help="run a grid of simulated campaigns in parallel and compare them"
    )
    sweep.add_argument("sweep", help="sweep YAML file (see sdl/loop/sweep.py, docs/agents.md)")
    sweep.add_argument(
        "--dask",
        metavar="SCHEDULER",
        help="run on a Dask cluster: its scheduler address, or 'local' to start one here",
    )
    sweep.set_defaults(func=_sweep)

    check = commands.add_parser(
        "check-devices", help="dry run: connect to and read every PV of an EPICS campaign"
    )
    check.add_argument("campaign", help="campaign YAML file with devices.backend: epics")
    check.set_defaults(func=_check_devices)

    ioc = commands.add_parser(
        "ioc", help="serve the simulated lab over Channel Access (caproto) until Ctrl-C"
    )
    ioc.add_argument("--prefix", default="SDL:", help="PV name prefix (default SDL:)")
    ioc.add_argument("--system", default="tio2_solgel", help="materials system to simulate")
    ioc.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    ioc.add_argument(
        "--speedup",
        type=float,
        default=float("inf"),
        help="simulated seconds per wall second (default inf: instant)",
    )
    ioc.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to serve on; the UDP port is EPICS_CA_SERVER_PORT",
    )
    ioc.add_argument(
        "--motor-conditions",
        nargs="*",
        default=[],
        metavar="CONDITION",
        help="serve these reactor conditions as motor records (a beamline's motors)",
    )
    ioc.set_defaults(func=_ioc)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in TRAINERS:  # the trainer parses its own options
        return importlib.import_module(TRAINERS[argv[0]][0]).main(argv[1:]) or 0
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        quiet_libraries()
    try:
        return args.func(args)
    except (CampaignConfigError, CatalogError, CampaignLocked) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
