"""Micrograph segmentation scored against the simulator's truth: classical vs U-Net.

Two held-out test sets, drawn from seeds the U-Net never saw (it trains on seed 0 of
``sdl.training.unet``):

* ``campaign``: TiO2 sol-gel samples at random conditions of the model's safe range,
  imaged as a campaign images them (default simulator settings, the operator's
  magnification);
* ``randomised``: the training distribution's parameter ranges (grains 6-48 px, noise,
  blur, drift, contrast, gamma), new seeds.

Per method: boundary pixel accuracy and IoU, the instance-level grain pixel accuracy (pixels
in a predicted grain matched to their own true grain, IoU > 0.5) and mean grain IoU,
relative error of the mean equivalent-circle diameter and of the mean lineal intercept,
and (campaign set) phase pixel accuracy and area-fraction MAE from grey-level contrast.
Then throughput on 512 x 512 frames with 2 CPU threads, batch and streaming.

    python -m sdl.training.unet --out benchmarks/results/unet.pt
    python benchmarks/microscopy_scores.py --model benchmarks/results/unet.pt

Without ``--model`` a U-Net is trained first with the same defaults as
``sdl.training.unet`` and saved to ``benchmarks/results/unet.pt``. Prints one table and writes
``benchmarks/results/microscopy_scores.json``.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from sdl.analysis.microscopy.metrics import score_segmentation
from sdl.analysis.microscopy.segmentation import (
    grain_statistics,
    mean_lineal_intercept,
    phase_area_fractions,
    segment_grains,
)
from sdl.analysis.microscopy.unet import (
    boundary_probability,
    grains_from_boundary_probability,
    load_model,
    save_model,
    segment_grains_unet,
)
from sdl.training.unet import random_micrograph, train_unet
from simulators.micrograph import PHASE_BRIGHTNESS, Micrograph, simulate_micrograph
from simulators.tio2 import TIO2_CONDITION_LIMITS, TiO2SolGel

RESULTS = Path(__file__).parent / "results"

#: Seeds of the test sets (training uses seed 0 and draws every image from it).
CAMPAIGN_SEED = 20_000
RANDOMISED_SEED = 10_000


def campaign_set(count: int, shape: tuple[int, int]) -> list[Micrograph]:
    rng = np.random.default_rng(CAMPAIGN_SEED)
    model = TiO2SolGel()
    frames = []
    for index in range(count):
        conditions = {
            name: rng.uniform(low, high) for name, (low, high, _) in TIO2_CONDITION_LIMITS.items()
        }
        sample = model.synthesize(conditions, rng, f"test{index}")
        frames.append(simulate_micrograph(sample, rng, shape=shape))
    return frames


def randomised_set(count: int, shape: tuple[int, int]) -> list[Micrograph]:
    rng = np.random.default_rng(RANDOMISED_SEED)
    return [random_micrograph(rng, shape) for _ in range(count)]


def evaluate(frames: list[Micrograph], segmenter, with_phases: bool) -> dict[str, float]:
    rows = []
    for frame in frames:
        labels = segmenter(frame.image)
        scores = score_segmentation(labels, frame.labels)
        true_ecd = grain_statistics(frame.labels, frame.pixel_size_nm).grain_size_nm
        found_ecd = grain_statistics(labels, frame.pixel_size_nm).grain_size_nm
        true_intercept, _ = mean_lineal_intercept(frame.labels, frame.pixel_size_nm)
        found_intercept, _ = mean_lineal_intercept(labels, frame.pixel_size_nm)
        row = {
            "boundary_accuracy": scores.boundary_accuracy,
            "boundary_iou": scores.boundary_iou,
            "grain_pixel_accuracy": scores.grain_pixel_accuracy,
            "grain_iou": scores.grain_iou,
            "ecd_rel_error": abs(found_ecd / true_ecd - 1.0),
            "intercept_rel_error": abs(found_intercept / true_intercept - 1.0),
        }
        if with_phases:
            levels = {p: PHASE_BRIGHTNESS[p] for p in frame.phases}
            fractions, _, grain_phase = phase_area_fractions(frame.image, labels, levels)
            predicted_phase = grain_phase[labels - 1]
            row["phase_pixel_accuracy"] = float(np.mean(predicted_phase == frame.phase_map))
            true_area = np.bincount(frame.phase_map.ravel(), minlength=len(frame.phases))
            true_area = true_area / true_area.sum()
            row["phase_fraction_mae"] = float(
                np.mean([abs(fractions[p] - true_area[i]) for i, p in enumerate(frame.phases)])
            )
        rows.append(row)
    return {key: float(np.mean([row[key] for row in rows])) for key in rows[0]}


def _classical_one(image: np.ndarray) -> int:
    return int(segment_grains(image).max())


def throughput(model, count: int) -> dict[str, float]:
    """Frames per second on 512 x 512 frames, 2 CPU threads or processes."""
    rng = np.random.default_rng(30_000)
    images = [random_micrograph(rng, (512, 512)).image for _ in range(count)]
    timings = {}
    started = time.perf_counter()
    for image in images:
        segment_grains(image)
    timings["classical_streaming"] = count / (time.perf_counter() - started)
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(_classical_one, images[:2]))
        started = time.perf_counter()
        list(pool.map(_classical_one, images))
        timings["classical_batch"] = count / (time.perf_counter() - started)
    torch.set_num_threads(2)
    segment_grains_unet(model, images[0])
    started = time.perf_counter()
    for image in images:
        segment_grains_unet(model, image)
    timings["unet_streaming"] = count / (time.perf_counter() - started)
    started = time.perf_counter()
    for start in range(0, count, 8):
        for probability in boundary_probability(model, np.stack(images[start : start + 8])):
            grains_from_boundary_probability(probability)
    timings["unet_batch"] = count / (time.perf_counter() - started)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a saved U-Net; trained here if absent")
    parser.add_argument("--frames", type=int, default=24, help="test frames per set")
    parser.add_argument("--throughput-frames", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(2)
    RESULTS.mkdir(parents=True, exist_ok=True)
    training: dict[str, float] = {}
    if args.model is None:
        model, training = train_unet()
        save_model(model, RESULTS / "unet.pt", training)
    else:
        model = load_model(args.model)
        training = torch.load(args.model, weights_only=True).get("training", {})
    methods = {
        "classical": segment_grains,
        "unet": functools.partial(segment_grains_unet, model),
    }
    sets = {
        "campaign": (campaign_set(args.frames, (256, 256)), True),
        "randomised": (randomised_set(args.frames, (256, 256)), False),
    }
    scores = {
        f"{set_name}/{method}": evaluate(frames, segmenter, with_phases)
        for set_name, (frames, with_phases) in sets.items()
        for method, segmenter in methods.items()
    }
    speed = throughput(model, args.throughput_frames)

    columns = [
        ("boundary_accuracy", "bnd acc"),
        ("boundary_iou", "bnd IoU"),
        ("grain_pixel_accuracy", "grain acc"),
        ("grain_iou", "grain IoU"),
        ("ecd_rel_error", "ECD err"),
        ("intercept_rel_error", "L3 err"),
        ("phase_pixel_accuracy", "phase acc"),
        ("phase_fraction_mae", "phase MAE"),
    ]
    header = f"{'test set / method':<22}" + "".join(f"{label:>10}" for _, label in columns)
    print(header)
    print("-" * len(header))
    for name, row in scores.items():
        cells = "".join(f"{row[key]:>10.3f}" if key in row else f"{'-':>10}" for key, _ in columns)
        print(f"{name:<22}{cells}")
    print(f"({args.frames} frames of 256 x 256 per set; errors are mean |relative error|)")
    print("throughput, 512 x 512 frames/s on 2 CPU threads/processes:")
    print("  " + ", ".join(f"{key} {value:.2f}" for key, value in speed.items()))
    if training:
        print(
            f"U-Net training: {training.get('steps', 0):.0f} steps, "
            f"{training.get('simulation_s', 0) + training.get('training_s', 0):.0f} s"
        )
    out = RESULTS / "microscopy_scores.json"
    out.write_text(
        json.dumps(
            {
                "scores": scores,
                "throughput_fps": speed,
                "training": training,
                "frames_per_set": args.frames,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
