"""benchmarks/gpu_check.sh and its summary, run on the CPU (the GPU run has no other check
before it reaches a GPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STEPS = {
    "tests",
    "student-eager",
    "student-compile",
    "student-graphs",
    "student-fp8",
    "teacher",
    "student-large",
    "sessions",
}


def _run(tmp_path: Path, mode: str) -> dict:
    env = {**os.environ, "PYTHON": sys.executable}
    out = tmp_path / "check"
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks/gpu_check.sh"), mode, "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (out / "summary.md").is_file()
    return json.loads((out / "summary.json").read_text())


def test_smoke_run_of_every_step(tmp_path):
    s = _run(tmp_path, "--smoke")
    assert set(s["steps"]) == STEPS and all(v["status"] == "ok" for v in s["steps"].values())
    assert s["environment"].startswith("smoke")
    rows = {r["step"]: r for r in s["students_1_3b"]}
    assert rows["student-compile"]["ran"]["compile"] is True
    graphs = rows["student-graphs"]["notes"]  # the CPU cannot: recorded, not hidden
    assert graphs == [
        "cuda_graphs=on runs as cuda_graphs=off: CUDA graphs need a CUDA device, this is cpu"
    ]
    assert len(rows["student-fp8"]["notes"]) == 2
    assert [r["sessions"] for r in s["sessions_1_3b"]] == [1, 2]
    assert s["teacher_1_3b_fps"] > 0 and s["speedup_1_3b"] > 0
    # the targets are the Wan presets': a tiny smoke run measures none of them
    assert all(t["value"] is None for t in s["targets"].values())


@pytest.mark.slow
def test_smoke_run_on_the_wan_presets(tmp_path):
    s = _run(tmp_path, "--smoke-wan")
    assert all(v["status"] == "ok" for v in s["steps"].values())
    assert s["student_14b"]["preset"] == "wan-14b"


def _bench_json(path: Path, preset: str, fps: float, ttff: float) -> None:
    student = {
        "fps": fps,
        "ttff_s": ttff,
        "engine_fps": fps * 0.9,
        "engine_ttff_s": ttff * 1.1,
        "peak_memory_mb": 1000.0,
        "execution": {"ran": {"kv_shortcut": True, "fp8": False}, "notes": []},
    }
    path.write_text(json.dumps({"preset": preset, "methodology": "m", "student": student}))


def test_summary_marks_the_targets(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_summary
    finally:
        sys.path.pop(0)
    _bench_json(tmp_path / "student-eager.json", "wan-1.3b", 90.0, 0.08)
    _bench_json(tmp_path / "student-graphs.json", "wan-1.3b", 120.0, 0.12)
    _bench_json(tmp_path / "student-large.json", "wan-14b", 26.0, 0.3)
    for name in ("student-eager", "student-graphs", "student-large"):
        (tmp_path / f"{name}.status").write_text("ok 10\n")
    assert gpu_summary.main([str(tmp_path)]) == 0
    t = json.loads((tmp_path / "summary.json").read_text())["targets"]
    assert t["wan-1.3b student FPS"] == {"value": 120.0, "target": 110.0, "met": True}
    assert t["wan-1.3b student TTFF s (max)"]["met"] is False  # the fastest run's TTFF: 120 ms
    assert t["wan-14b student FPS"]["met"] is True
    assert t["4 concurrent 1.3B sessions, FPS each"]["value"] is None
    (tmp_path / "student-large.status").write_text("failed 3\n")
    assert gpu_summary.main([str(tmp_path)]) == 1
