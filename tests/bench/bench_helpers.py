"""Small benchmark set-ups shared by the tests."""

from __future__ import annotations

from lipforcing.bench.harness import BenchOptions

SMALL = BenchOptions(
    preset="tiny",
    mode="both",
    runs=2,
    warmup=1,
    chunks=3,
    teacher_frames=9,
    teacher_steps=2,
    layers=2,
    resolution=64,
)
