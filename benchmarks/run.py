"""The default benchmark (`make bench`): tiny teacher vs tiny student, side by side, on the CPU.

Runs ``lipforcing bench --preset tiny --mode both`` (the paper's protocol at tiny scale: an
81-frame 50-step CFG teacher clip against a 20-chunk student stream, one warm-up, median of 5
runs, teacher and student runs alternating so both see the same load on a shared CPU) and
writes the JSON to ``benchmarks/results/``. ``--quick`` takes 2 runs of a shorter
stream (about a minute); extra arguments go to ``lipforcing bench`` (e.g. ``--device cuda
--preset wan-1.3b --dtype bf16``). Figures go into ``benchmarks/RESULTS.md`` by hand, with
the device, commit, command and date the JSON records.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lipforcing.cli.main import main as lipforcing

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 runs, 8-chunk stream")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", default="1", help="torch CPU threads (shared machine: 1)")
    args, extra = parser.parse_known_args(argv)
    runs, chunks = (2, 8) if args.quick else (5, 20)
    name = f"{args.preset}-both-{args.device.replace(':', '')}{'-quick' if args.quick else ''}"
    out = RESULTS / f"{name}.json"
    command = [
        "bench",
        "--preset",
        args.preset,
        "--device",
        args.device,
        "--mode",
        "both",
        "--runs",
        str(runs),
        "--warmup",
        "1",
        "--chunks",
        str(chunks),
        *(["--interleave"] if args.device == "cpu" else []),
        "--threads",
        args.threads,
        "--out",
        str(out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out),
        *extra,
    ]
    print("lipforcing " + " ".join(command), flush=True)
    code = lipforcing(command)
    if code == 0:
        print(f"wrote {out}")
    return code


if __name__ == "__main__":
    sys.exit(main())
