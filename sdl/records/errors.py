"""Errors of the records that a person fixes, reported by the ``sdl`` command in one line.

Apart from :mod:`sdl.records.catalog` so that the command catches them without loading tiled.
"""

from __future__ import annotations


class CatalogError(RuntimeError):
    """A catalog that is missing or cannot be read; the message says which file and why."""


class CampaignLocked(RuntimeError):
    """Another process is running this campaign; the message names it."""
