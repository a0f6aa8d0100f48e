"""The ``sdl`` command: run and check campaigns."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import yaml
from tqdm import tqdm

from sdl.config import CampaignConfig, CampaignConfigError, load_campaign, parse_campaign


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
    return parse_campaign({**config.model_dump(mode="json"), **overrides}, source=path)


def _run(args: argparse.Namespace) -> int:
    from sdl.orchestrator import CampaignRunner
    from sdl.report import plot_report, summary_text

    config = _with_overrides(args.campaign, args)
    runner = CampaignRunner(config)
    bar = tqdm(total=config.budget, unit="exp", desc=config.name, disable=args.quiet)

    def progress(result: Any) -> None:
        bar.n = len(result.records)
        best = result.best
        if best is not None:
            bar.set_postfix({f"best {result.objective}": f"{best.features[result.objective]:.4g}"})
        bar.refresh()

    runner.on_experiment = progress
    result = runner.run()
    bar.close()
    report = plot_report(result, runner.client, Path(config.data_dir) / f"{config.name}-report.png")
    print(summary_text(result))
    print(f"report: {report}")
    print(f"catalog: {Path(config.data_dir).resolve()} (open with sdl.catalog.open_catalog)")
    return 0


def _validate(args: argparse.Namespace) -> int:
    config = load_campaign(args.campaign)
    print(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    print(f"{args.campaign}: valid")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sdl", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a closed-loop campaign (resumes one already begun)")
    run.add_argument("campaign", help="campaign YAML file")
    run.add_argument("--data-dir", help="override data_dir (catalog location)")
    run.add_argument("--budget", type=int, help="override the number of experiments")
    run.add_argument("--seed", type=int, help="override the seed")
    run.add_argument("--agent", help="override the agent name (bayesian, random, sobol)")
    run.add_argument("--name", help="override the campaign name")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    run.set_defaults(func=_run)

    validate = commands.add_parser("validate", help="check a campaign file and print it in full")
    validate.add_argument("campaign", help="campaign YAML file")
    validate.set_defaults(func=_validate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except CampaignConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
