"""Small benchmark set-ups shared by the tests."""

from __future__ import annotations

import dataclasses

import torch

from lipforcing.bench.harness import BenchOptions, make_setup
from lipforcing.bench.student import StudentStream, student_run

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
    codec=False,  # DiT stages; the codec stages have their own tests
)


def stream_outputs(
    chunks: int = 5, model_fn=None, runner=student_run, **overrides
) -> tuple[list[torch.Tensor], object]:
    """x0 of every chunk of one student stream (and the set-up), optionally wrapping the model."""
    opts = dataclasses.replace(SMALL, **overrides)
    s = make_setup(opts, "block_causal")
    if model_fn is not None:
        s.net = model_fn(s.net)
    stream = StudentStream(s)
    out: list[torch.Tensor] = []
    with torch.inference_mode():
        runner(s, stream, chunks, collect=out)
    return out, stream
