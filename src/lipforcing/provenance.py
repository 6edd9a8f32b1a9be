"""Where a measurement or an artefact comes from: commit, date, machine, torch and threads.

Used by the benchmarks (``lipforcing bench``, ``benchmarks/``) and by the avatar's card and
reports. The commit is marked ``-dirty`` when the given code paths have uncommitted changes.
"""

from __future__ import annotations

import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout holding src/lipforcing

MEASURED = tuple(  # the code a benchmark runs: uncommitted changes here mark the commit "-dirty"
    f"src/lipforcing/{part}"
    for part in (
        "bench",
        "models",
        "diffusion",
        "codecs",
        "data",
        "media",
        "streaming",
        "config.py",
        "cli/bench.py",
    )
)
AVATAR_CODE = MEASURED + tuple(  # ... and what trains and scores a personal avatar
    f"src/lipforcing/{part}" for part in ("avatar", "distill", "evaluation")
)


def _git(*cmd: str) -> str:
    try:
        return subprocess.run(
            ["git", *cmd], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def provenance(paths: tuple[str, ...] = MEASURED) -> dict:
    """Commit (``-dirty`` when ``paths`` have uncommitted changes), date and machine."""
    import torch

    from lipforcing.streaming.options import cpu_threads

    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = bool(_git("status", "--porcelain", "--", *paths))
    return {
        "commit": commit + ("-dirty" if dirty else ""),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": platform.node(),
        "cpu": cpu_name(),
        "torch": torch.__version__,
        "threads": cpu_threads(),  # the CPU threads given (--threads, else torch's default)
        "torch_threads": torch.get_num_threads(),  # intra-op (1 with stream threads)
    }


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


__all__ = ["MEASURED", "AVATAR_CODE", "cpu_name", "provenance"]
