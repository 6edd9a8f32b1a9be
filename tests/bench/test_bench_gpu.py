"""The CUDA-only paths against their eager / sequential versions (skipped without a GPU).

No GPU was available when these were written: they are the first thing to run on one
(``pytest -q tests/bench/test_bench_gpu.py``).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from bench_helpers import SMALL, stream_outputs

from lipforcing.bench import optimize
from lipforcing.bench.runs import benchmark
from lipforcing.bench.student import student_run_overlapped

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
CHUNKS = 6


def _close(a, b, tol):
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x.float().cpu(), y.float().cpu(), atol=tol, rtol=tol)


def test_cuda_graphs_equal_eager():
    eager = stream_outputs(CHUNKS, device="cuda")[0]

    def wrap(model):
        return optimize.CudaGraphStudent(optimize.KVWriteShortcut(model))

    _close(stream_outputs(CHUNKS, device="cuda", model_fn=wrap)[0], eager, 1e-5)


def test_two_streams_equal_sequential():
    seq = stream_outputs(CHUNKS, device="cuda", codec=True)[0]
    both = stream_outputs(CHUNKS, device="cuda", codec=True, runner=student_run_overlapped)[0]
    _close(both, seq, 1e-6)


def test_compile_equals_eager_on_cuda():
    eager = stream_outputs(CHUNKS, device="cuda")[0]
    _close(stream_outputs(CHUNKS, device="cuda", model_fn=optimize.compile_blocks)[0], eager, 1e-4)


@pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 9),
    reason="FP8 matmuls need sm89+",
)
def test_fp8_linear_on_cuda():
    lin = torch.nn.Linear(256, 128).cuda().bfloat16()
    fp8 = optimize.FP8Linear(lin)
    x = torch.randn(4, 64, 256, device="cuda", dtype=torch.bfloat16)
    ref = fp8.reference(x).float()
    assert ((fp8(x).float() - ref).norm() / ref.norm()) < 1e-2


def test_benchmark_with_every_cuda_option():
    opts = dataclasses.replace(
        SMALL, device="cuda", dtype="bf16", codec=True, cuda_graphs=True, overlap=True
    )
    result = benchmark(opts)
    assert result["speedup"] > 0 and result["student"]["peak_memory_mb"] > 0
    assert result["student"]["memory_method"] == "torch.cuda.max_memory_allocated"
