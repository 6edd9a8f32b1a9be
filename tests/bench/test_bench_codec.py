"""Codec stages in the timed region (skipped until ``lipforcing.codecs.build_codec`` exists)."""

from __future__ import annotations

import dataclasses

import torch
from bench_helpers import SMALL, stream_outputs

from lipforcing.bench.runs import benchmark

WITH_CODEC = dataclasses.replace(SMALL, codec=True)


def test_codec_stages_are_timed():
    result = benchmark(WITH_CODEC)
    t, s = result["teacher"], result["student"]
    assert "decoder" in s["codec"] and "DiT stages only" not in s["codec"]
    assert t["stages_ms"]["encode"]["calls"] == 1 and t["stages_ms"]["decode"]["calls"] == 1
    chunks = WITH_CODEC.chunks
    assert s["stages_ms"]["encode"]["calls"] == 1 + chunks  # reference frame + one per chunk
    assert s["stages_ms"]["decode"]["calls"] == chunks
    assert s["ttff_s"] < s["total_s"]


def test_paired_encode_is_exact():
    """Masked and reference-sequence crops through one batch-2 stream encoder."""
    paired = stream_outputs(4, codec=True, paired_encode=True)[0]
    apart = stream_outputs(4, codec=True, paired_encode=False)[0]
    for x, y in zip(paired, apart):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-5)
