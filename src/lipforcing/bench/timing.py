"""Timing, statistics and memory meters of the benchmark harness, for CPU and CUDA.

Design choices:
- One :class:`Clock` hides the device: on CUDA it records ``torch.cuda.Event`` s on the current
  stream (no synchronisation inside the timed region; durations are read after one
  ``synchronize`` at the end of a run), on the CPU it reads ``time.perf_counter``.
- :class:`Stages` collects named intervals (``encode``, ``denoise_0``, ``kv_write`` ...) and
  reduces them to per-call means; a benchmark reports the median over runs of those means.
- Peak memory: ``torch.cuda.max_memory_allocated`` on CUDA. On the CPU, torch tensors are not
  seen by ``tracemalloc`` (it tracks Python's allocator only), so the meter reads the peak
  resident set size ``VmHWM`` from ``/proc/self/status``, reset per phase through
  ``/proc/self/clear_refs``; where that reset is refused the figure is the process-lifetime
  peak (``ru_maxrss``) and says so.
"""

from __future__ import annotations

import contextlib
import math
import resource
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch


def summarize(values: Sequence[float]) -> dict[str, float]:
    """Median, mean, min, max and population std of repeated measurements (numpy's)."""
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0 or not np.all(np.isfinite(a)):
        raise ValueError(f"need finite measurements, got {list(values)}")
    return {
        "median": float(np.median(a)),
        "mean": float(a.mean()),
        "min": float(a.min()),
        "max": float(a.max()),
        "std": float(a.std()),
        "n": int(a.size),
    }


class Clock:
    """Device-aware time stamps: CUDA events on CUDA, ``perf_counter`` elsewhere."""

    def __init__(self, device: torch.device | str) -> None:
        self.cuda = torch.device(device).type == "cuda"

    def stamp(self) -> object:
        """A point in time on the current stream (CUDA) or the host clock."""
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def seconds(self, start: object, end: object) -> float:
        """Seconds between two stamps (call :meth:`sync` first on CUDA)."""
        if self.cuda:
            return start.elapsed_time(end) / 1e3  # type: ignore[attr-defined]
        return float(end) - float(start)  # type: ignore[arg-type]

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()


@dataclass
class _Interval:
    name: str
    start: object
    end: object


class Stages:
    """Named intervals of one run, e.g. every ``denoise_0`` call of a stream."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.intervals: list[_Interval] = []

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = self.clock.stamp()
        yield
        self.intervals.append(_Interval(name, start, self.clock.stamp()))

    def per_call_ms(self) -> dict[str, dict[str, float]]:
        """{name: {"ms": mean ms per call, "calls": n, "total_ms": sum}} (after a sync)."""
        acc: dict[str, list[float]] = defaultdict(list)
        for iv in self.intervals:
            acc[iv.name].append(self.clock.seconds(iv.start, iv.end) * 1e3)
        return {
            name: {"ms": sum(v) / len(v), "calls": len(v), "total_ms": sum(v)}
            for name, v in acc.items()
        }


def merge_stage_runs(runs: Sequence[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Median over runs of each stage's per-call ms and total ms (calls from the first run)."""
    names = list(dict.fromkeys(name for run in runs for name in run))
    out = {}
    for name in names:
        present = [run[name] for run in runs if name in run]
        out[name] = {
            "ms": summarize([r["ms"] for r in present])["median"],
            "total_ms": summarize([r["total_ms"] for r in present])["median"],
            "calls": int(present[0]["calls"]),
        }
    return out


# ----------------------------------------------------------------------------- memory


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class MemoryMeter:
    """Peak memory of one benchmark phase, in MiB, with the method that measured it."""

    def __init__(self, device: torch.device | str) -> None:
        self.cuda = torch.device(device).type == "cuda"
        self.method = ""

    def start(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.method = "torch.cuda.max_memory_allocated"
            return
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
            self.method = "peak RSS of this phase (VmHWM after clear_refs)"
        except OSError:
            self.method = "peak RSS of the whole process (ru_maxrss; reset refused)"

    def peak_mb(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() / 2**20
        hwm = _status_kib("VmHWM") if "VmHWM" in self.method else None
        if hwm is None:
            hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        return hwm / 1024


def finite_positive(x: float) -> bool:
    return math.isfinite(x) and x > 0
