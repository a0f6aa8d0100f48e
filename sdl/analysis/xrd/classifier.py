"""A learned phase classifier: a small 1-D CNN that reads phases off a powder pattern.

The network sees a pattern resampled onto a fixed 2-theta grid, square-root scaled (which
makes Poisson noise roughly uniform) and normalised to [0, 1], so it does not care about the
counting time. It returns, per component (the crystalline phases and the amorphous hump), the
probability that the component is present and a weight fraction (softmax head). Its weights
come from :mod:`sdl.training.xrd_classifier` (``python -m sdl.training.xrd_classifier``),
which trains it on simulated, domain-randomised patterns; nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from physics.phases import TIO2_POLYMORPHS

#: Crystalline phases the classifier is trained for, unless told otherwise.
DEFAULT_PHASES = TIO2_POLYMORPHS

#: Input grid of the network: 2-theta range (deg) and number of points.
GRID_DEG = (10.0, 80.0)
GRID_POINTS = 1024


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

    ``thresholds`` (one per component, default 0.5) are set by
    :func:`sdl.training.xrd_classifier.calibrate_thresholds`.
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
