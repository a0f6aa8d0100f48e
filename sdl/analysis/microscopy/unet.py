"""A small U-Net that finds grain boundaries in micrographs, and the grains it implies.

The network (Ronneberger, Fischer & Brox, MICCAI 2015, scaled down) maps a normalised
micrograph to a per-pixel grain-boundary probability. Grains are then the basins of a
watershed on that probability, seeded by the connected regions the network is confident
are grain interior, so every pixel joins a grain exactly as in the classical pipeline
(:func:`sdl.analysis.microscopy.segmentation.segment_grains`) and the same statistics apply.

The weights come from :mod:`sdl.training.unet` (simulated micrographs with their
label images, domain-randomised); nothing is downloaded. A saved model is a
``torch.save`` of plain tensors and numbers, loaded with ``weights_only=True``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi
from skimage.segmentation import watershed
from torch import nn

from sdl.analysis.microscopy.common import normalise_image

#: Boundary probability above which a pixel is boundary, not grain interior.
BOUNDARY_THRESHOLD = 0.5

#: Interior seeds smaller than this many pixels are noise, not grains.
_MIN_SEED_PX = 4


def _block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """U-Net: ``depth`` down-sampling levels, ``width * 2**level`` channels per level.

    Input ``batch x 1 x H x W`` (H, W any size; padded internally to a multiple of
    ``2**depth``), output ``batch x 1 x H x W`` boundary logits.
    """

    def __init__(self, width: int = 16, depth: int = 3) -> None:
        super().__init__()
        if width < 1 or depth < 1:
            raise ValueError(f"width and depth must be >= 1, got {width}, {depth}")
        self.width = width
        self.depth = depth
        channels = [width * 2**level for level in range(depth + 1)]
        self.down = nn.ModuleList(
            [_block(1, channels[0])] + [_block(channels[i], channels[i + 1]) for i in range(depth)]
        )
        self.up = nn.ModuleList(
            [nn.ConvTranspose2d(channels[i + 1], channels[i], 2, stride=2) for i in range(depth)]
        )
        self.merge = nn.ModuleList([_block(2 * channels[i], channels[i]) for i in range(depth)])
        self.head = nn.Conv2d(channels[0], 1, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        rows, cols = image.shape[-2:]
        multiple = 2**self.depth
        pad_rows, pad_cols = -rows % multiple, -cols % multiple
        if pad_rows or pad_cols:
            image = nn.functional.pad(image, (0, pad_cols, 0, pad_rows), mode="reflect")
        skips = []
        x = self.down[0](image)
        for level in range(1, self.depth + 1):
            skips.append(x)
            x = self.down[level](nn.functional.max_pool2d(x, 2))
        for level in reversed(range(self.depth)):
            x = self.up[level](x)
            x = self.merge[level](torch.cat([skips[level], x], dim=1))
        return self.head(x)[..., :rows, :cols]


def save_model(model: UNet, path: Path | str, training: dict[str, float] | None = None) -> Path:
    """Write the model's architecture, weights and training record to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "width": model.width,
            "depth": model.depth,
            "state_dict": model.state_dict(),
            "training": dict(training or {}),
        },
        path,
    )
    return path


def load_model(path: Path | str) -> UNet:
    """The model saved at ``path`` by :func:`save_model`, in evaluation mode."""
    saved = torch.load(Path(path), map_location="cpu", weights_only=True)
    model = UNet(width=int(saved["width"]), depth=int(saved["depth"]))
    model.load_state_dict(saved["state_dict"])
    return model.eval()


def boundary_probability(model: UNet, images: np.ndarray) -> np.ndarray:
    """Grain-boundary probability per pixel of one image ``(H, W)`` or a stack ``(N, H, W)``."""
    images = np.asarray(images, dtype=float)
    single = images.ndim == 2
    stack = images[None] if single else images
    if stack.ndim != 3:
        raise ValueError(f"expected an image (H, W) or a stack (N, H, W), got {images.shape}")
    batch = torch.from_numpy(np.stack([normalise_image(image) for image in stack])[:, None])
    model.eval()
    with torch.inference_mode():
        probability = torch.sigmoid(model(batch.float()))[:, 0].numpy()
    return probability[0] if single else probability


def grains_from_boundary_probability(probability: np.ndarray) -> np.ndarray:
    """Grain labels (1..N, every pixel assigned) from a boundary-probability map.

    Seeds are the connected interior regions (probability below
    :data:`BOUNDARY_THRESHOLD`, 4-connected, at least a few pixels); the watershed on the
    probability then shares the boundary pixels out between their grains.
    """
    interior = probability < BOUNDARY_THRESHOLD
    seeds, count = ndi.label(interior)
    if count == 0:
        return np.ones(probability.shape, dtype=np.int32)
    sizes = np.bincount(seeds.ravel(), minlength=count + 1)
    small = sizes < _MIN_SEED_PX
    small[0] = False
    seeds[small[seeds]] = 0
    # Renumber so the labels are 1..N without gaps.
    _, seeds = np.unique(seeds, return_inverse=True)
    seeds = seeds.reshape(probability.shape)
    if seeds.max() == 0:
        return np.ones(probability.shape, dtype=np.int32)
    return watershed(probability, seeds).astype(np.int32)


def segment_grains_unet(model: UNet, image: np.ndarray) -> np.ndarray:
    """Grain labels of one micrograph (bright grain boundaries) by the U-Net."""
    return grains_from_boundary_probability(boundary_probability(model, image))
