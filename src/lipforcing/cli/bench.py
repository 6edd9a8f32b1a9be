"""Throughput and time-to-first-frame of the teacher and the streaming student.

The student runs through the product engine (what ``sync`` and ``serve`` run) with the given
execution options; the paper's protocol (one H100, 512x512, 25 fps: first codec encode to the
end of the first chunk's last decode, audio preprocessing, face detection and compositing
excluded) is reported beside the engine's own figures. An 81-frame clip for the 50-step
teacher; warm-up, then the median of repeated runs. Weights are random (speed does not depend
on their values). Options the device cannot run are reported (``execution.notes``), not hidden.
``--layers`` / ``--resolution`` shrink a large preset so the harness runs on a CPU; such
figures are marked as not the paper's methodology.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lipforcing.cli.options import STREAM_THREADS_HELP
from lipforcing.provenance import cpu_name, provenance

DESCRIPTION = """\
Measure the throughput (FPS) and time to first frame (TTFF) of the teacher and the
streaming student, with the paper's protocol: timed from the first codec encode to the end of
the first chunk's last decode (audio features, face detection and compositing excluded), after
warm-up, median of repeated runs. Weights are random (speed does not depend on their values).
--layers / --resolution shrink a large preset so it runs on a CPU; such figures are marked as
not the paper's methodology."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--preset", default="tiny", help="tiny, wan-1.3b or wan-14b")
    a("--mode", default="both", metavar="{student,teacher,both}", help="what to measure")
    a("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:i]")
    a("--checkpoint", help="DiT weights in any accepted layout (default: random weights)")
    a("--adapter", action="append", default=[], metavar="PATH", help="adapter over --checkpoint")
    a("--dtype", default="fp32", metavar="{fp32,bf16}", help="weights, activations, cache")
    a("--runs", type=int, default=5, help="timed runs (figures are medians)")
    a("--warmup", type=int, default=1, help="untimed warm-up runs")
    a("--chunks", type=int, default=20, help="student stream length in chunks")
    a("--frames", type=int, default=81, help="teacher clip length in video frames")
    a("--teacher-steps", type=int, default=None, help="teacher Euler steps (default 50)")
    a("--teacher-cfg", type=float, default=None, help="teacher CFG scale (default 4.5)")
    a("--student-steps", default=None, help="student grid indices, e.g. 0,30 or 0,12,24,36")
    a("--layers", type=int, default=None, help="reduced depth (not the paper's methodology)")
    a("--resolution", type=int, default=None, help="crop side in pixels instead of the preset's")
    a("--kv-before-decode", action="store_true", help="write the KV cache before the decode")
    a("--full-kv-pass", action="store_true", help="KV write as a whole forward (no shortcut)")
    a("--separate-encoders", action="store_true", help="encode the two crop streams apart")
    a("--compile", action="store_true", help="torch.compile the blocks")
    a("--cuda-graphs", action="store_true", help="CUDA graphs for steady-state chunk calls")
    a("--fp8", action="store_true", help="FP8 (e4m3) block Linears via torch._scaled_mm")
    a("--two-streams", action="store_true", help="codec and DiT on two CUDA streams")
    a("--interleave", action="store_true", help="both: alternate teacher and student runs")
    a("--sdpa", default="auto", help="SDPA backend: auto, flash, cudnn, efficient, math")
    a("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    a(
        "--stream-threads",
        default=None,
        help=f"{STREAM_THREADS_HELP} (default: auto with --sessions, else 1)",
    )
    a("--seed", type=int, default=0, help="weights, inputs and noise seed")
    a(
        "--sessions",
        default=None,
        help="concurrent student sessions to measure instead, e.g. 1,2,4,8 (per-session FPS, "
        "glass-to-glass latency)",
    )
    a("--session-seconds", type=float, default=8.0, help="audio per session with --sessions")
    a("--json", action="store_true", help="print the result as one JSON object")
    a("--out", type=Path, default=None, help="also write the JSON result to this file")


FLAGS = {  # BenchOptions field -> flag of this command
    "teacher_frames": "--frames",
    "kv_after_decode": "--kv-before-decode",
    "kv_shortcut": "--full-kv-pass",
    "paired_encode": "--separate-encoders",
}


def command_line(opts, threads: int | None, sessions=None) -> str:
    """The ``lipforcing bench`` command reproducing ``opts`` and ``sessions`` (a
    :class:`~lipforcing.bench.sessions.SessionsOptions` or None; non-default options only)."""
    import dataclasses

    from lipforcing.bench.harness import BenchOptions

    default = BenchOptions()
    parts = ["lipforcing bench", f"--preset {opts.preset}", f"--mode {opts.mode}"]
    if sessions is not None:
        from lipforcing.bench.sessions import SessionsOptions

        parts.append(f"--sessions {','.join(map(str, sessions.counts))}")
        if sessions.seconds != SessionsOptions().seconds:
            parts.append(f"--session-seconds {sessions.seconds:g}")
    for f in dataclasses.fields(opts):
        value = getattr(opts, f.name)
        if f.name in ("preset", "mode") or value == getattr(default, f.name):
            continue
        flag = FLAGS.get(f.name, "--" + f.name.replace("_", "-"))
        if isinstance(value, bool):
            parts.append(flag)
        elif isinstance(value, tuple):
            parts.append(f"{flag} {','.join(map(str, value))}")
        else:
            parts.append(f"{flag} {value}")
    if threads is not None:
        parts.append(f"--threads {threads}")
    return " ".join(parts)


def options_from_args(args: argparse.Namespace):
    """Validate the arguments into :class:`BenchOptions` (UserError, one line, when wrong)."""

    from lipforcing.bench.harness import BenchOptions, bench_preset
    from lipforcing.config import PRESETS
    from lipforcing.errors import UserError

    if args.preset not in PRESETS:
        raise UserError(f"unknown preset {args.preset!r}; choose from {sorted(PRESETS)}")
    from lipforcing.devices import resolve_device

    device = resolve_device(args.device)
    args.device = str(device)
    steps = None
    if args.student_steps is not None:
        try:
            steps = tuple(int(s) for s in args.student_steps.split(","))
        except ValueError:
            raise UserError(f"--student-steps {args.student_steps!r}: use e.g. 0,30") from None
    try:
        opts = BenchOptions(
            preset=args.preset,
            mode=args.mode,
            device=args.device,
            dtype=args.dtype,
            runs=args.runs,
            warmup=args.warmup,
            chunks=args.chunks,
            teacher_frames=args.frames,
            teacher_steps=args.teacher_steps,
            teacher_cfg=args.teacher_cfg,
            student_steps=steps,
            layers=args.layers,
            resolution=args.resolution,
            checkpoint=args.checkpoint,
            adapters=tuple(args.adapter),
            kv_after_decode=not args.kv_before_decode,
            kv_shortcut=not args.full_kv_pass,
            paired_encode=not args.separate_encoders,
            compile=args.compile,
            cuda_graphs=args.cuda_graphs,
            two_streams=args.two_streams,
            interleave=args.interleave,
            fp8=args.fp8,
            sdpa=args.sdpa,
            stream_threads=_stream_threads(args),
            seed=args.seed,
        )
        bench_preset(opts)  # the overrides must give a valid preset
    except ValueError as e:
        raise UserError(str(e)) from None
    return opts


def _stream_threads(args: argparse.Namespace) -> int | str:
    """--stream-threads, by default auto when sessions are measured (serve's default), else 1."""
    from lipforcing.cli.options import stream_threads

    if args.stream_threads is not None:
        return stream_threads(args.stream_threads)
    return "auto" if args.sessions is not None else 1


def sessions_from_args(args: argparse.Namespace):
    """:class:`~lipforcing.bench.sessions.SessionsOptions` from ``--sessions``, or None."""
    if args.sessions is None:
        return None
    from lipforcing.bench.sessions import SessionsOptions
    from lipforcing.errors import UserError

    try:
        counts = tuple(int(n) for n in args.sessions.split(","))
        return SessionsOptions(counts=counts, seconds=args.session_seconds, seed=args.seed)
    except ValueError as e:
        raise UserError(f"--sessions {args.sessions!r}: {e}; use e.g. 1,2,4,8") from None


def summary_lines(result: dict) -> list[str]:
    """A short human-readable report of a benchmark result."""
    lines = [f"{result['preset']} ({result['methodology']}), {result['device']}"]
    if "sessions" in result:
        return lines + session_lines(result["sessions"])
    for name in ("teacher", "student"):
        if name not in result:
            continue
        r = result[name]
        stages = ", ".join(f"{k} {v['ms']:.1f} ms x{v['calls']}" for k, v in r["stages_ms"].items())
        lines.append(
            f"  {name}: {r['fps']:.2f} FPS, TTFF {r['ttff_s'] * 1e3:.0f} ms, "
            f"peak {r['peak_memory_mb']:.0f} MB; per call: {stages}"
        )
        if "engine_fps" in r:
            lines.append(
                f"    engine (features and paste included): {r['engine_fps']:.2f} FPS, "
                f"first frames out after {r['engine_ttff_s'] * 1e3:.0f} ms"
            )
        lines.append(f"    {r['codec']}")
        for note in r.get("execution", {}).get("notes", []):
            lines.append(f"    note: {note}")
    if "speedup" in result:
        lines.append(f"  speedup student / teacher: {result['speedup']:.1f}x")
    return lines


def session_lines(s: dict) -> list[str]:
    floor = s["floor"]["floor_s"]
    lines = [f"  latency floor of the chunk layout: {floor * 1e3:.0f} ms (+ one chunk's compute)"]
    for n, m in s["counts"].items():
        t, live = m["throughput"], m["live"]
        p50, p95 = live["latency_p50_s"], live["latency_p95_s"]
        lat = "-" if p50 is None else f"p50 {p50 * 1e3:.0f} ms, p95 {p95 * 1e3:.0f} ms"
        lines.append(
            f"  {n} session(s): {t['fps_per_session_min']:.1f} FPS each (slowest), live latency "
            f"{lat}, late/dropped {live['late_frames']}/{live['dropped_frames']}"
        )
    return lines


def run(args: argparse.Namespace) -> int:
    import torch

    from lipforcing.bench.runs import benchmark

    if args.threads is not None:
        if args.threads < 1:
            from lipforcing.errors import UserError

            raise UserError("--threads must be >= 1")
        torch.set_num_threads(args.threads)
    opts = options_from_args(args)
    sessions = sessions_from_args(args)
    if sessions is not None:
        from lipforcing.bench.runs import benchmark_sessions

        result = benchmark_sessions(opts, sessions, progress=not args.json)
    else:
        result = benchmark(opts, progress=not args.json)
    result["device"] = _device_name(opts.device)
    result.update(provenance())
    result["command"] = command_line(opts, args.threads, sessions)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        execution = result.get("student", result).get("execution", {})
        for note in execution.get("notes", []):
            print(f"note: {note}", file=sys.stderr)
        print(json.dumps(result))
    else:
        print("\n".join(summary_lines(result)))
    return 0


def _device_name(device: str) -> str:
    import torch

    if torch.device(device).type == "cuda":
        return f"{torch.cuda.get_device_name(torch.device(device))} ({device})"
    from lipforcing.streaming.options import cpu_threads

    return f"cpu: {cpu_name()}, {cpu_threads()} threads"
