"""The load test, short: `lipforcing serve` as a subprocess with two live sessions, an uploader
cycling through valid and hostile files and a hostile client, at once (issue 19 what-to-build 4;
the 10-minute run is `benchmarks/load_test.py`, results in benchmarks/RESULTS.md)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_module():
    spec = importlib.util.spec_from_file_location("load_test", ROOT / "benchmarks" / "load_test.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def test_short_load_run(tmp_path):
    load_test = load_module()
    argv = ["--minutes", "0.5", "--sessions", "2", "--max-sessions", "2", "--uploaders", "1"]
    argv += ["--hostile", "1", "--random", "--memory-budget-mb", "2500", "--out", str(tmp_path)]
    summary = load_test.main(argv)
    assert summary["still_serving"]
    assert summary["within_budget"], summary["rss_max_mb"]
    assert not summary["unexpected"], summary["unexpected"]
    for session in summary["per_session"]:
        # every client streamed (a second of frames at least): throughput on a machine shared
        # with other jobs is measured by the 10-minute run (RESULTS.md), never asserted here
        assert session["sessions"] >= 1 and session["frames"] > 25, session
    outcomes = summary["outcomes"]
    assert any(k.startswith("upload face.mp4") for k in outcomes)
    assert any(k.startswith("upload evil.m3u8 -> 422: as expected") for k in outcomes)
    assert any(k.startswith("foreign_host: as expected") for k in outcomes)
    assert (tmp_path / "load.png").is_file() and (tmp_path / "load.csv").is_file()
