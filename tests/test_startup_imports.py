"""`sdl --help` and `sdl validate` start light: none of the heavy libraries is imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent

#: Libraries that take seconds to import and that reading a campaign file does not need.
HEAVY = ("ophyd", "caproto", "torch", "pymatgen", "matplotlib", "bluesky", "tiled")

_REPORT_IMPORTS = """
import contextlib, io, json, sys
from sdl.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        code = main(sys.argv[1:])
    except SystemExit as exit:
        code = exit.code
heavy = sorted({name.split(".")[0] for name in sys.modules} & set(HEAVY))
print(json.dumps({"code": code, "heavy": heavy}))
"""


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["validate", "examples/tio2_bo.yaml"], ["validate", "examples/fegapd_bo.yaml"]],
    ids=" ".join,
)
def test_the_command_line_reads_a_campaign_without_heavy_imports(argv):
    script = _REPORT_IMPORTS.replace("HEAVY", repr(HEAVY))
    done = subprocess.run(
        [sys.executable, "-c", script, *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=True,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"code": 0, "heavy": []}
