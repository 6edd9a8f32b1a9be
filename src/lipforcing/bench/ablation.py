"""Side-by-side student speed of option variants, interleaved in one process.

On a shared CPU absolute times drift with the load of other jobs; variants measured in turn,
round after round (variant A, B, C, A, B, C, ...), see the same drift, so their ratios are
meaningful where separate runs' figures are not. Each variant builds its own set-up (same
seed, hence the same weights and inputs) once; warm-up runs come first.
"""

from __future__ import annotations

import dataclasses

import torch
from tqdm import tqdm

from lipforcing.bench.harness import BenchOptions, make_setup, release
from lipforcing.bench.student import StudentBench
from lipforcing.bench.timing import merge_stage_runs, summarize

PLAIN = {"kv_after_decode": False, "kv_shortcut": False, "paired_encode": False}

# name -> option overrides on top of the base options (cumulative where it says so)
DEFAULT_VARIANTS: dict[str, dict] = {
    "plain (KV write before decode, whole-forward KV write, two encoders)": PLAIN,
    "+ KV write after decode": {**PLAIN, "kv_after_decode": True},
    "+ KV-write shortcut": {**PLAIN, "kv_after_decode": True, "kv_shortcut": True},
    "+ paired encode (= harness default)": {},
    "default + torch.compile": {"compile": True},
    "default + SDPA math kernel": {"sdpa": "math"},
    "default + bf16": {"dtype": "bf16"},
}


STEP_VARIANTS: dict[str, dict] = {
    "Lip Forcing: 2 steps, J = (0, 30)": {},
    "Self-Forcing-like: 4 steps, J = (0, 13, 25, 37)": {"student_steps": (0, 13, 25, 37)},
}
VARIANT_SETS = {"speedups": DEFAULT_VARIANTS, "steps": STEP_VARIANTS}


def ablate(
    base: BenchOptions,
    variants: dict[str, dict] | None = None,
    rounds: int = 5,
    *,
    progress: bool = False,
) -> dict:
    """Median student FPS / TTFF per variant over ``rounds`` interleaved runs, with ratios to
    the first variant (> 1: faster)."""
    variants = DEFAULT_VARIANTS if variants is None else variants
    benches = {}
    for name, overrides in variants.items():
        opts = dataclasses.replace(base, mode="student", **overrides)
        benches[name] = StudentBench.build(make_setup(opts, "block_causal"), base.chunks)
    runs: dict[str, list[dict]] = {name: [] for name in variants}

    def once(name: str, chunks: int) -> dict:
        with torch.inference_mode():
            return benches[name].run(chunks)

    try:
        for name in variants:
            for _ in range(base.warmup):
                once(name, min(base.chunks, 4))
        for _ in tqdm(range(rounds), desc="rounds", disable=not progress):
            for name in variants:
                runs[name].append(once(name, base.chunks))
    finally:
        for b in benches.values():
            release(b.setup)
    return _summary(runs)


def _summary(runs: dict[str, list[dict]]) -> dict:
    out, first = {}, None
    for name, rs in runs.items():
        fps = summarize([r["frames"] / r["total_s"] for r in rs])["median"]
        ttff = summarize([r["ttff_s"] for r in rs])["median"]
        first = first or (fps, ttff)
        out[name] = {
            "fps": fps,
            "ttff_s": ttff,
            "fps_ratio": fps / first[0],
            "ttff_ratio": ttff / first[1],
            "stages_ms": merge_stage_runs([r["stages"] for r in rs]),
            "runs": len(rs),
        }
    return out


def markdown(result: dict) -> str:
    """A table: variant, FPS, TTFF, FPS and TTFF relative to the first variant."""
    lines = [
        "| variant | FPS | TTFF ms | FPS vs first | TTFF vs first |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in result.items():
        lines.append(
            f"| {name} | {r['fps']:.1f} | {r['ttff_s'] * 1e3:.0f} | {r['fps_ratio']:.2f}x "
            f"| {r['ttff_ratio']:.2f}x |"
        )
    return "\n".join(lines)
