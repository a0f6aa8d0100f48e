"""The packages type-check: mypy (settings in pyproject.toml) finds nothing in them."""

from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api", reason="mypy is in the [test] extra")

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ["sdl", "agents", "devices", "simulators", "plans"]


def test_mypy_finds_no_errors_in_the_packages(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    report, errors, status = mypy_api.run(
        ["--cache-dir", str(tmp_path / "mypy-cache"), *PACKAGES]
    )
    assert status == 0, report + errors
    assert "Success: no issues found" in report
