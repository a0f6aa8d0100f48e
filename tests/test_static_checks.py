"""The code passes the project's static checks (settings in pyproject.toml): ruff's lint and
format on the whole repository, mypy on the packages."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ["sdl", "agents", "devices", "simulators", "plans"]


def _run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *command], cwd=REPO, capture_output=True, text=True
    )


@pytest.fixture(scope="module", autouse=True)
def _tools():
    pytest.importorskip("ruff", reason="ruff is in the [test] extra")
    pytest.importorskip("mypy", reason="mypy is in the [test] extra")


def test_ruff_finds_no_lint_errors():
    checked = _run("ruff", "check", "--no-cache", ".")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_ruff_would_not_reformat_any_file():
    checked = _run("ruff", "format", "--check", "--no-cache", ".")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_mypy_finds_no_errors_in_the_packages(tmp_path):
    checked = _run("mypy", "--cache-dir", str(tmp_path / "mypy-cache"), *PACKAGES)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Success: no issues found" in checked.stdout
