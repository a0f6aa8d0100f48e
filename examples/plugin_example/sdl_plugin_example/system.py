"""The perovskite film as an sdl materials system, registered under ``perovskite_film``."""

from __future__ import annotations

from sdl.campaign.systems import MaterialsSystem

from sdl_plugin_example.film import FILM_CONDITION_LIMITS

PEROVSKITE_FILM = MaterialsSystem(
    name="perovskite_film",
    description="MAPb(Br_x I_(1-x))3 thin films by spin coating and annealing: band gap set by "
    "the bromide fraction, thickness by the spin speed, order by the anneal",
    model="sdl_plugin_example.film:PerovskiteFilm",
    condition_limits=FILM_CONDITION_LIMITS,
    phases=(),
)
