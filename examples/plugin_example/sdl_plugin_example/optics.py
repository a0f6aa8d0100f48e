"""Optical absorption of MAPb(Br_x I_(1-x))3 films: band gap, edge and Urbach tail.

Pure functions of photon energy, shared by the synthesis model (the truth) and the simulated
spectrometer (what it sees), so both use one set of constants.

Sources
-------
* Band gap versus bromide fraction: Noh, Im, Heo, Mandal, Seok, Nano Lett. 13 (2013) 1764,
  doi:10.1021/nl400349b, fit to their films: Eg(x) = 1.57 + 0.39 x + 0.33 x^2 eV, i.e. the
  end members 1.57 eV (MAPbI3) and 2.29 eV (MAPbBr3) joined with a bowing parameter of 0.33 eV.
  MAPbBr3 crystals give 2.31 eV (arXiv:1610.01088), consistent with the fit.
* Above the gap, the direct allowed edge alpha(E) = A sqrt(E - Eg) / E (Tauc, Grigorovici,
  Vancu, Phys. Status Solidi 15 (1966) 627), so that (alpha E)^2 is linear in E. The
  prefactor gives alpha ~ 4e4 cm^-1 0.1 eV above the gap and ~ 8e4 cm^-1 at 3.5 eV, the
  10^4-10^5 cm^-1 of MAPbI3 films (De Wolf et al., J. Phys. Chem. Lett. 5 (2014) 1035).
  Excitonic enhancement of the edge (strong in MAPbBr3) is left out.
* Below the gap, the Urbach tail alpha ~ exp(E / Eu) (Urbach, Phys. Rev. 92 (1953) 1324);
  joined to the edge where both values and slopes of ln(alpha) agree, E_t = Eg + Eu / 2.
  A well-ordered MAPbI3 film has Eu = 15 meV (De Wolf et al. 2014).
"""

from __future__ import annotations

import numpy as np

#: Planck constant times the speed of light, eV nm: E = HC_EV_NM / wavelength.
HC_EV_NM = 1239.841984

#: Band gaps of the end members and the bowing parameter, eV (Noh et al. 2013).
BAND_GAP_IODIDE_EV = 1.57
BAND_GAP_BROMIDE_EV = 2.29
BAND_GAP_BOWING_EV = 0.33

#: Prefactor of the direct allowed edge, cm^-1 eV^(1/2) (alpha = A sqrt(E - Eg) / E).
EDGE_PREFACTOR_PER_CM = 2.0e5

#: Urbach energy of a well-ordered film, meV (De Wolf et al. 2014).
URBACH_ENERGY_ORDERED_MEV = 15.0


def band_gap_ev(bromide_fraction: float | np.ndarray) -> float | np.ndarray:
    """Band gap of MAPb(Br_x I_(1-x))3 at bromide fraction x (0 to 1), eV.

    Vegard's line between the end members, bowed down by b x (1 - x):
    Eg(x) = (1 - x) Eg_I + x Eg_Br - b x (1 - x).
    """
    x = np.asarray(bromide_fraction, dtype=float)
    if np.any((x < 0) | (x > 1)):
        raise ValueError(f"bromide_fraction must lie in [0, 1] mol/mol, got {bromide_fraction}")
    gap = (1 - x) * BAND_GAP_IODIDE_EV + x * BAND_GAP_BROMIDE_EV - BAND_GAP_BOWING_EV * x * (1 - x)
    return float(gap) if gap.ndim == 0 else gap


def absorption_coefficient_per_cm(
    energy_ev: np.ndarray, band_gap_ev: float, urbach_energy_mev: float
) -> np.ndarray:
    """Absorption coefficient alpha(E) of the perovskite, cm^-1.

    Parameters
    ----------
    energy_ev
        Photon energies, eV, shape ``n``.
    band_gap_ev
        Direct band gap Eg, eV: where the extrapolated Tauc line (alpha E)^2 reaches zero.
    urbach_energy_mev
        Width Eu of the exponential tail below the edge, meV.

    Returns
    -------
    Absorption coefficient, cm^-1, shape ``n``: the direct edge above E_t = Eg + Eu / 2, the
    Urbach tail below it, continuous with a continuous slope of ln(alpha) (to within Eu / E).
    """
    energy_ev = np.asarray(energy_ev, dtype=float)
    if urbach_energy_mev <= 0:
        raise ValueError(f"urbach_energy_mev must be > 0, got {urbach_energy_mev}")
    urbach_ev = urbach_energy_mev * 1e-3
    joint_ev = band_gap_ev + urbach_ev / 2
    alpha_joint = EDGE_PREFACTOR_PER_CM * np.sqrt(urbach_ev / 2) / joint_ev
    edge = EDGE_PREFACTOR_PER_CM * np.sqrt(np.clip(energy_ev - band_gap_ev, 0, None)) / energy_ev
    tail = alpha_joint * np.exp(np.clip(energy_ev - joint_ev, None, 0) / urbach_ev)
    return np.where(energy_ev >= joint_ev, edge, tail)
