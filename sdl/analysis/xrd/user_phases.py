"""A campaign's own crystalline phases, from CIF files, for every whole-pattern fit it makes.

A campaign file names its phases (``analysis.xrd_phases``: a name, a CIF file and a
calibration factor each) and whether an amorphous component is fitted
(``analysis.xrd_amorphous``). :class:`XRDPhases` holds their reflections
(:class:`~sdl.analysis.xrd.reference.ReferencePhase`), computed once per process, and the
CIFs' text, so a campaign's records carry the structures it was analysed with and a report
can redraw a fit after the files are gone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from sdl.analysis.xrd.reference import ReferencePhase, structure_from_cif_text


@dataclass(frozen=True)
class UserPhase:
    """One phase as a campaign names it: its name, its structure's CIF text, its factor."""

    name: str
    cif_text: str
    calibration_factor: float = 1.0
    source: str = ""

    @classmethod
    def from_file(cls, name: str, path: Path | str, calibration_factor: float = 1.0) -> UserPhase:
        """The phase in a CIF file; ValueError (naming the file) if it cannot be read."""
        try:
            text = Path(path).read_text()
        except (OSError, UnicodeDecodeError) as error:
            raise ValueError(f"cannot read {path}: {error}") from None
        phase = cls(name, text, calibration_factor, str(path))
        phase.reference()  # parse now: a bad file is refused where it is named
        return phase

    def reference(self) -> ReferencePhase:
        """The phase's reflections, computed once per process (see :func:`_reference`)."""
        return _reference(self.name, self.cif_text, self.calibration_factor, self.source)

    def as_dict(self) -> dict[str, Any]:
        """What a campaign's records keep of the phase (the CIF's text included)."""
        return {
            "name": self.name,
            "calibration_factor": self.calibration_factor,
            "cif_file": self.source,
            "cif_sha256": hashlib.sha256(self.cif_text.encode()).hexdigest(),
            "cif": self.cif_text,
        }


@cache
def _reference(name: str, cif_text: str, calibration_factor: float, source: str) -> ReferencePhase:
    """One :class:`ReferencePhase` per phase and process: its profile tables are then shared
    by every fit (the analysis's, the dashboard's, the report's)."""
    structure = structure_from_cif_text(cif_text, source or f"the CIF of {name}")
    return ReferencePhase.from_structure(name, structure, calibration_factor=calibration_factor)


@dataclass(frozen=True)
class XRDPhases:
    """The phases every XRD fit of a campaign looks for, instead of its system's library.

    Attributes
    ----------
    phases
        The crystalline phases, in the campaign file's order.
    amorphous
        Also fit an amorphous component: the phases' nanocrystalline limit
        (:func:`~sdl.analysis.xrd.reference.nanocrystalline_limit`).
    """

    phases: tuple[UserPhase, ...]
    amorphous: bool = False

    def __post_init__(self) -> None:
        names = [phase.name for phase in self.phases]
        if not names:
            raise ValueError("xrd_phases needs at least one phase")
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"phase names must not repeat: {repeated}")

    @property
    def names(self) -> tuple[str, ...]:
        """The crystalline phases' names, which the features are keyed by."""
        return tuple(phase.name for phase in self.phases)

    @property
    def references(self) -> tuple[ReferencePhase, ...]:
        """The phases' reflections with their calibration factors."""
        return tuple(phase.reference() for phase in self.phases)

    def as_dict(self) -> dict[str, Any]:
        """What an analysis run records (``xrd_phases``); :meth:`from_dict` reads it back."""
        return {
            "phases": [phase.as_dict() for phase in self.phases],
            "amorphous": self.amorphous,
        }

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> XRDPhases:
        """The phases a run recorded with :meth:`as_dict`."""
        return cls(
            tuple(
                UserPhase(
                    str(entry["name"]),
                    str(entry["cif"]),
                    float(entry["calibration_factor"]),
                    str(entry.get("cif_file", "")),
                )
                for entry in record["phases"]
            ),
            bool(record["amorphous"]),
        )

    @classmethod
    def from_files(
        cls, entries: Sequence[tuple[str, Path | str, float]], amorphous: bool = False
    ) -> XRDPhases:
        """The phases in CIF files, given as ``(name, path, calibration factor)``."""
        return cls(tuple(UserPhase.from_file(*entry) for entry in entries), amorphous)
