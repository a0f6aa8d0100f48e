"""The map of docs/architecture.md holds: every import between our packages runs one way.

Each module's imports (at the top, inside functions, under ``TYPE_CHECKING``) are read with
:mod:`ast`, never executed. A layer is a top-level package, or a subpackage of ``sdl``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("physics", "simulators", "devices", "plans", "agents", "sdl")

_LOW = {"physics", "simulators", "devices", "plans", "agents"}
_SDL_BELOW_LAB = {"sdl.plugins", "sdl.records", "sdl.analysis", "sdl.campaign"}
_SDL = {*_SDL_BELOW_LAB, "sdl.lab", "sdl.loop", "sdl.views"}

#: The layers each layer may import, besides itself (docs/architecture.md, "Layers").
ALLOWED: dict[str, set[str]] = {
    "physics": set(),
    "simulators": {"physics"},
    "devices": {"physics", "simulators"},
    "plans": {"physics", "simulators", "devices"},
    "agents": set(),
    "sdl": set(),
    "sdl.plugins": set(),
    "sdl.records": set(),
    "sdl.analysis": {"physics", "sdl.plugins", "sdl.records"},
    "sdl.campaign": {
        "physics",
        "simulators",
        "devices",
        "agents",
        "sdl.plugins",
        "sdl.records",
        "sdl.analysis",
    },
    "sdl.lab": {"physics", "simulators", "devices", "plans", *_SDL_BELOW_LAB},
    "sdl.loop": {"physics", "devices", *_SDL_BELOW_LAB, "sdl.lab"},
    "sdl.views": {"physics", *_SDL_BELOW_LAB},
    "sdl.training": {"physics", "simulators", "agents", "sdl.plugins", "sdl.analysis"},
    "sdl.facility": {"physics", "plans"} | _SDL,
    "sdl.cli": _LOW | _SDL | {"sdl.facility", "sdl.training"},
}

#: Imports against the order, tolerated knowingly: (module, imported module).
KNOWN_EXCEPTIONS = {
    # The score's reference reads a simulated sample's ground truth (a type annotation only).
    ("sdl.analysis.truth", "simulators.sample"),
}


def layer(module: str) -> str:
    """The layer of a dotted module name: its package, or ``sdl.<subpackage>``."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "sdl" and len(parts) > 1 else parts[0]


def project_modules() -> dict[str, Path]:
    """Every module of the project's packages, by dotted name."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported_modules(module: str, path: Path) -> set[str]:
    """The dotted names ``module`` imports, ``from a import b`` counted as ``a.b``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    imported = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            imported.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in imported if name.split(".")[0] in PACKAGES}


def test_every_layer_is_on_the_map() -> None:
    unmapped = {layer(module) for module in project_modules()} - set(ALLOWED)
    assert not unmapped, f"add these to ALLOWED and to docs/architecture.md: {sorted(unmapped)}"


def test_imports_run_one_way() -> None:
    violations = []
    for module, path in project_modules().items():
        for name in sorted(imported_modules(module, path)):
            own, other = layer(module), layer(name)
            if other == own or other in ALLOWED.get(own, set()):
                continue
            if any(
                module == known and name.startswith(target) for known, target in KNOWN_EXCEPTIONS
            ):
                continue
            violations.append(f"{module} imports {name}: {own} may not import {other}")
    assert not violations, "imports against the layers:\n" + "\n".join(violations)


def test_known_exceptions_are_still_there() -> None:
    imports = {module: imported_modules(module, path) for module, path in project_modules().items()}
    gone = [
        (module, target)
        for module, target in KNOWN_EXCEPTIONS
        if not any(name.startswith(target) for name in imports.get(module, ()))
    ]
    assert not gone, f"fixed: remove from KNOWN_EXCEPTIONS: {gone}"
