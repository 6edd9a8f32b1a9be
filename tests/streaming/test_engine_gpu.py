"""The CUDA-only execution options against the plain path (skipped without a GPU).

No GPU was available when these were written: ``benchmarks/gpu_check.sh`` runs them first.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_engine_options import PRESET, run

from lipforcing.streaming.options import ExecutionOptions

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(scope="module")
def source():
    from streaming_inputs import face_frames

    from lipforcing.streaming.source import Source

    frames, marks = face_frames(count=12)
    return Source.from_frames(frames, PRESET.media, landmarks=marks)


def on_cuda(source, options, **kw):
    return run(source, options, chunks=6, device="cuda", **kw)


@pytest.fixture(scope="module")
def eager(source):
    return on_cuda(source, ExecutionOptions.plain())


def _close(got, want, tol):
    frames, crops, cache, engine = got
    assert not engine.pipeline.notes, engine.pipeline.notes
    torch.testing.assert_close(cache.k.float(), want[2].k.float(), atol=tol, rtol=tol)
    assert np.abs(crops.astype(int) - want[1].astype(int)).max() <= 2


def test_exact_defaults_on_cuda(source, eager):
    _close(on_cuda(source, ExecutionOptions()), eager, 1e-5)


def test_cuda_graphs_equal_eager(source, eager):
    got = on_cuda(source, ExecutionOptions(cuda_graphs=True))
    assert len(got[3].net.recordings) >= 2
    _close(got, eager, 1e-5)


def test_two_streams_equal_one(source, eager):
    _close(on_cuda(source, ExecutionOptions(two_streams=True)), eager, 1e-6)


def test_compile_equals_eager_on_cuda(source, eager):
    _close(on_cuda(source, ExecutionOptions(compile=True)), eager, 1e-4)


def test_every_cuda_option_together(source, eager):
    opts = ExecutionOptions(cuda_graphs=True, two_streams=True, compile=True)
    _close(on_cuda(source, opts), eager, 1e-4)


@pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 9),
    reason="FP8 matmuls need sm89+",
)
def test_fp8_linear_on_cuda():
    from lipforcing.streaming.accel import FP8Linear

    lin = torch.nn.Linear(256, 128).cuda().bfloat16()
    fp8 = FP8Linear(lin)
    x = torch.randn(4, 64, 256, device="cuda", dtype=torch.bfloat16)
    ref = fp8.reference(x).float()
    assert ((fp8(x).float() - ref).norm() / ref.norm()) < 1e-2
