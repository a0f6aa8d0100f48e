"""What a campaign's console shows: its own progress and faults, not the libraries' chatter."""

from __future__ import annotations

import logging
import warnings


def quiet_libraries() -> None:
    """Silence what tiled and bluesky say on every run that a person need not read."""
    # tiled's in-process client warns about its own test-client transport on every run.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    # A failed attempt is reported once, by the fault policy; not again as a traceback.
    logging.getLogger("bluesky").setLevel(logging.CRITICAL)
