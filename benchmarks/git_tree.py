"""An earlier commit of this repository, checked out beside it for a before/after benchmark.

The tree is a temporary ``git worktree``, run with this Python and ``PYTHONPATH`` pointing at
it (the installed packages stay the same); it is removed afterwards.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Iterator
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
