"""Calibration factors of a campaign's own phases, fitted on standards of known composition.

A phase's calibration factor ``k`` is its measured intensity per unit weight fraction over
the computed one (:mod:`sdl.analysis.xrd.reference`); only ratios between phases matter. A
standard is a scan of a mixture whose weight fractions ``w`` are known. Each standard is
fitted with the whole-pattern fit (:func:`~sdl.analysis.xrd.whole_pattern.analyse_pattern`)
with its phases at ``k = 1``, the campaign's instrument calibration, and no amorphous
component (the known composition is all crystalline, so a reagent's amorphous content goes
into its factor). A fitted fraction ``f`` is then proportional to ``k w``, so within one
standard ``k_p / k_ref = (f_p / w_p) / (f_ref / w_ref)``.

Several standards are combined in log space: ``ln(f_sp / w_sp) = ln k_p + c_s`` for every
phase ``p`` of standard ``s``, one level ``c_s`` per standard and ``ln k_ref = 0``, solved by
weighted least squares with the variances ``(sigma_f / f)^2`` of the fits. The standards need
not share one phase: a phase linked to the reference through other phases (A with B in one
standard, B with the reference in another) is calibrated too. Where the standards
over-determine the factors, the covariance is scaled by the reduced chi-square of that
combination when it exceeds 1 (the Birge ratio), so the uncertainty covers the scatter between
standards as well as the fits' own uncertainties.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import yaml

from sdl.analysis.xrd.calibration import InstrumentCalibration
from sdl.analysis.xrd.instrument import ProfileShape
from sdl.analysis.xrd.user_phases import UserPhase, XRDPhases
from sdl.analysis.xrd.whole_pattern import analyse_pattern

#: How far the weight fractions of a standard may sum from 1 (weighing and rounding).
WEIGHT_SUM_TOLERANCE = 0.02

#: Relative uncertainty of a fitted fraction below which the fit's own figure is not trusted:
#: it keeps one scan from outweighing every other by the counting statistics alone.
_MIN_RELATIVE_STD = 0.005


@dataclass(frozen=True, eq=False)
class Standard:
    """One scan of a mixture of known composition.

    Attributes
    ----------
    source
        Where the scan came from (its file name), to name it in tables and errors.
    two_theta_deg, counts
        The scan: 2-theta of every step (deg, equal steps) and the counts there.
    weights
        Weight fraction of each phase in the mixture, by the campaign's phase names; phases at
        0 are absent and left out of the fit.
    """

    source: str
    two_theta_deg: np.ndarray
    counts: np.ndarray
    weights: Mapping[str, float]

    @property
    def present(self) -> tuple[str, ...]:
        """The phases the standard holds (weight above zero)."""
        return tuple(name for name, weight in self.weights.items() if weight > 0)


@dataclass(frozen=True)
class StandardResult:
    """What the fit of one standard found, its phases at factor 1.

    Attributes
    ----------
    source
        The standard's scan.
    weights
        Its known weight fractions (the phases it holds).
    fractions, fractions_std
        Fitted weight fractions with their standard uncertainties.
    rwp, reduced_chi2, fit_flags
        How well the fit describes the scan (see
        :class:`~sdl.analysis.xrd.whole_pattern.XRDFeatures`).
    """

    source: str
    weights: dict[str, float]
    fractions: dict[str, float]
    fractions_std: dict[str, float]
    rwp: float
    reduced_chi2: float
    fit_flags: tuple[str, ...]


@dataclass(frozen=True)
class PhaseFactors:
    """Calibration factors fitted on standards, relative to a reference phase.

    Attributes
    ----------
    reference
        The phase whose factor is 1.
    factors, factors_std
        Factor of every phase a standard holds, with its standard uncertainty.
    per_standard
        Per phase, the factor each standard gives alone, in the order of ``standards`` (NaN
        where it does not hold the phase): ``(f_p / w_p) / (f_ref / w_ref)`` where it holds
        the reference, else its ``f_p / w_p`` over the standard's fitted level.
    standards
        The fits of the standards.
    reduced_chi2
        Chi-square per degree of freedom of the combination (NaN when the standards only
        just determine the factors); the uncertainties were scaled by it where above 1.
    """

    reference: str
    factors: dict[str, float]
    factors_std: dict[str, float]
    per_standard: dict[str, tuple[float, ...]]
    standards: tuple[StandardResult, ...]
    reduced_chi2: float


def parse_weights(text: str, phases: Sequence[str]) -> dict[str, float]:
    """Weight fractions by phase from ``"name=w,name=w"``, checked against the ``phases``.

    Raises
    ------
    ValueError
        On an item that is not ``NAME=NUMBER``, a phase not among ``phases`` or named twice, a
        negative weight, or weights that do not sum to 1 within :data:`WEIGHT_SUM_TOLERANCE`;
        the message names the bad item and what is allowed.
    """
    allowed = ", ".join(phases)
    weights: dict[str, float] = {}
    for item in text.split(","):
        name, equals, value = (part.strip() for part in item.partition("="))
        try:
            weight = float(value) if equals else math.nan
        except ValueError:
            weight = math.nan
        if not math.isfinite(weight):
            raise ValueError(
                f"{item.strip()!r}: expected NAME=WEIGHT_FRACTION, e.g. {phases[0]}=0.5"
            )
        if name not in phases:
            raise ValueError(f"{name!r} is not a phase of the campaign; its xrd_phases: {allowed}")
        if name in weights:
            raise ValueError(f"{name!r} is given twice")
        if weight < 0:
            raise ValueError(f"{name}={value}: a weight fraction is >= 0")
        weights[name] = weight
    total = sum(weights.values())
    if abs(total - 1.0) > WEIGHT_SUM_TOLERANCE:
        raise ValueError(
            f"{text!r} sums to {total:.3f}; weight fractions must sum to 1 "
            f"(within {WEIGHT_SUM_TOLERANCE})"
        )
    return weights


def fit_standard(
    standard: Standard, phases: XRDPhases, calibration: InstrumentCalibration | None = None
) -> StandardResult:
    """The whole-pattern fit of one standard with the phases it holds at factor 1.

    Raises
    ------
    ValueError
        If the standard names a phase that ``phases`` lacks, holds no phase, or a phase it
        holds is not found in the scan (fitted at zero).
    """
    by_name = {phase.name: phase for phase in phases.phases}
    unknown = sorted(set(standard.weights) - set(by_name))
    if unknown:
        raise ValueError(
            f"{standard.source}: {unknown} not among the campaign's phases {list(by_name)}"
        )
    present = standard.present
    if not present:
        raise ValueError(f"{standard.source}: the standard holds no phase (every weight is 0)")
    references = [
        UserPhase(name, by_name[name].cif_text, 1.0, by_name[name].source).reference()
        for name in present
    ]
    fit = analyse_pattern(
        standard.two_theta_deg,
        standard.counts,
        references,
        False,
        shape=calibration.shape if calibration else ProfileShape(),
        zero_shift_deg=calibration.zero_shift_deg if calibration else 0.0,
    )
    missing = [name for name in present if fit.phase_fractions[name] <= 0]
    if missing:
        raise ValueError(
            f"{standard.source}: {missing} not found in the scan (fitted at 0 against the "
            f"weights {dict(standard.weights)}); check the weights, the CIF and the scan"
        )
    return StandardResult(
        standard.source,
        {name: float(standard.weights[name]) for name in present},
        {name: fit.phase_fractions[name] for name in present},
        {name: fit.phase_fractions_std[name] for name in present},
        fit.rwp,
        fit.reduced_chi2,
        fit.fit_flags,
    )


def combine_standards(
    results: Sequence[StandardResult], reference: str | None = None
) -> PhaseFactors:
    """Calibration factors from fitted standards, ``reference`` at 1 (None: the first phase
    of the first standard).

    Raises
    ------
    ValueError
        If no standard holds the reference, or a phase is not linked to it by the standards
        (no chain of standards sharing phases leads from one to the other).
    """
    if not results:
        raise ValueError("no standard to calibrate on")
    held = list(dict.fromkeys(name for result in results for name in result.weights))
    reference = held[0] if reference is None else reference
    if reference not in held:
        raise ValueError(
            f"reference {reference!r}: no standard holds it (weight above 0); "
            f"choose one of {', '.join(held)}"
        )
    unlinked = sorted(set(held) - _linked(results, reference))
    if unlinked:
        raise ValueError(
            f"{unlinked} not linked to the reference {reference!r}: no standard holds them with "
            "the reference or with a phase linked to it; add such a standard"
        )
    others = [name for name in held if name != reference]
    n_unknowns = len(others) + len(results)
    rows, values, variances = [], [], []
    for index, result in enumerate(results):
        for name, weight_fraction in result.weights.items():
            fraction = result.fractions[name]
            row = np.zeros(n_unknowns)
            if name != reference:
                row[others.index(name)] = 1.0
            row[len(others) + index] = 1.0
            rows.append(row)
            values.append(math.log(fraction / weight_fraction))
            relative_std = max(result.fractions_std[name] / fraction, _MIN_RELATIVE_STD)
            variances.append(relative_std**2)
    design, target, precision = np.array(rows), np.array(values), 1.0 / np.array(variances)
    covariance = np.linalg.inv(design.T @ (precision[:, None] * design))
    solution = covariance @ design.T @ (precision * target)
    residual = target - design @ solution
    dof = target.size - n_unknowns
    reduced_chi2 = float(precision @ residual**2) / dof if dof > 0 else math.nan
    if dof > 0 and reduced_chi2 > 1:
        covariance = covariance * reduced_chi2
    log_factor = dict(zip(others, solution[: len(others)], strict=True)) | {reference: 0.0}
    log_std = dict(zip(others, np.sqrt(np.diag(covariance))[: len(others)], strict=True))
    levels = solution[len(others) :]
    per_standard: dict[str, list[float]] = {name: [] for name in held}
    for result, level in zip(results, levels, strict=True):
        if reference in result.weights:
            level = math.log(result.fractions[reference] / result.weights[reference])
        for name, values in per_standard.items():
            if name in result.weights:
                values.append(result.fractions[name] / result.weights[name] / math.exp(level))
            else:
                values.append(math.nan)
    factors = {name: math.exp(log_factor[name]) for name in held}
    return PhaseFactors(
        reference,
        factors,
        {name: factors[name] * float(log_std.get(name, 0.0)) for name in held},
        {name: tuple(values) for name, values in per_standard.items()},
        tuple(results),
        reduced_chi2,
    )


def calibrate_phases(
    standards: Sequence[Standard],
    phases: XRDPhases,
    calibration: InstrumentCalibration | None = None,
    reference: str | None = None,
) -> PhaseFactors:
    """Calibration factors of ``phases`` fitted on ``standards`` (see the module's text).

    Parameters
    ----------
    standards
        Scans of mixtures of known weight fractions.
    phases
        The campaign's phases; their present factors are not used.
    calibration
        The diffractometer's calibration (``analysis.xrd_instrument``); None: the analysis's
        default instrument.
    reference
        The phase whose factor is 1; None: the first phase of ``phases`` a standard holds.

    Raises
    ------
    ValueError
        As :func:`fit_standard` and :func:`combine_standards`, and for a reference that is
        not one of ``phases``.
    """
    if reference is not None and reference not in phases.names:
        raise ValueError(
            f"reference {reference!r} is not a phase of the campaign; "
            f"its xrd_phases: {', '.join(phases.names)}"
        )
    if reference is None:
        held = {name for standard in standards for name in standard.present}
        reference = next((name for name in phases.names if name in held), None)
    results = [fit_standard(standard, phases, calibration) for standard in standards]
    return combine_standards(results, reference)


def xrd_phases_block(phases: XRDPhases, factors: PhaseFactors) -> str:
    """The campaign file's ``xrd_phases:`` with the fitted factors, as YAML to paste under
    ``analysis:``; a phase no standard holds keeps its present factor, said in a comment."""
    lines = [
        f"# calibration factors fitted by `sdl calibrate-phases` on {len(factors.standards)} "
        f"standard scan(s), reference {factors.reference}",
        "xrd_phases:",
    ]
    for phase in phases.phases:
        calibrated = phase.name in factors.factors
        factor = factors.factors[phase.name] if calibrated else phase.calibration_factor
        entry = {
            "name": phase.name,
            "cif": phase.source,
            "calibration_factor": float(f"{factor:.4g}"),
        }
        text = yaml.safe_dump(entry, default_flow_style=True, sort_keys=False, width=10**6).strip()
        if not calibrated:
            comment = "  # no standard holds it: factor kept"
        elif phase.name == factors.reference:
            comment = "  # reference"
        else:
            comment = f"  # ± {factors.factors_std[phase.name]:.2g}"
        lines.append(f"  - {text}{comment}")
    return "\n".join(lines) + "\n"


def _linked(results: Sequence[StandardResult], reference: str) -> set[str]:
    """The phases joined to ``reference`` through standards that share phases."""
    linked = {reference}
    grew = True
    while grew:
        grew = False
        for result in results:
            names = set(result.weights)
            if names & linked and not names <= linked:
                linked |= names
                grew = True
    return linked
