"""An earlier commit of this repository, checked out beside it for a before/after benchmark.

The tree is a temporary ``git worktree``, run with this Python and ``PYTHONPATH`` pointing at
it (the installed packages stay the same); it is removed afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def checked_out(commit: str) -> Iterator[Path]:
    """The repository at ``commit``, in a temporary folder for the duration of the block."""
    with tempfile.TemporaryDirectory(prefix="sdl-before-") as scratch:
        tree = Path(scratch) / "tree"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(tree), commit],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        try:
            yield tree
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=True
            )


def results_at(commit: str, script: str | Path, args: Sequence[str]) -> dict:
    """What ``script`` (this tree's copy) writes to ``--json`` when it runs with ``args`` on
    the packages of ``commit``: the "before" column of a benchmark, measured in the same run."""
    with checked_out(commit) as tree, tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "before.json"
        subprocess.run(
            [sys.executable, str(script), *args, "--json", str(out)],
            env={**os.environ, "PYTHONPATH": str(tree)},
            check=True,
        )
        return json.loads(out.read_text())
