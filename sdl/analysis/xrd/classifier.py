"""A learned phase classifier: a small 1-D CNN trained on simulated, domain-randomised patterns.

The network sees a pattern resampled onto a fixed 2-theta grid, square-root scaled (which
makes Poisson noise roughly uniform) and normalised to [0, 1], so it does not care about the
counting time. It returns, per component (the crystalline phases and the amorphous hump), the
probability that the component is present and a weight fraction (softmax head). It is trained
only on simulator output (:class:`simulators.xrd.PowderDiffractometer`) with domain
randomisation: random phase mixtures, crystallite sizes, microstrain, goniometer zero shift,
instrument broadening, background and air scatter, and counting noise. The weights come from
:func:`train_classifier` (``python -m sdl.training.xrd_classifier``); nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from physics.phases import AMORPHOUS, TIO2_POLYMORPHS
from simulators.xrd import PowderDiffractometer

logger = logging.getLogger(__name__)

#: Crystalline phases the classifier is trained for, unless told otherwise.
DEFAULT_PHASES = TIO2_POLYMORPHS

#: Input grid of the network: 2-theta range (deg) and number of points.
GRID_DEG = (10.0, 80.0)
GRID_POINTS = 1024


@dataclass(frozen=True)
class Randomisation:
    """Ranges of the domain randomisation, for training and for held-apart test sets.

    A component present in a mixture has at least ``min_fraction`` weight fraction; absent
    ones have exactly zero, so presence is well defined.
    """

    min_fraction: float = 0.05
    crystallite_size_nm: tuple[float, float] = (5.0, 100.0)
    microstrain: tuple[float, float] = (0.0, 2e-3)
    zero_shift_deg: tuple[float, float] = (-0.2, 0.2)
    broadening_factor: tuple[float, float] = (0.5, 2.0)
    background_cps: tuple[float, float] = (5.0, 150.0)
    air_scatter_cps: tuple[float, float] = (0.0, 1000.0)
    air_scatter_decay_deg: tuple[float, float] = (6.0, 20.0)
    reference_line_cps_deg: tuple[float, float] = (200.0, 5000.0)


@dataclass(frozen=True, eq=False)
class SimulatedSet:
    """Simulated patterns with their truth.

    Attributes
    ----------
    two_theta_deg
        Common 2-theta grid, deg, shape ``(points,)``.
    counts
        Counts, shape ``(patterns, points)``.
    fractions
        True weight fractions, shape ``(patterns, components)``, columns as ``components``.
    crystallite_size_nm
        True sizes, NaN where absent, shape ``(patterns, components)`` (amorphous: NaN).
    components
        Amorphous first, then the crystalline phases.
    """

    two_theta_deg: np.ndarray
    counts: np.ndarray
    fractions: np.ndarray
    crystallite_size_nm: np.ndarray
    components: tuple[str, ...]


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(math.exp(rng.uniform(math.log(bounds[0]), math.log(bounds[1]))))


def simulate_patterns(
    n: int,
    rng: np.random.Generator,
    phases: Sequence[str] = DEFAULT_PHASES,
    randomisation: Randomisation = Randomisation(),
    instrument: PowderDiffractometer = PowderDiffractometer(),
) -> SimulatedSet:
    """``n`` domain-randomised mixtures measured by the simulated diffractometer.

    The mixture is a uniformly chosen non-empty subset of the components with Dirichlet
    weights above the minimum fraction; every pattern gets its own instrument (zero shift,
    Caglioti broadening scaled by one factor, background, air scatter, flux).
    """
    components = (AMORPHOUS, *phases)
    r = randomisation
    counts = np.empty((n, instrument.n_points))
    fractions = np.zeros((n, len(components)))
    sizes = np.full((n, len(components)), np.nan)
    for index in range(n):
        subset = np.flatnonzero(rng.random(len(components)) < 0.5)
        while subset.size == 0:
            subset = np.flatnonzero(rng.random(len(components)) < 0.5)
        weights = rng.dirichlet(np.ones(subset.size))
        fractions[index, subset] = r.min_fraction + (1 - subset.size * r.min_fraction) * weights
        broadening = rng.uniform(*r.broadening_factor)
        measured = dataclasses.replace(
            instrument,
            zero_shift_deg=rng.uniform(*r.zero_shift_deg),
            caglioti_u_deg2=instrument.caglioti_u_deg2 * broadening,
            caglioti_v_deg2=instrument.caglioti_v_deg2 * broadening,
            caglioti_w_deg2=instrument.caglioti_w_deg2 * broadening,
            background_cps=rng.uniform(*r.background_cps),
            air_scatter_cps=rng.uniform(*r.air_scatter_cps),
            air_scatter_decay_deg=rng.uniform(*r.air_scatter_decay_deg),
            reference_line_cps_deg=_log_uniform(rng, r.reference_line_cps_deg),
        )
        size_nm, strain = {}, {}
        for column in subset[subset > 0]:
            size_nm[components[column]] = _log_uniform(rng, r.crystallite_size_nm)
            strain[components[column]] = rng.uniform(*r.microstrain)
            sizes[index, column] = size_nm[components[column]]
        expected = measured.ideal_pattern(
            {components[c]: fractions[index, c] for c in subset}, size_nm, strain
        )
        counts[index] = rng.poisson(expected)
    return SimulatedSet(np.array(instrument.two_theta_deg), counts, fractions, sizes, components)


def preprocess(two_theta_deg: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Network input from patterns: resampled to the grid, sqrt-scaled, min-max normalised.

    ``counts`` may be one pattern ``(points,)`` or a batch ``(patterns, points)`` on the same
    ``two_theta_deg``; the result has shape ``(patterns, GRID_POINTS)`` (float32). Grid points
    outside the measured range get the pattern's minimum.
    """
    counts = np.atleast_2d(np.asarray(counts, dtype=float))
    two_theta_deg = np.asarray(two_theta_deg, dtype=float)
    if counts.shape[1] != two_theta_deg.size:
        raise ValueError(
            f"two_theta_deg has {two_theta_deg.size} points but counts have {counts.shape[1]}"
        )
    grid = np.linspace(*GRID_DEG, GRID_POINTS)
    root = np.sqrt(np.maximum(counts, 0.0))
    if two_theta_deg.size == GRID_POINTS and np.allclose(two_theta_deg, grid):
        resampled = root
    else:
        # Linear interpolation of every pattern at once: weights of the two neighbours.
        right = np.clip(np.searchsorted(two_theta_deg, grid), 1, two_theta_deg.size - 1)
        left = right - 1
        t = np.clip(
            (grid - two_theta_deg[left]) / (two_theta_deg[right] - two_theta_deg[left]), 0, 1
        )
        resampled = root[:, left] * (1 - t) + root[:, right] * t
        outside = (grid < two_theta_deg[0]) | (grid > two_theta_deg[-1])
        resampled[:, outside] = resampled[:, ~outside].min(axis=1, keepdims=True)
    low = resampled.min(axis=1, keepdims=True)
    span = np.maximum(resampled.max(axis=1, keepdims=True) - low, 1e-12)
    return ((resampled - low) / span).astype(np.float32)


class PhaseNet(nn.Module):
    """1-D CNN: five conv blocks (conv, batch norm, ReLU, max pool), then two small heads.

    Input ``batch x GRID_POINTS``; outputs presence logits and fraction logits, each
    ``batch x components``.
    """

    def __init__(self, n_components: int, width: int = 8) -> None:
        super().__init__()
        channels = [1, width, 2 * width, 4 * width, 4 * width, 8 * width]
        kernels = [9, 9, 7, 5, 3]
        layers: list[nn.Module] = []
        for c_in, c_out, k in zip(channels[:-1], channels[1:], kernels, strict=True):
            layers += [
                nn.Conv1d(c_in, c_out, k, padding=k // 2),
                nn.BatchNorm1d(c_out),
                nn.ReLU(),
                nn.MaxPool1d(2),
            ]
        self.features = nn.Sequential(*layers)
        flat = channels[-1] * (GRID_POINTS // 2 ** len(kernels))
        self.trunk = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(flat, 64), nn.ReLU())
        self.presence = nn.Linear(64, n_components)
        self.fraction = nn.Linear(64, n_components)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.trunk(self.features(x.unsqueeze(1)))
        return self.presence(hidden), self.fraction(hidden)


@dataclass(frozen=True, eq=False)
class Prediction:
    """What the classifier says about a batch of patterns (arrays ``patterns x components``)."""

    components: tuple[str, ...]
    probability: np.ndarray
    fractions: np.ndarray
    thresholds: np.ndarray

    @property
    def present(self) -> np.ndarray:
        """Boolean presence per pattern and component (probability above its threshold)."""
        return self.probability > self.thresholds


class XRDClassifier:
    """A trained :class:`PhaseNet` with its component names and presence thresholds.

    ``thresholds`` (one per component, default 0.5) are set by :func:`calibrate_thresholds`.
    """

    def __init__(
        self,
        model: PhaseNet,
        components: Sequence[str],
        thresholds: Sequence[float] | None = None,
    ) -> None:
        self.model = model.eval()
        self.components = tuple(components)
        self.thresholds = (
            np.full(len(self.components), 0.5)
            if thresholds is None
            else (np.asarray(thresholds, dtype=float))
        )

    def predict(self, two_theta_deg: np.ndarray, counts: np.ndarray) -> Prediction:
        """Presence probabilities and weight fractions for one pattern or a batch.

        Fractions are the softmax head restricted to the components judged present and
        renormalised (all components if none is).
        """
        inputs = torch.from_numpy(preprocess(two_theta_deg, counts))
        with torch.inference_mode():
            presence_logits, fraction_logits = self.model(inputs)
        probability = torch.sigmoid(presence_logits).numpy().astype(float)
        fractions = torch.softmax(fraction_logits, dim=1).numpy().astype(float)
        present = probability > self.thresholds
        present[~present.any(axis=1)] = True
        fractions = np.where(present, fractions, 0.0)
        fractions /= fractions.sum(axis=1, keepdims=True)
        return Prediction(self.components, probability, fractions, self.thresholds)

    def save(self, path: str | Path) -> None:
        """Write the weights and the component names (a plain torch state dict)."""
        torch.save(
            {
                "state_dict": self.model.state_dict(),
                "components": list(self.components),
                "thresholds": self.thresholds.tolist(),
                "grid_deg": list(GRID_DEG),
                "grid_points": GRID_POINTS,
            },
            Path(path),
        )

    @classmethod
    def load(cls, path: str | Path) -> XRDClassifier:
        """Read weights written by :meth:`save` (tensors and names only, no pickled code)."""
        checkpoint = torch.load(Path(path), weights_only=True)
        if checkpoint["grid_points"] != GRID_POINTS or tuple(checkpoint["grid_deg"]) != GRID_DEG:
            raise ValueError(f"{path} was trained on another input grid: retrain it")
        model = PhaseNet(len(checkpoint["components"]))
        model.load_state_dict(checkpoint["state_dict"])
        return cls(model, checkpoint["components"], checkpoint.get("thresholds"))


def calibrate_thresholds(
    classifier: XRDClassifier,
    n_patterns: int = 2000,
    seed: int = 1,
    randomisation: Randomisation = Randomisation(),
) -> XRDClassifier:
    """Per-component presence thresholds that maximise accuracy on a validation set.

    The validation set is simulated with its own seed (training uses ``seed - 1`` by
    default, the benchmark's test set others), so the thresholds never see test data.
    """
    phases = classifier.components[1:]
    validation = simulate_patterns(n_patterns, np.random.default_rng(seed), phases, randomisation)
    probability = classifier.predict(validation.two_theta_deg, validation.counts).probability
    truth = validation.fractions > 0
    candidates = np.linspace(0.05, 0.95, 37)
    thresholds = [
        float(
            candidates[
                np.argmax([np.mean((probability[:, i] > t) == truth[:, i]) for t in candidates])
            ]
        )
        for i in range(len(classifier.components))
    ]
    logger.info("presence thresholds %s", dict(zip(classifier.components, thresholds, strict=True)))
    return XRDClassifier(classifier.model, classifier.components, thresholds)


def train_classifier(
    n_patterns: int = 12000,
    epochs: int = 12,
    seed: int = 0,
    phases: Sequence[str] = DEFAULT_PHASES,
    randomisation: Randomisation = Randomisation(),
    batch_size: int = 128,
    threads: int = 2,
) -> XRDClassifier:
    """Simulate a domain-randomised training set and train a :class:`PhaseNet` on it.

    Loss: binary cross-entropy on presence plus the mean absolute error of the softmax
    fractions. AdamW with a one-cycle learning rate. Seeded: the same arguments give the
    same weights on the same machine.
    """
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    data = simulate_patterns(n_patterns, rng, phases, randomisation)
    logger.info(
        "simulated %d training patterns in %.1f s", n_patterns, time.perf_counter() - started
    )
    inputs = torch.from_numpy(preprocess(data.two_theta_deg, data.counts))
    fractions = torch.from_numpy(data.fractions.astype(np.float32))
    presence = (fractions > 0).float()
    model = PhaseNet(len(data.components))
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    steps_per_epoch = math.ceil(n_patterns / batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=3e-3, total_steps=epochs * steps_per_epoch
    )
    bce = nn.BCEWithLogitsLoss()
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(n_patterns, generator=generator)
        total = 0.0
        for start in range(0, n_patterns, batch_size):
            batch = order[start : start + batch_size]
            presence_logits, fraction_logits = model(inputs[batch])
            loss = (
                bce(presence_logits, presence[batch])
                + (torch.softmax(fraction_logits, dim=1) - fractions[batch]).abs().sum(dim=1).mean()
            )
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item() * batch.numel()
        logger.info("epoch %d/%d: loss %.4f", epoch + 1, epochs, total / n_patterns)
    return XRDClassifier(model, data.components)
