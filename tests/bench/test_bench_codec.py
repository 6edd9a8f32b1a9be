"""The student is timed through the product engine: its stages, options and notes."""

from __future__ import annotations

import dataclasses

import torch
from bench_helpers import SMALL

from lipforcing.bench.runs import benchmark


def test_engine_stages_are_timed():
    result = benchmark(SMALL)
    t, s = result["teacher"], result["student"]
    assert "decoder" in s["codec"]
    assert t["stages_ms"]["encode"]["calls"] == 1 and t["stages_ms"]["decode"]["calls"] == 1
    chunks = SMALL.chunks
    stages = s["stages_ms"]
    # one per chunk: the stream's first step encodes the reference frame in its encode stage
    assert stages["encode"]["calls"] == chunks
    for name in ("features", "decode", "paste", "denoise_0", "denoise_1", "kv_write"):
        assert stages[name]["calls"] == chunks, name
    assert s["ttff_s"] < s["total_s"]
    # the paper's protocol leaves out the host stages the engine figures include
    assert s["engine_fps"] < s["fps"] and s["engine_ttff_s"] > s["ttff_s"]
    assert s["execution"]["ran"] == s["execution"]["requested"] and not s["execution"]["notes"]
    assert s["execution"]["ran"]["kv_shortcut"] and s["execution"]["ran"]["paired_encode"]


def test_what_ran_is_recorded_when_the_device_cannot_do_an_option():
    opts = dataclasses.replace(SMALL, mode="student", runs=1, cuda_graphs=True, fp8=True)
    s = benchmark(opts)["student"]
    assert s["execution"]["requested"]["cuda_graphs"] and not s["execution"]["ran"]["cuda_graphs"]
    assert not s["execution"]["ran"]["fp8"]
    assert len(s["execution"]["notes"]) == 2
    assert all(" runs as " in n and "\n" not in n for n in s["execution"]["notes"])
    assert torch.isfinite(torch.tensor(s["fps"]))
