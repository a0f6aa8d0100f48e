"""SEM-like secondary-electron micrographs of a dense polycrystal, with the truth behind them.

Grains are the cells of a power (weighted Voronoi) diagram whose weights are fitted so the
cells' areas follow the sample's log-normal size distribution. The power diagram is computed
as a nearest-neighbour query in 3-D: a seed ``s`` with weight ``w`` is lifted to
``(s, sqrt(C - w))``, so the Euclidean distance to an image point ``(x, 0)`` is its power
distance plus a constant. The two nearest seeds also give each pixel's sub-pixel distance
to the grain boundary, which renders the bright SE edge without aliasing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.spatial import cKDTree

from physics.phases import AMORPHOUS
from simulators.sample import SampleState

#: Mean grain diameter, px, an operator aims for when choosing the magnification, and the range
#: the magnification setting allows (the simulated device's and the IOC's record's limits).
TARGET_GRAIN_PX = 24.0
TARGET_GRAIN_PX_LIMITS = (8.0, 64.0)

#: Frame shape of the microscope, rows x columns.
FRAME_SHAPE = (256, 256)

#: Instrument time of one frame: stage move, focus and a slow scan, s.
FRAME_TIME_S = 120.0

#: Pixel sizes the microscope offers (R10 preferred numbers, 0.1-100 nm), one per magnification.
PIXEL_SIZES_NM = tuple(
    round(float(m) * 10.0**e, 3)
    for e in range(-1, 2)
    for m in (1.0, 1.25, 1.6, 2.0, 2.5, 3.15, 4.0, 5.0, 6.3, 8.0)
) + (100.0,)

#: Densities turn weight fractions into the area fractions an image shows, g/cm^3.
PHASE_DENSITY_G_CM3 = {AMORPHOUS: 3.5, "anatase": 3.89, "brookite": 4.12, "rutile": 4.25}

#: Mean secondary-electron yield (grey level) per phase: heavier packing is slightly brighter.
PHASE_BRIGHTNESS = {AMORPHOUS: 0.30, "anatase": 0.42, "brookite": 0.46, "rutile": 0.50}

#: Edge brightening of crystalline grains; amorphous particles are smoother and duller.
EDGE_GAIN = {AMORPHOUS: 0.22}
CRYSTALLINE_EDGE_GAIN = 0.38

#: Physical width of the bright edge (the SE escape zone), nm; at least 0.7 px and at most
#: 1.5 px wide in the image, as the probe and the detector's bandwidth limit it.
EDGE_WIDTH_NM = 2.5

#: Relaxation steps that fit the power diagram to the target grain areas.
_FIT_ITERATIONS = 4


@dataclass(frozen=True, eq=False)
class Micrograph:
    """One simulated frame and its ground truth.

    Attributes
    ----------
    image
        Secondary-electron intensity in [0, 1], float32, shape ``(rows, cols)``.
    labels
        Grain id per pixel (int32): 1..N, every pixel belongs to a grain (0 is reserved for
        background and never occurs in a dense polycrystal).
    phase_map
        Index into ``phases`` per pixel (int8).
    phases
        Phase names indexed by ``phase_map``.
    pixel_size_nm
        Edge length of one pixel on the sample, nm.
    """

    image: np.ndarray
    labels: np.ndarray
    phase_map: np.ndarray
    phases: tuple[str, ...]
    pixel_size_nm: float


def choose_pixel_size_nm(
    particle_size_nm: float, target_grain_px: float = TARGET_GRAIN_PX
) -> float:
    """The magnification an operator picks: the offered pixel size that puts the mean grain
    nearest ``target_grain_px`` across (coarse steps, so little of the truth leaks through)."""
    if not particle_size_nm > 0:
        raise ValueError(f"particle_size_nm must be > 0, got {particle_size_nm}")
    sizes = np.array(PIXEL_SIZES_NM)
    return float(sizes[np.argmin(np.abs(np.log(particle_size_nm / sizes / target_grain_px)))])


def _lognormal_diameters(rng, mean: float, cv: float, size: int) -> np.ndarray:
    sigma2 = math.log1p(cv**2)
    return rng.lognormal(math.log(mean) - sigma2 / 2.0, math.sqrt(sigma2), size)


def _lift(seeds: np.ndarray, weights: np.ndarray) -> np.ndarray:
    height = np.sqrt(weights.max() - weights + 1e-9)
    return np.column_stack([seeds, height])


def _fit_power_diagram(
    seeds: np.ndarray, target_area: np.ndarray, domain: tuple[float, float], step: float
) -> tuple[np.ndarray, np.ndarray]:
    """Seeds and weights whose power cells have about the target areas.

    Capacity-constrained relaxation: each step moves seeds to their cells' centroids (which
    keeps every seed inside its cell and the cells compact) and corrects each weight by the
    area error. Moving a weight by ``dw`` moves each edge by ``dw / (2 d)`` for a neighbour at
    distance ``d`` ~ one diameter, so a cell's area changes by about ``pi dw / 2``.
    """
    rows = np.arange(step / 2, domain[0], step)
    cols = np.arange(step / 2, domain[1], step)
    grid = np.stack(np.meshgrid(rows, cols, indexing="ij"), axis=-1).reshape(-1, 2)
    lifted_grid = np.column_stack([grid, np.zeros(len(grid))])
    weights = target_area / math.pi
    for _ in range(_FIT_ITERATIONS):
        _, owner = cKDTree(_lift(seeds, weights)).query(lifted_grid, workers=-1)
        count = np.bincount(owner, minlength=len(seeds))
        occupied = count > 0
        for axis in range(2):
            total = np.bincount(owner, weights=grid[:, axis], minlength=len(seeds))
            seeds[occupied, axis] = total[occupied] / count[occupied]
        weights = weights + (target_area - count * step**2) * 2.0 / math.pi
    return seeds, weights


def _assign_phases(
    rng, sample: SampleState, areas: np.ndarray
) -> tuple[tuple[str, ...], np.ndarray]:
    """Phase per grain, so phase area fractions match volume fractions.

    Grains are ranked by size (with scatter) and phases by crystallite size, so rutile tends
    to sit in the large grains and amorphous material in the small ones, as in real powders.
    """
    phases = tuple(sample.phase_fractions)
    volume = np.array([sample.phase_fractions[p] / PHASE_DENSITY_G_CM3.get(p, 4.0) for p in phases])
    volume /= volume.sum()
    size_rank = [sample.crystallite_size_nm.get(p, 0.0) if p != AMORPHOUS else -1.0 for p in phases]
    phase_order = np.argsort(size_rank)[::-1]
    grain_order = np.argsort(np.log(areas) + rng.normal(0.0, 0.5, len(areas)))[::-1]
    cumulative_area = np.cumsum(areas[grain_order]) / areas.sum()
    edges = np.cumsum(volume[phase_order])
    slot = np.minimum(
        np.searchsorted(edges, cumulative_area - 0.5 * areas[grain_order] / areas.sum()),
        len(phases) - 1,
    )
    grain_phase = np.empty(len(areas), dtype=np.int8)
    grain_phase[grain_order] = phase_order[slot]
    return phases, grain_phase


def image_sample(
    sample: SampleState,
    rng: np.random.Generator,
    target_grain_px: float = TARGET_GRAIN_PX,
    shape: tuple[int, int] = FRAME_SHAPE,
) -> Micrograph:
    """A frame as the microscope takes it: magnified so that a typical grain spans
    ``target_grain_px`` pixels (:func:`choose_pixel_size_nm`)."""
    pixel_size_nm = choose_pixel_size_nm(sample.particle_size_nm, target_grain_px)
    return simulate_micrograph(sample, rng, shape=shape, pixel_size_nm=pixel_size_nm)


def simulate_micrograph(
    sample: SampleState,
    rng: np.random.Generator,
    *,
    shape: tuple[int, int] = FRAME_SHAPE,
    pixel_size_nm: float | None = None,
    noise: float = 0.05,
    read_noise: float = 0.01,
    blur_px: float = 0.8,
    drift_px: float = 1.5,
    edge_contrast: float = 1.0,
    grain_tone_std: float = 0.04,
) -> Micrograph:
    """A secondary-electron image of the sample's grains, with labels and phases as truth.

    Parameters
    ----------
    sample
        The sample; its ``particle_size_nm`` (mean equivalent-circle diameter) and
        ``particle_size_cv`` set the log-normal grain sizes, its phase fractions the contrast.
    rng
        Source of every random draw (grain placement, contrast, drift, noise).
    shape
        Frame size in pixels, ``(rows, cols)``.
    pixel_size_nm
        Pixel edge on the sample, nm. ``None`` lets the operator choose the magnification
        (:func:`choose_pixel_size_nm`); the choice is recorded in the result. Grains below
        ~10 px across are poorly resolved, below 1 px impossible.
    noise
        Shot (electron counting) noise: relative std at mid-grey; sets the dose per pixel.
    read_noise
        Additive Gaussian detector noise, in intensity units.
    blur_px
        Gaussian std of the probe, px.
    drift_px
        Std of the stage drift accumulated over one frame, px; applied along the slow scan
        so the frame is sheared, and the truth labels are sheared with it.
    edge_contrast
        Scale of the bright grain-edge signal (detector position, accelerating voltage and
        working distance change it); 1 is the default SE detector.
    grain_tone_std
        Std of the grain-to-grain orientation (channelling) contrast, intensity units.
    """
    rows, cols = (int(n) for n in shape)
    if rows < 16 or cols < 16:
        raise ValueError(f"shape must be at least (16, 16) px, got {shape}")
    if pixel_size_nm is None:
        pixel_size_nm = choose_pixel_size_nm(sample.particle_size_nm)
    if not pixel_size_nm > 0:
        raise ValueError(f"pixel_size_nm must be > 0, got {pixel_size_nm}")
    if not (edge_contrast >= 0 and grain_tone_std >= 0):
        raise ValueError(
            f"edge_contrast and grain_tone_std must be >= 0, got {edge_contrast}, {grain_tone_std}"
        )
    mean_px = sample.particle_size_nm / pixel_size_nm
    if mean_px < 1.0:
        raise ValueError(
            f"grains of {sample.particle_size_nm:.1f} nm are below one pixel of {pixel_size_nm} nm;"
            " choose pixel_size_nm below the particle size"
        )
    cv = sample.particle_size_cv
    drift = rng.normal(0.0, drift_px, 2)

    # Seeds fill a margin around the frame so grains crossing its edge are whole cells.
    pad = min(1.5 * mean_px * (1 + cv), 0.5 * max(rows, cols)) + float(np.abs(drift).max())
    domain = (rows + 2 * pad, cols + 2 * pad)
    mean_area = math.pi / 4.0 * mean_px**2 * (1.0 + cv**2)
    n_grains = max(int(rng.poisson(domain[0] * domain[1] / mean_area)), 2)
    target_area = math.pi / 4.0 * _lognormal_diameters(rng, mean_px, cv, n_grains) ** 2
    seeds = rng.uniform((0.0, 0.0), domain, size=(n_grains, 2))
    seeds, weights = _fit_power_diagram(seeds, target_area, domain, step=max(1.0, mean_px / 8.0))

    row_index, col_index = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    scan_progress = row_index / rows
    points = np.column_stack(
        [
            (row_index + pad + drift[0] * scan_progress).ravel(),
            (col_index + pad + drift[1] * scan_progress).ravel(),
            np.zeros(rows * cols),
        ]
    )
    lifted = _lift(seeds, weights)
    distance, owner = cKDTree(lifted).query(points, k=2, workers=-1)
    power_gap = distance[:, 1] ** 2 - distance[:, 0] ** 2
    seed_gap = np.linalg.norm(seeds[owner[:, 1]] - seeds[owner[:, 0]], axis=1)
    edge_distance_px = (power_gap / (2.0 * seed_gap)).reshape(rows, cols)

    present, labels = np.unique(owner[:, 0], return_inverse=True)
    labels = (labels + 1).reshape(rows, cols).astype(np.int32)
    phases, grain_phase = _assign_phases(rng, sample, target_area)
    phase_map = grain_phase[present][labels - 1]

    brightness = np.array([PHASE_BRIGHTNESS.get(p, 0.45) for p in phases])
    edge_gain = np.array([EDGE_GAIN.get(p, CRYSTALLINE_EDGE_GAIN) for p in phases])
    # Orientation (channelling) contrast varies from grain to grain.
    grain_tone = rng.normal(0.0, grain_tone_std, len(present))[labels - 1]
    edge_width_px = float(np.clip(EDGE_WIDTH_NM / pixel_size_nm, 0.7, 1.5))
    image = (
        brightness[phase_map]
        + grain_tone
        + edge_contrast * edge_gain[phase_map] * np.exp(-edge_distance_px / edge_width_px)
    )
    image = gaussian_filter(image, blur_px) if blur_px > 0 else image
    dose = 0.5 / noise**2 if noise > 0 else None
    if dose is not None:
        image = rng.poisson(np.clip(image, 0.0, None) * dose) / dose
    image = image + rng.normal(0.0, read_noise, image.shape)
    return Micrograph(
        image=np.clip(image, 0.0, 1.0).astype(np.float32),
        labels=labels,
        phase_map=phase_map.astype(np.int8),
        phases=phases,
        pixel_size_nm=float(pixel_size_nm),
    )
