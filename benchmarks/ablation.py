"""Student speed-ups one by one, side by side in one process (ratios on a shared CPU).

Runs :func:`lipforcing.bench.ablation.ablate` on the tiny preset (default variants: the plain
path, then each exact speed-up added, then compile / SDPA math / bf16 on top of the default),
prints a markdown table for ``benchmarks/RESULTS.md`` and writes the JSON to
``benchmarks/results/ablation-<preset>-<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from lipforcing.bench.ablation import VARIANT_SETS, ablate, markdown
from lipforcing.bench.harness import BenchOptions
from lipforcing.cli.bench import provenance

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved runs per variant")
    parser.add_argument("--chunks", type=int, default=8, help="chunks per stream")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--set", default="speedups", choices=sorted(VARIANT_SETS))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    base = BenchOptions(preset=args.preset, device=args.device, chunks=args.chunks, warmup=1)
    result = ablate(base, VARIANT_SETS[args.set], rounds=args.rounds, progress=True)
    table = markdown(result)
    print(table)
    meta = provenance()
    meta["command"] = "python benchmarks/ablation.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    RESULTS.mkdir(exist_ok=True)
    suffix = "" if args.set == "speedups" else f"-{args.set}"
    out = RESULTS / f"ablation{suffix}-{args.preset}-{args.device.replace(':', '')}.json"
    out.write_text(json.dumps({**meta, "variants": result, "table": table}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
