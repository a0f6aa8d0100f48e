"""Names of the phases a sample can hold, each list named once.

Weight fractions, crystallite sizes and features are keyed by these names.
"""

from __future__ import annotations

#: X-ray amorphous material (no long-range order): a phase with humps instead of lines.
AMORPHOUS = "amorphous"

#: Crystalline TiO2 polymorphs.
TIO2_POLYMORPHS = ("anatase", "brookite", "rutile")

#: Every phase a TiO2 sol-gel synthesis can produce, amorphous first.
TIO2_PHASES = (AMORPHOUS, *TIO2_POLYMORPHS)

#: Crystalline phases of the Fe-Ga-Pd-like composition spread.
FEGAPD_PHASES = ("bcc", "fe3ga_d03", "fe3ga_l12", "fcc", "fepd_l10", "pdga_b20")

#: Standards an instrument's line positions and profile are calibrated on (NIST SRM 660c
#: LaB6, SRM 640f Si): well crystallised, strain-free, with certified lattices.
LINE_PROFILE_STANDARDS = ("LaB6", "Si")

#: Every crystalline phase with a structure in :mod:`physics.structures`.
CRYSTALLINE_PHASES = (*TIO2_POLYMORPHS, *FEGAPD_PHASES, *LINE_PROFILE_STANDARDS)

#: Largest relative change of lattice parameters a phase shows across its homogeneity range:
#: what a pattern fit must allow. The TiO2 polymorphs are line compounds (absent: 0); the
#: Fe-Ga-Pd phases are solid solutions whose lattices follow Vegard's law.
LATTICE_RANGE = dict.fromkeys(FEGAPD_PHASES, 0.012)
