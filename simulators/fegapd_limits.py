"""What the Fe-Ga-Pd spread's targets can deposit: each knob's safe range and the triangle
that couples them.

Apart from :mod:`simulators.fegapd` (pymatgen, scipy) so that a campaign on the spread is
checked without loading the simulator.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from simulators.tio2 import check_conditions

#: Safe range and unit of each knob; iron is the balance, ``x_fe = 1 - x_ga - x_pd``.
FEGAPD_CONDITION_LIMITS: dict[str, tuple[float, float, str]] = {
    "x_ga": (0.0, 0.55, "mol/mol"),
    "x_pd": (0.0, 0.55, "mol/mol"),
}

#: Least iron the sputter targets deposit (the spread's Fe-poor edge), mol/mol.
MIN_X_FE = 0.40


def composition_from_conditions(conditions: Mapping[str, float]) -> np.ndarray:
    """``(x_fe, x_ga, x_pd)`` of checked conditions; raises outside the spread."""
    checked = check_conditions(conditions, FEGAPD_CONDITION_LIMITS)
    x_fe = 1.0 - checked["x_ga"] - checked["x_pd"]
    if x_fe < MIN_X_FE - 1e-12:
        raise ValueError(
            f"x_ga + x_pd = {checked['x_ga'] + checked['x_pd']:.4f} leaves x_fe = {x_fe:.4f};"
            f" the spread needs x_fe >= {MIN_X_FE} (x_ga + x_pd <= {1 - MIN_X_FE})"
        )
    return np.array([x_fe, checked["x_ga"], checked["x_pd"]])
