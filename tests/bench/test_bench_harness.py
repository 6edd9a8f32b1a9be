"""The benchmark's JSON: schema, positive finite timings, consistent derived figures."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from bench_helpers import SMALL

from lipforcing.bench.harness import BenchOptions, bench_preset
from lipforcing.bench.runs import benchmark


@pytest.fixture(scope="module")
def result() -> dict:
    import torch

    torch.set_num_threads(1)
    return benchmark(SMALL)


def _positive(x) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_schema(result):
    assert result["schema"] == "lipforcing.bench/1"
    assert {"preset", "mode", "methodology", "crop_size", "options", "teacher", "student"} <= set(
        result
    )
    assert "NOT the paper's methodology" in result["methodology"]
    for phase in ("teacher", "student"):
        r = result[phase]
        for key in ("fps", "ttff_s", "total_s", "peak_memory_mb", "weights_mb"):
            assert _positive(r[key]), (phase, key, r[key])
        assert len(r["fps_runs"]) == len(r["ttff_runs"]) == SMALL.runs
        assert all(_positive(v) for v in r["fps_runs"] + r["ttff_runs"])
        for name, st in r["stages_ms"].items():
            assert _positive(st["ms"]) and st["calls"] >= 1, name
    json.loads(json.dumps(result))  # plain JSON types only


def test_derived_figures(result):
    t, s = result["teacher"], result["student"]
    assert t["fps"] == pytest.approx(np.median(t["fps_runs"]))
    assert s["ttff_s"] == pytest.approx(np.median(s["ttff_runs"]))
    assert result["speedup"] == pytest.approx(s["fps"] / t["fps"])
    assert t["frames"] == SMALL.teacher_frames and t["ttff_s"] == pytest.approx(t["total_s"])
    assert s["frames"] == 9 + 12 * (SMALL.chunks - 1)
    assert s["ttff_s"] < s["total_s"]  # the first chunk leaves before the stream ends
    assert result["realtime"] == (s["fps"] >= 25.0)


def test_stage_call_counts(result):
    t, s = result["teacher"]["stages_ms"], result["student"]["stages_ms"]
    assert t["denoise"]["calls"] == SMALL.teacher_steps  # CFG branches batched in one call
    assert result["teacher"]["network_evaluations"] == 2 * SMALL.teacher_steps
    for k in range(2):  # J = (0, 30): two denoising calls per chunk
        assert s[f"denoise_{k}"]["calls"] == SMALL.chunks
    assert s["kv_write"]["calls"] == SMALL.chunks


def test_presets_and_methodology_notes():
    wan, note = bench_preset(BenchOptions(preset="wan-1.3b"))
    assert note.startswith("paper's methodology") and wan.media.crop_size == 512
    small, note = bench_preset(BenchOptions(preset="wan-14b", layers=2, resolution=64))
    assert small.model.num_layers == 2 and small.codec.image_size == 64
    assert small.media.crop_size == 64 and "NOT the paper's" in note
    assert small.model.audio_first_layer + small.model.num_audio_layers <= 2
    with pytest.raises(ValueError, match="multiple of 16"):
        bench_preset(BenchOptions(preset="tiny", resolution=72))


def test_options_validation():
    for bad in ({"mode": "fast"}, {"dtype": "fp16"}, {"runs": 0}, {"teacher_frames": 80}):
        with pytest.raises(ValueError):
            dataclasses.replace(SMALL, **bad)


def test_ablation_ratios_are_relative_to_the_first_variant():
    from lipforcing.bench.ablation import ablate, markdown

    variants = {"plain": {"kv_after_decode": False}, "after decode": {}}
    result = ablate(dataclasses.replace(SMALL, chunks=2, warmup=0), variants, rounds=2)
    assert list(result) == ["plain", "after decode"]
    assert result["plain"]["fps_ratio"] == 1.0 and result["plain"]["ttff_ratio"] == 1.0
    r = result["after decode"]
    assert r["fps_ratio"] == pytest.approx(r["fps"] / result["plain"]["fps"])
    assert r["runs"] == 2 and _positive(r["fps"]) and _positive(r["ttff_s"])
    assert markdown(result).count("\n") == 3


def test_interleaved_both():
    result = benchmark(dataclasses.replace(SMALL, interleave=True))
    assert result["interleaved"] is True
    for phase in ("teacher", "student"):
        assert len(result[phase]["fps_runs"]) == SMALL.runs
        assert "interleaved" in result[phase]["memory_method"]
    assert result["speedup"] == pytest.approx(result["student"]["fps"] / result["teacher"]["fps"])
    assert result["student"]["stages_ms"]["kv_write"]["calls"] == SMALL.chunks
    ratios = [s / t for s, t in zip(result["student"]["fps_runs"], result["teacher"]["fps_runs"])]
    assert result["speedup_runs"] == pytest.approx(ratios)
    assert result["speedup_median_of_rounds"] == pytest.approx(np.median(ratios))
