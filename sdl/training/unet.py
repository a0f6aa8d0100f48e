"""Train the grain-boundary U-Net on domain-randomised simulated micrographs.

Every training image is drawn from :func:`simulators.micrograph.simulate_micrograph` with
its parameters randomised over a range wider than any campaign uses: mean grain diameter
6-48 px, size spread, phase mixture, shot and read noise, probe blur, drift, edge contrast
and grain-to-grain tone; then a random gamma and dihedral flip. The target is the 2-px
boundary map of the simulator's label image. Held-out evaluation uses other seeds (see
``benchmarks/microscopy_scores.py``).

Run ``python -m sdl.training.unet --out PATH`` to write a model (a few minutes on two
CPU cores with the defaults: 500 steps of 12 crops of 128 x 128 px, ~0.6 s a step).
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from physics.phases import TIO2_PHASES
from sdl.analysis.microscopy.common import boundary_map, normalise_image
from sdl.analysis.microscopy.unet import UNet, save_model
from simulators.micrograph import Micrograph, simulate_micrograph
from simulators.sample import SampleState

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DomainRandomisation:
    """Ranges the simulator's parameters are drawn from (uniform, or log-uniform for ``log_``)."""

    log_grain_px: tuple[float, float] = (6.0, 48.0)
    size_cv: tuple[float, float] = (0.15, 0.6)
    log_noise: tuple[float, float] = (0.02, 0.15)
    read_noise: tuple[float, float] = (0.0, 0.03)
    blur_px: tuple[float, float] = (0.4, 1.6)
    drift_px: tuple[float, float] = (0.0, 3.0)
    edge_contrast: tuple[float, float] = (0.5, 1.5)
    grain_tone_std: tuple[float, float] = (0.0, 0.08)
    log_gamma: tuple[float, float] = (0.7, 1.4)


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(*bounds))


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(math.exp(rng.uniform(math.log(bounds[0]), math.log(bounds[1]))))


def random_micrograph(
    rng: np.random.Generator,
    shape: tuple[int, int] = (128, 128),
    randomisation: DomainRandomisation = DomainRandomisation(),
) -> Micrograph:
    """One simulated micrograph with every simulator parameter drawn from ``randomisation``.

    The pixel size is 1 nm, so the drawn grain diameter is also the particle size in nm.
    """
    grain_px = _log_uniform(rng, randomisation.log_grain_px)
    # Phases drawn into the image; their brightness comes from the simulator's table.
    present = [p for p in TIO2_PHASES if rng.random() < 0.5] or ["anatase"]
    weights = rng.dirichlet(np.ones(len(present)))
    sample = SampleState(
        sample_id="training",
        conditions={},
        phase_fractions=dict(zip(present, weights / weights.sum(), strict=True)),
        crystallite_size_nm={p: float(rng.uniform(5.0, 60.0)) for p in present},
        particle_size_nm=grain_px,
        particle_size_cv=_uniform(rng, randomisation.size_cv),
    )
    micrograph = simulate_micrograph(
        sample,
        rng,
        shape=shape,
        pixel_size_nm=1.0,
        noise=_log_uniform(rng, randomisation.log_noise),
        read_noise=_uniform(rng, randomisation.read_noise),
        blur_px=_uniform(rng, randomisation.blur_px),
        drift_px=_uniform(rng, randomisation.drift_px),
        edge_contrast=_uniform(rng, randomisation.edge_contrast),
        grain_tone_std=_uniform(rng, randomisation.grain_tone_std),
    )
    gamma = _log_uniform(rng, randomisation.log_gamma)
    image = np.clip(micrograph.image, 0.0, 1.0) ** gamma
    return Micrograph(
        image=image.astype(np.float32),
        labels=micrograph.labels,
        phase_map=micrograph.phase_map,
        phases=micrograph.phases,
        pixel_size_nm=micrograph.pixel_size_nm,
    )


def training_set(
    count: int, seed: int, shape: tuple[int, int] = (128, 128)
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` normalised images and their boundary maps, float32 ``(count, 1, H, W)``."""
    rng = np.random.default_rng(seed)
    images = np.empty((count, 1, *shape), dtype=np.float32)
    targets = np.empty((count, 1, *shape), dtype=np.float32)
    for index in range(count):
        micrograph = random_micrograph(rng, shape)
        images[index, 0] = normalise_image(micrograph.image)
        targets[index, 0] = boundary_map(micrograph.labels)
    return images, targets


def _dihedral(batch: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    batch = torch.rot90(batch, k, dims=(-2, -1))
    return torch.flip(batch, dims=(-1,)) if flip else batch


def train_unet(
    *,
    steps: int = 500,
    batch_size: int = 12,
    images: int = 512,
    crop_px: int = 128,
    width: int = 8,
    depth: int = 3,
    learning_rate: float = 3e-3,
    seed: int = 0,
    threads: int | None = 2,
) -> tuple[UNet, dict[str, float]]:
    """A trained U-Net and a record of its training (loss, time, sizes).

    The loss is binary cross-entropy plus soft Dice on the boundary class, which keeps the
    thin boundaries from being drowned by the interior pixels.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    started = time.perf_counter()
    inputs, targets = training_set(images, seed, (crop_px, crop_px))
    inputs_t, targets_t = torch.from_numpy(inputs), torch.from_numpy(targets)
    simulated_s = time.perf_counter() - started
    model = UNet(width=width, depth=depth)
    optimiser = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, learning_rate, total_steps=steps)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    running_loss = float("nan")
    for step in range(steps):
        pick = torch.randint(0, images, (batch_size,), generator=generator)
        k = int(torch.randint(0, 4, (1,), generator=generator))
        flip = bool(torch.randint(0, 2, (1,), generator=generator))
        x = _dihedral(inputs_t[pick], k, flip)
        y = _dihedral(targets_t[pick], k, flip)
        logits = model(x)
        probability = torch.sigmoid(logits)
        overlap = (probability * y).sum()
        dice = 1.0 - (2.0 * overlap + 1.0) / (probability.sum() + y.sum() + 1.0)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y) + dice
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        value = loss.item()
        running_loss = value if math.isnan(running_loss) else 0.95 * running_loss + 0.05 * value
        if step % 50 == 0 or step == steps - 1:
            logger.info("step %d/%d loss %.4f", step + 1, steps, running_loss)
    model.eval()
    record = {
        "steps": float(steps),
        "batch_size": float(batch_size),
        "training_images": float(images),
        "crop_px": float(crop_px),
        "seed": float(seed),
        "final_loss": running_loss,
        "simulation_s": simulated_s,
        "training_s": time.perf_counter() - started - simulated_s,
    }
    return model, record


def main(argv: list[str] | None = None) -> None:
    """Command line: train and save a model."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="where to write the model (.pt)")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--images", type=int, default=512, help="simulated training images")
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--width", type=int, default=8, help="channels of the first level")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    model, record = train_unet(
        steps=args.steps,
        images=args.images,
        batch_size=args.batch_size,
        width=args.width,
        seed=args.seed,
        threads=args.threads,
    )
    path = save_model(model, args.out, record)
    print(
        f"wrote {path}: {record['steps']:.0f} steps, loss {record['final_loss']:.4f}, "
        f"{record['simulation_s'] + record['training_s']:.0f} s"
    )


if __name__ == "__main__":
    main()
