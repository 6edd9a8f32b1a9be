"""``lipforcing bench``: one-line errors and a quick JSON run."""

from __future__ import annotations

import json

import pytest
import torch

from lipforcing.cli.main import main

QUICK = ["--runs", "1", "--warmup", "0", "--chunks", "2", "--frames", "9", "--teacher-steps", "1"]
SMALL = ["--layers", "1", "--resolution", "64"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--preset", "nope"], "unknown preset 'nope'"),
        (["--mode", "fast"], "unknown mode 'fast'"),
        (["--dtype", "fp16"], "unknown dtype 'fp16'"),
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--student-steps", "0,x"], "--student-steps"),
        (["--runs", "0"], "runs >= 1"),
        (["--frames", "80"], "1 + 4k"),
        (["--resolution", "72"], "multiple of 16"),
        (["--sdpa", "fastest"], "unknown SDPA backend"),
        (["--threads", "0"], "--threads must be >= 1"),
        (["--stream-threads", "0"], "stream_threads must be >= 1"),
    ],
)
def test_one_line_errors(argv, message, capsys):
    assert main(["bench", *QUICK, *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_unavailable(capsys):
    assert main(["bench", "--device", "cuda", *QUICK]) == 2
    err = capsys.readouterr().err  # a CPU build of torch, or a CUDA build without a GPU
    assert "has no CUDA support" in err or "no CUDA GPU is visible" in err


def test_json_run(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["bench", "--mode", "both", "--json", "--threads", "1", "--out", str(out)]
    assert main([*argv, *QUICK, *SMALL]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    assert printed["speedup"] > 0 and printed["commit"] and printed["date"].endswith("UTC")
    assert printed["command"].startswith("lipforcing bench")
    assert printed["device"].startswith("cpu")


def test_cuda_only_options_on_the_cpu_run_with_a_note(capsys):
    argv = ["bench", "--mode", "student", "--threads", "1", "--cuda-graphs", "--json"]
    assert main([*argv, *QUICK, *SMALL]) == 0
    captured = capsys.readouterr()
    assert captured.err.strip() == (
        "note: cuda_graphs=on runs as cuda_graphs=off: CUDA graphs need a CUDA device, this is cpu"
    )
    ran = json.loads(captured.out)["student"]["execution"]["ran"]
    assert ran["cuda_graphs"] is False


def test_bf16_student_runs_through_the_engine(capsys):
    """--dtype bf16: the DiT in bf16, the codec in fp32 as the product runs it (a bf16 codec
    used to meet the engine's float32 pixels and stop the run)."""
    argv = ["bench", "--mode", "student", "--dtype", "bf16", "--threads", "1", "--json"]
    assert main([*argv, *QUICK, *SMALL]) == 0
    student = json.loads(capsys.readouterr().out)["student"]
    assert student["fps"] > 0 and student["frames"] > 0


def test_text_summary(capsys):
    assert main(["bench", "--mode", "student", "--threads", "1", *QUICK, *SMALL]) == 0
    text = capsys.readouterr().out
    assert "student:" in text and "FPS" in text and "TTFF" in text


def test_recorded_command_reproduces_the_options():
    import argparse
    import shlex

    from lipforcing.cli import bench

    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    argv = [*QUICK, *SMALL, "--student-steps", "0,13,25,37", "--two-streams", "--dtype", "bf16"]
    opts = bench.options_from_args(parser.parse_args(argv))
    again = shlex.split(bench.command_line(opts, threads=1))[2:]
    assert bench.options_from_args(parser.parse_args(again)) == opts


def test_recorded_command_reproduces_the_session_counts():
    import argparse
    import shlex

    from lipforcing.cli import bench

    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    argv = [*SMALL, "--sessions", "1,4", "--session-seconds", "2.5", "--stream-threads", "2"]
    args = parser.parse_args(argv)
    opts, sessions = bench.options_from_args(args), bench.sessions_from_args(args)
    again = parser.parse_args(shlex.split(bench.command_line(opts, 2, sessions))[2:])
    assert bench.options_from_args(again) == opts
    assert bench.sessions_from_args(again) == sessions


def test_sessions_run(capsys):
    """--sessions: N sessions through one scheduler, throughput and live latency per count."""
    argv = ["bench", "--sessions", "1,2", "--session-seconds", "0.8", "--json", *SMALL]
    assert main([*argv, "--threads", "1"]) == 0
    r = json.loads(capsys.readouterr().out)
    s = r["sessions"]
    assert r["mode"] == "sessions" and list(s["counts"]) == ["1", "2"]
    assert s["floor"]["floor_s"] == pytest.approx((12 + 4 - 1) / 25)  # tiny: margin 4 frames
    for n, m in s["counts"].items():
        assert len(m["throughput"]["fps_per_session"]) == int(n)
        assert all(f > 0 for f in m["throughput"]["fps_per_session"])
        live = m["live"]
        assert len(live["latency_p50_per_session"]) == int(n)
        assert 0 < live["latency_p50_s"] <= live["latency_p95_s"]
        assert m["peak_memory_mb"] > 0
    assert s["counts"]["2"]["throughput"]["mean_batch"] > 1  # the two streams were batched


def test_bad_session_counts(capsys):
    assert main(["bench", "--sessions", "0,2", *QUICK]) == 2
    assert "--sessions" in capsys.readouterr().err
