"""Statistics against numpy, stage timing against a known sleep, memory meters."""

from __future__ import annotations

import math
import mmap
import time

import numpy as np
import pytest

from lipforcing.bench.timing import Clock, MemoryMeter, Stages, merge_stage_runs, summarize


def test_summarize_matches_numpy():
    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 6):
        x = rng.exponential(size=n)
        s = summarize(x.tolist())
        assert s["median"] == pytest.approx(np.median(x))
        assert s["mean"] == pytest.approx(np.mean(x))
        assert s["std"] == pytest.approx(np.std(x))
        assert (s["min"], s["max"], s["n"]) == (x.min(), x.max(), n)


def test_summarize_rejects_empty_and_non_finite():
    for bad in ([], [1.0, math.nan], [math.inf]):
        with pytest.raises(ValueError):
            summarize(bad)


def test_merge_stage_runs_takes_the_median_over_runs():
    runs = [{"a": {"ms": v, "total_ms": 2 * v, "calls": 2}} for v in (3.0, 1.0, 7.0, 2.0)]
    runs[1]["b"] = {"ms": 5.0, "total_ms": 5.0, "calls": 1}
    merged = merge_stage_runs(runs)
    assert merged["a"] == {"ms": np.median([3, 1, 7, 2]), "total_ms": 5.0, "calls": 2}
    assert merged["b"]["ms"] == 5.0


def test_stages_time_a_known_sleep():
    stages = Stages(Clock("cpu"))
    for _ in range(2):
        with stages.stage("sleep"):
            time.sleep(0.02)
    with stages.stage("nothing"):
        pass
    out = stages.per_call_ms()
    assert out["sleep"]["calls"] == 2
    assert 20.0 <= out["sleep"]["ms"] < 200.0
    assert out["sleep"]["total_ms"] == pytest.approx(2 * out["sleep"]["ms"])
    assert 0.0 <= out["nothing"]["ms"] < out["sleep"]["ms"]


def test_cpu_memory_meter_sees_a_large_allocation():
    meter = MemoryMeter("cpu")
    meter.start()
    base, file_before = meter.peak_mb(), _rss_file_mb()
    # 64 MiB of fresh anonymous pages (no allocator can hand back pages it already holds),
    # each written so that it is resident
    x = mmap.mmap(-1, 64 * 2**20)
    for offset in range(0, len(x), 4096):
        x[offset] = 1
    peak, file_after = meter.peak_mb(), _rss_file_mb()
    assert math.isfinite(peak) and peak > 0
    if "clear_refs" in meter.method:  # per-phase peak: must include the new 64 MiB
        # Under memory pressure the kernel may evict file-backed pages (mapped libraries and
        # weights) of this process meanwhile: RSS then grows by less than the allocation.
        evicted = max(0.0, file_before - file_after)
        assert peak - base + evicted >= 48
    x.close()


def _rss_file_mb() -> float:
    """Resident file-backed memory of this process (RssFile), MiB; 0 where unknown."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssFile:"):
                return int(line.split()[1]) / 1024
    return 0.0
