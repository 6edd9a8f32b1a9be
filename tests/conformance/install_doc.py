"""The commands of docs/INSTALL.md, as the conformance suite runs them.

Each ```bash block line starting with ``lipforcing`` (or ``torchrun ... -m
lipforcing.cli.main``, the multi-GPU launch of the same command) is a documented command; a
preceding ``# conformance: NAME`` comment names it. :func:`documented` returns them by name with the
release's paths rewritten to the stand-ins' and the size knobs appended.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "INSTALL.md"
LAUNCHED = "lipforcing.cli.main"  # torchrun -m lipforcing.cli.main ARGV == lipforcing ARGV
TRAIN_KNOBS = ["--steps", "1", "--batch-size", "1", "--micro-batch", "1"]
SIZE_KNOBS = {  # the only additions: real options that shrink the work to a CPU's size
    "sync": ["--resolution", "32", "--device", "cpu"],
    "serve": ["--resolution", "32", "--device", "cpu"],
    "preprocess": ["--resolution", "32"],
    "analyze": [
        "--landings",
        "30",
        "--sweep",
        "4.5",
        "--latent-frames",
        "3",
        "--device",
        "cpu",
        "--no-progress",
    ],  # fmt: skip
    "encode-prompt": ["--device", "cpu"],
    "preprocess-train": ["--resolution", "32"],
    "latents": ["--device", "cpu"],
    "stage1": TRAIN_KNOBS,
    "stage2": TRAIN_KNOBS,
    "bench": [
        "--resolution",
        "32",
        "--device",
        "cpu",
        "--runs",
        "1",
        "--chunks",
        "2",
        "--dtype",
        "fp32",
    ],  # fmt: skip
}


def commands(doc: Path = DOC) -> list[tuple[str | None, list[str]]]:
    """(conformance name or None, argv without the program name) of every documented command."""
    out, name, in_bash = [], None, False
    for line in doc.read_text().splitlines():
        if line.startswith("```"):
            in_bash = line.strip() == "```bash"
            continue
        if not in_bash:
            continue
        m = re.match(r"#\s*conformance:\s*(\S+)", line.strip())
        if m:
            name = m.group(1)
        elif line.startswith(("lipforcing ", "torchrun ")):
            words = shlex.split(line.split("  #")[0])
            start = words.index(LAUNCHED) + 1 if words[0] == "torchrun" else 1
            out.append((name, words[start:]))
            name = None
    return out


def documented(name: str, paths: dict[str, str], family: str) -> list[str]:
    """The command tagged ``name`` with release paths mapped through ``paths`` (longest first)."""
    command, *argv = next(a for n, a in commands() if n == name)
    mapped = [command]  # the subcommand itself is never a path (``eval``)
    for arg in argv:
        for old in sorted(paths, key=len, reverse=True):
            if arg == old or arg.startswith(old + "/"):
                arg = paths[old] + arg[len(old) :]
                break
        mapped.append(family if arg in ("wan-14b", "wan-1.3b") else arg)
    return mapped + SIZE_KNOBS.get(name, [])
