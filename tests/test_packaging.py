"""pyproject.toml against what the code imports and what the integrations' packages require."""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, metadata, packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS = PROJECT["optional-dependencies"]
USER_EXTRAS = {name: reqs for name, reqs in EXTRAS.items() if name != "test"}
# imported modules that arrive with a declared package rather than declared themselves
COMES_WITH = {"starlette": "fastapi"}


def requirements(reqs) -> list[Requirement]:
    return [Requirement(r) for r in reqs if not r.startswith("lipforcing")]


def declared() -> set[str]:
    reqs = PROJECT["dependencies"] + [r for rs in EXTRAS.values() for r in rs]
    return {canonicalize_name(r.name) for r in requirements(reqs)}


def imported_modules() -> set[str]:
    """Top-level third-party modules the package imports by name."""
    found = set()
    for path in (ROOT / "src" / "lipforcing").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m != "lipforcing"}


def test_every_imported_package_is_declared():
    providers = packages_distributions()
    names = declared()
    assert "soxr" in names
    for module in sorted(imported_modules()):
        if module in COMES_WITH:
            assert COMES_WITH[module] in names
            continue
        dists = {canonicalize_name(d) for d in providers.get(module, [])}
        if dists:  # installed here: one of its distributions must be declared
            assert dists & names, f"{module} is imported but {sorted(dists)} is not declared"


def test_declared_but_unused_packages_are_gone():
    assert not {"rich", "python-multipart"} & declared()


def test_user_extras_use_ranges_and_the_test_extra_pins_the_tested_versions():
    for name, reqs in USER_EXTRAS.items():
        for r in requirements(reqs):
            assert not any(s.operator == "==" for s in r.specifier), f"[{name}] pins {r}"
    pins = {r.name: r for r in requirements(EXTRAS["test"]) if "==" in str(r.specifier)}
    for name in ("livekit", "pipecat"):
        for r in requirements(EXTRAS[name]):
            pinned = next(iter(pins[r.name].specifier)).version
            assert pinned in r.specifier, f"the tested {r.name}=={pinned} is outside [{name}]"


@pytest.mark.parametrize("dist", ["pipecat-ai", "livekit-agents", "fastapi"])
def test_requires_python_covers_what_the_extras_need(dist):
    try:
        theirs = SpecifierSet(metadata(dist)["Requires-Python"] or "")
    except PackageNotFoundError:
        pytest.skip(f"{dist} is not installed")
    ours = SpecifierSet(PROJECT["requires-python"])
    lowest = next(s.version for s in ours if s.operator == ">=")
    assert lowest in theirs, f"requires-python {ours} admits {lowest}, {dist} needs {theirs}"


def test_license_file_is_the_apache_license():
    text = (ROOT / "LICENSE").read_text()
    assert PROJECT["license"] == "Apache-2.0" and "LICENSE" in PROJECT["license-files"]
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
