"""Start-up of `lipforcing sync` on a real clip: cold (first run) against warm, several runs each.

Cold: the package's compiled bytecode is removed before the run (``__pycache__`` under
``src/lipforcing``), so the process imports, compiles and initialises everything as on a first
run after installation (the OS file cache is not dropped: that needs root on a shared
machine). Warm: the same command again. Each run is a separate process; its wall time and the
first chunk's compute time the command prints are recorded, and medians are reported.

    python benchmarks/startup.py --video ../shared/data/clips/r3dp_May_5s.mp4 --runs 3
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def clear_bytecode() -> None:
    for cache in (ROOT / "src" / "lipforcing").rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)


def one_run(video: str, audio: str, out: Path, cold: bool) -> dict:
    if cold:
        clear_bytecode()
    cmd = [sys.executable, "-m", "lipforcing.cli.main", "sync", "--video", video]
    cmd += ["--audio", audio, "--out", str(out), "--device", "cpu"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"sync failed: {proc.stderr.strip()[-500:]}")
    first = re.search(r"first chunk (\d+) ms", proc.stdout)
    return {"wall_s": wall, "first_chunk_ms": int(first.group(1)) if first else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--video", default="../shared/data/clips/r3dp_May_5s.mp4")
    p.add_argument("--audio", default=None, help="default: the video's own soundtrack")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--out", type=Path, default=RESULTS / "startup-sync-cpu.json")
    args = p.parse_args(argv)
    audio = args.audio or args.video
    tmp = Path("/tmp") / "lipforcing-startup.mp4"
    runs = {"cold": [], "warm": []}
    for _ in range(args.runs):  # alternate, so both see the same machine load
        runs["cold"].append(one_run(args.video, audio, tmp, cold=True))
        runs["warm"].append(one_run(args.video, audio, tmp, cold=False))
    result = {"video": args.video, "audio": audio, "runs": runs}
    for kind, rs in runs.items():
        result[f"{kind}_wall_s_median"] = statistics.median(r["wall_s"] for r in rs)
        firsts = [r["first_chunk_ms"] for r in rs if r["first_chunk_ms"] is not None]
        result[f"{kind}_first_chunk_ms_median"] = statistics.median(firsts) if firsts else None
    sys.path.insert(0, str(ROOT / "src"))
    from lipforcing.cli.bench import provenance

    result.update(provenance())
    result["command"] = "python benchmarks/startup.py " + " ".join(argv or sys.argv[1:])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
