"""From a raw experiment run to the features an agent learns from, recorded as documents too.

One entry: :meth:`SampleAnalysis.analyse` takes a :class:`RawRun` (made from the run's
documents as they streamed, or read back from the catalog) and returns an :class:`AnalysedRun`:
the features, or the ``on_fault`` kind and reason they are unfit, and the analysis run's
documents that record either.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, cast

import numpy as np
from area_detector_handlers.handlers import AreaDetectorHDF5Handler
from event_model import EventPage, Filler, compose_run, unpack_event_page

from physics.phases import AMORPHOUS
from physics.structures import get_structure
from sdl.analysis.features import has_photoactivity, lattice_range, plugin_instruments
from sdl.analysis.microscopy.segmentation import analyse_micrograph
from sdl.analysis.properties import photoactive_area_m2_g
from sdl.analysis.quality import (
    DataProblem,
    calibration_problems,
    image_problems,
    pattern_problems,
)
from sdl.analysis.xrd.calibration import InstrumentCalibration
from sdl.analysis.xrd.classifier import XRDClassifier
from sdl.analysis.xrd.instrument import ProfileShape
from sdl.analysis.xrd.quantify import PhaseQuantification, quantify_phases
from sdl.analysis.xrd.reference import ReferencePhase, library_from_structures
from sdl.analysis.xrd.user_phases import XRDPhases
from sdl.analysis.xrd.whole_pattern import analyse_pattern
from sdl.records.vocabulary import (
    FAIL,
    FEATURES_STREAM,
    PROBLEM_KIND,
    PURPOSE,
    Purpose,
    links_to,
)

#: Version of the feature definitions; recorded with every analysis run.
ANALYSIS_VERSION = "1"


@dataclass(frozen=True)
class Measurements:
    """The raw data of one sample, whichever instruments measured it."""

    two_theta_deg: np.ndarray | None = None
    counts: np.ndarray | None = None
    image: np.ndarray | None = None
    pixel_size_nm: float | None = None
    polarisation_t: float | None = None
    polarisation_t_std: float | None = None

    def pattern(self) -> tuple[np.ndarray, np.ndarray]:
        """``(two_theta_deg, counts)``; ValueError if the run has no XRD pattern."""
        if self.counts is None or self.two_theta_deg is None:
            raise ValueError("the run has no XRD pattern (xrd_counts) to analyse")
        return self.two_theta_deg, self.counts

    def micrograph(self) -> tuple[np.ndarray, float]:
        """``(image, pixel_size_nm)``; ValueError if the run has no micrograph."""
        if self.image is None or self.pixel_size_nm is None:
            raise ValueError("the run has no micrograph (microscope_image) to analyse")
        return self.image, self.pixel_size_nm

    def polarisation(self) -> tuple[float, float]:
        """``(polarisation_t, polarisation_t_std)``; ValueError if not finite or missing."""
        if self.polarisation_t is None or self.polarisation_t_std is None:
            raise ValueError(
                "the run has no magnetometer reading (magnetometer_polarisation_t) to analyse"
            )
        if not np.isfinite([self.polarisation_t, self.polarisation_t_std]).all():
            raise ValueError("the magnetometer reading is not a finite number")
        return self.polarisation_t, self.polarisation_t_std


def measurements_from_data(data: Mapping[str, Any]) -> Measurements:
    """The measurements in one event's (filled) data, keyed by the devices' names.

    Data keys: ``xrd_two_theta``, ``xrd_counts``, ``microscope_image``,
    ``microscope_pixel_size_nm``, ``magnetometer_polarisation_t`` and its ``_std``.
    Instruments that did not measure are left as None.
    """
    measured: dict[str, Any] = {}
    if "xrd_counts" in data:
        measured["two_theta_deg"] = np.asarray(data["xrd_two_theta"], dtype=float)
        measured["counts"] = np.asarray(data["xrd_counts"], dtype=float)
    if "microscope_image" in data:
        image = np.asarray(data["microscope_image"])
        measured["image"] = image.reshape(image.shape[-2:])
        measured["pixel_size_nm"] = float(data["microscope_pixel_size_nm"])
    if "magnetometer_polarisation_t" in data:
        measured["polarisation_t"] = float(data["magnetometer_polarisation_t"])
        measured["polarisation_t_std"] = float(data["magnetometer_polarisation_t_std"])
    return Measurements(**measured)


def instrument_time_s(data: Mapping[str, Any]) -> float:
    """Instrument seconds one experiment took: the sum of the devices' ``*_time_s`` readings."""
    return float(sum(float(value) for key, value in data.items() if key.endswith("_time_s")))


def role_named(data: Mapping[str, Any], start: Mapping[str, Any]) -> dict[str, Any]:
    """An event's data keyed as the analysis reads it.

    A beamline's detector keeps its own data keys in the run; the start document's
    ``role_keys`` (device key -> the key its role's analysis reads, e.g. ``sem_image`` ->
    ``microscope_image``) renames them.
    """
    role_keys = start.get("role_keys") or {}
    return {role_keys.get(key, key): value for key, value in data.items()}


def read_primary(run: Any, *, measurements: bool = True) -> dict[str, Any]:
    """The one event of a ``synthesize_and_measure`` run, read back from the catalog and
    keyed as the analysis reads it (:func:`role_named`).

    Every reading is read (plug-in instruments' included); with ``measurements=False`` only
    the instrument times (no pattern, no image): enough for :func:`instrument_time_s`, and
    far cheaper.
    """
    primary = run["primary"]
    start = run.metadata["start"]
    named = role_named({key: key for key in primary if not key.startswith("ts_")}, start)
    keys = {name: key for name, key in named.items() if measurements or name.endswith("_time_s")}
    return {name: np.asarray(primary[key].read())[0] for name, key in keys.items()}


@dataclass(frozen=True)
class RawRun:
    """A finished raw experiment run as the analysis needs it: its start document and the data
    of its one ``primary`` event, images filled in.

    The data is keyed as the analysis reads it (see :func:`role_named`).
    """

    start: Mapping[str, Any]
    data: Mapping[str, Any]

    @classmethod
    def from_documents(cls, documents: Iterable[tuple[str, Mapping[str, Any]]]) -> RawRun:
        """The run from its documents, once it has ended (its image files are closed).

        Images arrive as Resource/Datum references; they are filled from their files with the
        area-detector handlers. Events may come one by one or as pages.
        """
        start: Mapping[str, Any] = {}
        primary = None
        with Filler({"AD_HDF5": AreaDetectorHDF5Handler}, inplace=False) as filler:
            for name, doc in documents:
                name, doc = filler(name, doc)
                if name == "start":
                    start = doc
                elif name == "descriptor" and doc["name"] == "primary":
                    primary = doc["uid"]
                elif name == "event" and doc["descriptor"] == primary:
                    return cls(start, role_named(doc["data"], start))
                elif name == "event_page" and doc["descriptor"] == primary:
                    event = next(unpack_event_page(cast(EventPage, doc)))
                    return cls(start, role_named(event["data"], start))
        raise ValueError(f"run {start.get('uid')} has no primary event")

    @classmethod
    def from_catalog(cls, run: Any) -> RawRun:
        """The run read back from the catalog (a tiled ``BlueskyRun``)."""
        return cls(run.metadata["start"], read_primary(run))

    @property
    def instrument_time_s(self) -> float:
        """Instrument seconds the experiment took (see :func:`instrument_time_s`)."""
        return instrument_time_s(self.data)


@dataclass(frozen=True)
class AnalysedRun:
    """One raw run analysed: its features, or the ``on_fault`` kind and reason they are unfit."""

    raw: RawRun
    features: dict[str, float] = field(default_factory=dict)
    problem_kind: str | None = None
    reason: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)

    def documents(self) -> Iterator[tuple[str, Mapping[str, Any]]]:
        """The analysis run that records this: an event of the features, or no event and a
        failed stop with the problem's kind (``problem_kind``) and reason.

        The analysis run carries the raw run's uid, campaign id, iteration and proposal
        ``_id``, so raw data, proposal and features are joined by one key in the catalog.
        """
        metadata = {
            PURPOSE: Purpose.ANALYSIS,
            "analysis_version": ANALYSIS_VERSION,
            **self.settings,
            **links_to(self.raw.start),
        }
        if self.problem_kind is not None:
            bundle = compose_run(metadata={**metadata, PROBLEM_KIND: self.problem_kind})
            yield "start", bundle.start_doc
            yield "stop", bundle.compose_stop(exit_status=FAIL, reason=self.reason)
            return
        bundle = compose_run(metadata=metadata)
        yield "start", bundle.start_doc
        data_keys: dict[str, Any] = {
            name: {"source": "sdl.analysis", "dtype": "number", "shape": []}
            for name in self.features
        }
        descriptor = bundle.compose_descriptor(name=FEATURES_STREAM, data_keys=data_keys)
        yield "descriptor", descriptor.descriptor_doc
        now = time.time()
        yield (
            "event",
            descriptor.compose_event(
                data=dict(self.features), timestamps=dict.fromkeys(self.features, now)
            ),
        )
        yield "stop", bundle.compose_stop()


class BadData(ValueError):
    """Raw data that must not be analysed (NaN, empty, saturated, blank), with the reasons."""

    def __init__(self, problems: Sequence[DataProblem]) -> None:
        super().__init__("; ".join(problem.message for problem in problems))
        self.problems = tuple(problems)


class SampleAnalysis:
    """Turns one sample's measurements into named features with uncertainties (``*_std``).

    Parameters
    ----------
    instruments
        Which measurements to expect (``xrd``, ``microscope``, ``magnetometer``).
    phases
        Crystalline phases the diffraction analysis looks for (see :func:`fit_pattern`).
    zero_tolerance_deg
        A fitted 2-theta zero beyond this means the diffractometer drifted (``drift``).
    segmenter
        Labels grains in a micrograph (default: the classical watershed); e.g. the U-Net's
        :func:`~sdl.analysis.microscopy.unet.segment_grains_unet` bound to its model.
    classifier
        A trained XRD phase classifier whose presence probabilities and fractions are
        recorded beside the whole-pattern fit's (``<phase>_probability``,
        ``<phase>_cnn_fraction``).
    xrd_calibration
        The diffractometer's profile and zero as calibrated on a standard: every pattern is
        fitted with it, drift is the fitted zero's departure from it, and each analysis run
        records it (``xrd_instrument``). None: the analysis's default instrument.
    xrd_phases
        The campaign's own phases (from CIF files): every pattern is fitted for them instead
        of ``phases``, the features are keyed by their names, and each analysis run records
        them (``xrd_phases``, the CIFs' text included). None: ``phases``.
    """

    def __init__(
        self,
        instruments: Sequence[str],
        phases: Sequence[str],
        *,
        zero_tolerance_deg: float,
        segmenter: Callable[[np.ndarray], np.ndarray] | None = None,
        classifier: XRDClassifier | None = None,
        xrd_calibration: InstrumentCalibration | None = None,
        xrd_phases: XRDPhases | None = None,
    ) -> None:
        self.instruments = tuple(instruments)
        self.xrd_calibration = xrd_calibration
        self.xrd_phases = xrd_phases
        self.plugins = plugin_instruments(self.instruments)
        self.phases = xrd_phases.names if xrd_phases else tuple(phases)
        self.zero_tolerance_deg = zero_tolerance_deg
        self.segmenter = segmenter
        self.classifier = classifier

    def analyse(self, raw: RawRun) -> AnalysedRun:
        """The features of one raw run, or the ``on_fault`` kind and reason they are unfit.

        Unfit: bad raw data (``corrupt_data``), an analysis that fails (``analysis_error``) or
        a fitted 2-theta zero beyond ``zero_tolerance_deg`` (``drift``). Plug-in
        instruments' readings go to their own analysis steps.
        """
        try:
            features = self.features(measurements_from_data(raw.data))
            for plugin in self.plugins:
                features.update(plugin.features_of(raw.data))
        except BadData as error:
            return AnalysedRun(raw, problem_kind=error.problems[0].kind, reason=str(error))
        except ValueError as error:
            return AnalysedRun(
                raw, problem_kind="analysis_error", reason=str(error), settings=self.settings
            )
        zero_shift_deg = features.get("xrd_zero_shift_deg", self._calibrated_zero_deg)
        drift = calibration_problems(
            zero_shift_deg - self._calibrated_zero_deg, self.zero_tolerance_deg
        )
        if drift:
            return AnalysedRun(
                raw, problem_kind=drift[0].kind, reason=drift[0].message, settings=self.settings
            )
        return AnalysedRun(raw, features, settings=self.settings)

    @property
    def _calibrated_zero_deg(self) -> float:
        return self.xrd_calibration.zero_shift_deg if self.xrd_calibration else 0.0

    @property
    def settings(self) -> dict[str, Any]:
        """What an analysis run records of how it analysed (the XRD calibration and the
        campaign's own phases, if any)."""
        settings: dict[str, Any] = {}
        if self.xrd_calibration is not None:
            settings["xrd_instrument"] = self.xrd_calibration.as_dict()
        if self.xrd_phases is not None:
            settings["xrd_phases"] = self.xrd_phases.as_dict()
        return settings

    def features(self, measurements: Measurements) -> dict[str, float]:
        """Named features of one sample; :class:`BadData` if the raw data is unfit."""
        self.check(measurements)
        features: dict[str, float] = {}
        if "xrd" in self.instruments:
            two_theta_deg, counts = measurements.pattern()
            fit = fit_pattern(
                two_theta_deg, counts, self.xrd_phases or self.phases, self.xrd_calibration
            )
            features.update(fit.features)
            if self.classifier is not None:
                features.update(self._classify(self.classifier, two_theta_deg, counts))
        if "microscope" in self.instruments:
            image, pixel_size_nm = measurements.micrograph()
            grains = analyse_micrograph(image, pixel_size_nm, segmenter=self.segmenter)
            features.update(grains.as_dict())
        if "magnetometer" in self.instruments:
            (features["saturation_polarisation_t"], features["saturation_polarisation_t_std"]) = (
                measurements.polarisation()
            )
        if {"xrd", "microscope"} <= set(self.instruments) and has_photoactivity(self.phases):
            phases = (AMORPHOUS, *self.phases)
            value, std = photoactive_area_m2_g(
                {p: features[f"{p}_fraction"] for p in phases},
                {p: features[f"{p}_fraction_std"] for p in phases},
                features["grain_size_nm"],
                features["grain_size_nm_std"],
            )
            features["photoactive_area_m2_g"] = value
            features["photoactive_area_m2_g_std"] = std
        return {name: float(value) for name, value in features.items()}

    @staticmethod
    def _classify(
        classifier: XRDClassifier, two_theta_deg: np.ndarray, counts: np.ndarray
    ) -> dict[str, float]:
        prediction = classifier.predict(two_theta_deg, counts)
        features = {}
        for index, component in enumerate(prediction.components):
            features[f"{component}_probability"] = float(prediction.probability[0, index])
            features[f"{component}_cnn_fraction"] = float(prediction.fractions[0, index])
        return features

    def check(self, measurements: Measurements) -> None:
        """Raise :class:`BadData` unless every expected measurement is there and sound."""
        problems: list[DataProblem] = []
        if "xrd" in self.instruments:
            problems += pattern_problems(measurements.pattern()[1])
        if "microscope" in self.instruments:
            problems += image_problems(measurements.micrograph()[0])
        if "magnetometer" in self.instruments:
            measurements.polarisation()
        if problems:
            raise BadData(problems)


@dataclass(frozen=True, eq=False)
class PatternFit:
    """What the whole-pattern fit found: phase fractions, every feature, the fitted curve."""

    phase_fractions: dict[str, float]
    features: dict[str, float]
    fitted_pattern: np.ndarray


def fit_pattern(
    two_theta_deg: np.ndarray,
    counts: np.ndarray,
    phases: Sequence[str] | XRDPhases,
    calibration: InstrumentCalibration | None = None,
) -> PatternFit:
    """The pipeline's whole-pattern fit of one powder pattern for a system's ``phases`` (or
    a campaign's own, :class:`~sdl.analysis.xrd.user_phases.XRDPhases`), with the
    diffractometer's ``calibration`` (None: the analysis's default instrument).

    Line compounds (every phase at a fixed lattice: the TiO2 polymorphs) are fitted with
    fixed lattices and the amorphous hump (:func:`~sdl.analysis.xrd.whole_pattern.analyse_pattern`).
    Solid solutions are fitted against their reference structures with each phase's
    lattice refined within its range, since a composition spread's peaks shift with
    composition (:func:`~sdl.analysis.xrd.quantify.quantify_phases`); absent phases have
    size and strain NaN. A campaign's own phases are line compounds, fitted with the
    amorphous component only if it asks for one.
    """
    shape = calibration.shape if calibration else ProfileShape()
    zero_shift_deg = calibration.zero_shift_deg if calibration else 0.0
    if isinstance(phases, XRDPhases):
        fit = analyse_pattern(
            two_theta_deg,
            counts,
            phases.references,
            phases.amorphous,
            shape=shape,
            zero_shift_deg=zero_shift_deg,
        )
        return PatternFit(fit.phase_fractions, fit.as_dict(), fit.fitted_pattern)
    phases = tuple(phases)
    max_lattice_strain = lattice_range(phases)
    if max_lattice_strain == 0:
        fit = analyse_pattern(
            two_theta_deg, counts, phases, shape=shape, zero_shift_deg=zero_shift_deg
        )
        return PatternFit(fit.phase_fractions, fit.as_dict(), fit.fitted_pattern)
    quantified = quantify_phases(
        two_theta_deg,
        counts,
        _library(phases),
        shape=shape,
        max_lattice_strain=max_lattice_strain,
    )
    return PatternFit(
        quantified.weight_fractions, _solid_solution_features(quantified), quantified.fitted_pattern
    )


@cache
def _library(phases: tuple[str, ...]) -> dict[str, ReferencePhase]:
    """Reference reflections of these phases, computed once per process."""
    return library_from_structures({phase: get_structure(phase) for phase in phases})


def _solid_solution_features(fit: PhaseQuantification) -> dict[str, float]:
    features: dict[str, float] = {}
    for phase, fraction in fit.weight_fractions.items():
        features[f"{phase}_fraction"] = fraction
        features[f"{phase}_fraction_std"] = fit.weight_fractions_std[phase]
        features[f"{phase}_crystallite_size_nm"] = fit.crystallite_size_nm[phase]
        features[f"{phase}_crystallite_size_nm_std"] = fit.crystallite_size_nm_std[phase]
        features[f"{phase}_lattice_strain"] = fit.lattice_strain[phase]
    features["rwp"] = fit.rwp
    features["xrd_zero_shift_deg"] = fit.zero_shift_deg
    return features
