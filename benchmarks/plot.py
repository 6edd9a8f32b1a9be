"""Figure of a benchmark result: where each frame's time goes, and the speed-up ablation.

``python benchmarks/plot.py [--result results/tiny-both-cpu.json] [--ablation
results/ablation-tiny-cpu.json] [--out results/tiny-cpu.png]``. Left: milliseconds per output
frame in each stage, teacher against student (log scale). Right: student FPS and TTFF of each
ablation variant.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
STAGES = [
    "encode",
    "denoise",
    "denoise_0",
    "denoise_1",
    "denoise_2",
    "denoise_3",
    "kv_write",
    "decode",
]


def per_frame_ms(phase: dict) -> dict[str, float]:
    """Stage time per output frame, ms (median run's totals / frames)."""
    stages = phase["stages_ms"]
    return {k: stages[k]["total_ms"] / phase["frames"] for k in STAGES if k in stages}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--result", type=Path, default=RESULTS / "tiny-both-cpu.json")
    parser.add_argument("--ablation", type=Path, default=RESULTS / "ablation-tiny-cpu.json")
    parser.add_argument("--out", type=Path, default=RESULTS / "tiny-cpu.png")
    args = parser.parse_args(argv)
    result = json.loads(args.result.read_text())
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5))

    rows = ["encode", "denoising calls", "kv_write", "decode", "total"]
    height = 0.38
    for k, (name, color) in enumerate([("teacher", "tab:orange"), ("student", "tab:blue")]):
        ms = per_frame_ms(result[name])
        values = [
            ms.get("encode", 0.0),
            sum(v for st, v in ms.items() if st.startswith("denoise")),
            ms.get("kv_write", 0.0),
            ms.get("decode", 0.0),
            sum(ms.values()),
        ]
        y = [i + (k - 0.5) * height for i in range(len(rows))]
        label = f"{name}: {result[name]['fps']:.1f} FPS, TTFF {result[name]['ttff_s']:.2f} s"
        left.barh(y, values, height=height, color=color, label=label)
        for yi, v in zip(y, values):
            if v > 0:
                left.text(v * 1.08, yi, f"{v:.1f}", va="center", fontsize=7)
    left.set_yticks(range(len(rows)), rows)
    left.invert_yaxis()
    left.set_xscale("log")
    left.set_xlim(0.5, 1e4)
    left.legend(loc="lower right", fontsize=8)
    left.set_xlabel("ms per output frame (log scale)")
    left.set_title(
        f"{result['preset']}: student {result.get('speedup', 0):.1f}x the teacher; "
        f"{result['device']}",
        fontsize=10,
    )

    if args.ablation.is_file():
        variants = json.loads(args.ablation.read_text())["variants"]
        names = list(variants)
        fps = [variants[n]["fps"] for n in names]
        ttff = [variants[n]["ttff_s"] * 1e3 for n in names]
        y = range(len(names))
        right.barh(y, fps, color="tab:blue")
        for i, (f, t) in enumerate(zip(fps, ttff)):
            right.text(f + 0.5, i, f"{f:.1f} FPS, TTFF {t:.0f} ms", va="center", fontsize=8)
        right.set_yticks(list(y), [n.replace(" (", "\n(") for n in names], fontsize=7)
        right.invert_yaxis()
        right.axvline(25, color="gray", linestyle="--", linewidth=1)
        right.set_xlim(0, max(fps) * 1.6)
        right.set_xlabel("student FPS (median of interleaved rounds); dashed: 25 FPS")
        right.set_title("student speed-ups, side by side", fontsize=10)
    else:
        right.axis("off")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
