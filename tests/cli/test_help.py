"""``--help`` speaks to users (no developer docstrings, defaults shown); a missing optional
package ends in one line naming the extra that installs it."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from lipforcing.cli.main import COMMANDS, build_parser
from lipforcing.extras import EXTRA_OF_MODULE

RST = ("``", ":class:", ":mod:", ":func:", ":meth:", ":attr:", "::\n")
ROOT = Path(__file__).resolve().parents[2]
# A Python that imports lipforcing (and torch) needs ~2 CPU-s; on a starved CPU (a nice-19 run
# beside busy jobs) that took over 120 s of wall clock. Generous, still under pytest's --timeout.
SUBPROCESS_TIMEOUT_S = 600.0


def all_parsers(parser: argparse.ArgumentParser, name: str = "lipforcing"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, child in action.choices.items():
                yield from all_parsers(child, f"{name} {sub}")


def shows_default(action: argparse.Action) -> bool:
    d = action.default
    return bool(action.option_strings) and not (
        d is None or d is False or d == [] or d == "==SUPPRESS=="
    )


def test_every_help_is_plain_text_with_defaults():
    parsers = dict(all_parsers(build_parser()))
    assert {"lipforcing serve", "lipforcing train codec", "lipforcing analyze report"} <= set(
        parsers
    )
    for name, parser in parsers.items():
        text = parser.format_help()
        assert not [m for m in RST if m in text], f"{name} --help shows RST markup"
        assert parser.description, f"{name} has no description"
        for action in parser._actions:
            if not shows_default(action):
                continue
            fmt = parser._get_formatter()
            fmt.add_argument(action)
            line = " ".join(fmt.format_help().split())
            assert "default" in line.lower(), f"{name} {action.option_strings[0]}: {line}"


def test_every_command_has_a_user_description():
    for name, (module, _) in COMMANDS.items():
        text = importlib.import_module(module).DESCRIPTION
        assert len(text) > 40 and not [m for m in RST if m in text], name


def test_help_runs_as_a_command():
    out = subprocess.run(
        [sys.executable, "-m", "lipforcing.cli.main", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=SUBPROCESS_TIMEOUT_S,
    ).stdout
    assert "(default: 127.0.0.1)" in out and "Serve live lip sync" in out


BLOCK = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Block())
"""


def run_without(blocked: set[str], code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCK.format(blocked=blocked) + code],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
    )


def test_serve_without_its_extra_names_the_install_command():
    r = run_without(
        {"fastapi", "uvicorn"},
        "from lipforcing.cli.main import main; raise SystemExit(main(['serve']))",
    )
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "error: this command needs fastapi, not installed: pip install 'lipforcing[serve]'"
    ]


@pytest.mark.parametrize(("module", "extra"), [("livekit", "livekit"), ("pipecat", "pipecat")])
def test_integrations_without_their_extra_name_the_install_command(module, extra):
    code = f"""
from lipforcing.extras import MissingExtra
try:
    import lipforcing.streaming.integrations.{module}
except MissingExtra as e:
    print(e)
"""
    r = run_without({module}, code)
    assert r.returncode == 0, r.stderr
    assert f"pip install 'lipforcing[{extra}]'" in r.stdout and "integration needs" in r.stdout


def test_extras_table_matches_pyproject():
    """Every module the table names is installed by the extra it names (or by a package that
    extra declares, as fastapi brings starlette)."""
    from importlib.metadata import PackageNotFoundError, packages_distributions, requires

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    def names(reqs) -> set[str]:
        return {canonicalize_name(Requirement(r).name) for r in reqs}

    def dependencies(dist: str) -> set[str]:
        try:
            return names(requires(dist) or [])
        except PackageNotFoundError:
            return set()

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    installed = packages_distributions()
    for module, extra in EXTRA_OF_MODULE.items():
        if module not in installed:
            continue  # not installed here
        declared = names(extras[extra])
        reach = declared | {n for d in declared for n in dependencies(d)}
        dists = {canonicalize_name(d) for d in installed[module]}
        assert dists & reach, f"{module} ({dists}) is not installed by [{extra}]"
