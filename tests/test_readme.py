"""README promises exactly two set-up-and-go commands, and CI runs the test one."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent


def _readme_commands() -> list[str]:
    section = ROOT.joinpath("README.md").read_text().split("## Set up and go")[1].split("\n## ")[0]
    return re.findall(r"```bash\n(.+?)\n```", section, flags=re.S)


def test_readme_gives_exactly_two_commands_pinning_cpu_torch():
    commands = _readme_commands()
    assert len(commands) == 2
    assert all('"torch==2.13.0"' in command for command in commands)
    assert "sdl run examples/" in commands[0] and "pytest" in commands[1]


def test_ci_runs_the_readme_test_command():
    assert _readme_commands()[1] in ROOT.joinpath(".ci", "run").read_text()
