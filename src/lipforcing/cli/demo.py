"""Lip-sync a sample on the CPU with the built-in tiny checkpoint and report speed and sync.

With no input, a SynthTalk face is made to say new SynthTalk speech (a face and an utterance
the model never saw). The audio is pushed into the streaming engine in 40 ms pieces, as a live
source would send it, and frames are taken as fast as they come. Writes ``output.mp4`` (source
frame size, new audio), ``side_by_side.png`` (source, output, mouth crops over time) and
``metrics.json``; prints TTFF, FPS, real-time factor and our SyncNet's Sync-C.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from lipforcing.cli import options

REAL_WEIGHTS_NOTE = (
    "note: the built-in checkpoint is a small model trained only on synthetic SynthTalk faces; "
    "on real faces expect a blurry, weakly synced mouth. For real use, convert official "
    "Lip Forcing / Wan 2.1 weights (see docs/INSTALL.md) and pass --checkpoint PATH."
)


DESCRIPTION = """\
Lip-sync a sample on the CPU with the built-in tiny checkpoint and report speed and sync.
With no input, a SynthTalk face says new SynthTalk speech (a face and an utterance the model
never saw). The audio is fed to the streaming engine in 40 ms pieces, as a live source would
send it. Writes output.mp4, side_by_side.png and metrics.json in --out; prints time to first
frame, FPS, real-time factor and Sync-C."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--video", help="source video or image (default: a SynthTalk face)")
    parser.add_argument("--audio", help="driving speech (default: new SynthTalk speech)")
    parser.add_argument("--out", default="demo", help="output folder")
    options.add_student(parser)
    parser.add_argument("--seconds", type=float, default=6.0, help="length of the built-in sample")
    parser.add_argument("--seed", type=int, default=0, help="noise seed")
    options.add_device(parser)
    options.add_execution(parser)


def run(args: argparse.Namespace) -> int:
    from lipforcing.errors import UserError
    from lipforcing.media.io import write_video

    if (args.video is None) != (args.audio is None) and not args.avatar:
        raise UserError("give both --video and --audio, or neither for the built-in sample")
    if args.seconds <= 0:
        raise UserError(f"--seconds must be positive, got {args.seconds:g}")
    from lipforcing.media.inputs import check_source, check_speech

    if args.video is not None:  # every input checked before the model loads
        check_source(args.video)
    if args.audio is not None:
        check_speech(args.audio)
    builtin_ckpt = args.checkpoint is None and not args.avatar
    pipeline = options.load_pipeline(args)
    source, audio, label = _inputs(args, pipeline)
    if args.video is not None and builtin_ckpt:
        print(REAL_WEIGHTS_NOTE)
    print(f"{label}; checkpoint {pipeline.checkpoint}")

    from lipforcing.streaming.engine import warmup

    warmup(pipeline, source)  # one-off costs (first kernel launches, compile) are not stream time
    run_ = stream_as_live(pipeline, source, audio, seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fps = pipeline.preset.media.fps
    write_video(out / "output.mp4", run_["frames"], fps, audio=audio, sample_rate=16_000)
    src_idx = source.indices(0, len(run_["frames"]))
    metrics = {
        "input": label,
        "checkpoint": pipeline.checkpoint,
        "frames": len(run_["frames"]),
        "audio_s": round(len(audio) / 16_000, 3),
        **run_["timing"],
        **_sync_metrics(source.crops[src_idx], run_["crops"], audio),
    }
    side_by_side(out / "side_by_side.png", source, src_idx, run_["frames"], run_["crops"], pipeline)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    _print_report(metrics, out)
    return 0


def _inputs(args, pipeline):
    from lipforcing.media.io import read_audio
    from lipforcing.streaming.builtin import builtin_sample
    from lipforcing.streaming.source import Source

    if args.avatar:  # the avatar's footage (or --video) saying --audio or new SynthTalk speech
        source = options.load_source(args, pipeline)
        if args.audio:
            audio = read_audio(args.audio, sample_rate=pipeline.preset.audio.sample_rate)
            return source, audio, f"avatar {args.avatar} with {Path(args.audio).name}"
        sample = builtin_sample(pipeline.preset, seconds=args.seconds)
        label = f"avatar {args.avatar} saying SynthTalk speech (seed {sample.speech_seed})"
        return source, sample.audio, label
    if args.video is None:
        sample = builtin_sample(pipeline.preset, seconds=args.seconds)
        label = (
            f"SynthTalk face (seed {sample.identity_seed}) saying new speech "
            f"(seed {sample.speech_seed}), {args.seconds:g} s"
        )
        return sample.source, sample.audio, label
    source = Source.from_file(args.video, pipeline.preset.media)
    audio = read_audio(args.audio, sample_rate=pipeline.preset.audio.sample_rate)
    return source, audio, f"{Path(args.video).name} with {Path(args.audio).name}"


def stream_as_live(pipeline, source, audio: np.ndarray, *, seed: int = 0, piece_s: float = 0.04):
    """Push ``audio`` in ``piece_s`` pieces into a session and take frames as fast as they come.

    Returns frames, crops and timings: TTFF (first push -> first frame), output FPS over the
    whole run, the real-time factor (wall time / audio time) and the latency a live source would
    see for its first frame (the first chunk's audio must arrive before it can be generated).
    """
    from lipforcing.streaming.session import StreamSession

    session = StreamSession(pipeline, source, seed=seed, realtime=False)
    spf = session.engine.spf
    n = math.ceil(len(audio) / spf)
    piece = int(piece_s * session.sample_rate)
    frames, crops = [], []
    t0 = time.perf_counter()
    for i in range(0, len(audio), piece):
        session.push_audio(audio[i : i + piece])
    session.close()
    for frame in session.frames():
        if len(frames) < n:
            frames.append(frame.image)
            crops.append(frame.crop)
    wall = time.perf_counter() - t0
    session.stop()
    st = session.stats
    first_audio_s = (session.stream.layout.first_frames + session.stream.audio_margin) / session.fps
    timing = {
        "ttff_ms": round(1000 * st.ttff_s, 1),
        "first_chunk_compute_ms": round(1000 * st.first_chunk_compute_s, 1),
        "live_ttff_ms": round(1000 * (first_audio_s + st.first_chunk_compute_s), 1),
        "fps": round(len(frames) / wall, 2),
        "generation_fps": round(st.gen_fps, 2),
        "real_time_factor": round(wall / (len(audio) / session.sample_rate), 3),
        "wall_s": round(wall, 2),
    }
    return {"frames": np.stack(frames), "crops": np.stack(crops), "timing": timing}


def _sync_metrics(source_crops, output_crops, audio) -> dict:
    """Sync-C / Sync-D of the output and of the unmodified source against the new audio, on
    the aligned face crops (what our SyncNet scores)."""
    from lipforcing.streaming.pipeline import shipped_asset

    try:
        from lipforcing.evaluation.sync import sync_scores
        from lipforcing.evaluation.syncnet import load_syncnet
    except ImportError:
        return {"sync": "unavailable: lipforcing.evaluation has no SyncNet scoring here"}
    weights = shipped_asset("syncnet.safetensors")
    if weights is None:
        return {"sync": "unavailable: no SyncNet checkpoint at assets/tiny/syncnet.safetensors"}
    model = load_syncnet(weights)
    out_c, out_d, out_off = sync_scores(model, output_crops, audio)
    src_c, src_d, src_off = sync_scores(model, source_crops, audio)
    return {
        "sync_c_output": round(float(out_c), 3),
        "sync_d_output": round(float(out_d), 3),
        "sync_offset_output": int(out_off),
        "sync_c_source": round(float(src_c), 3),
        "sync_d_source": round(float(src_d), 3),
        "sync_offset_source": int(src_off),
    }


def side_by_side(path, source, src_idx, frames, crops, pipeline, columns: int = 8) -> None:
    """Source frames, output frames and both mouth crops at ``columns`` times."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = np.linspace(0, len(frames) - 1, columns).round().astype(int)
    s = crops.shape[1]
    top = int(pipeline.preset.media.mouth_top * s) - s // 10
    src_crops = source.crops[src_idx]
    rows = [
        ("source", source.frames[src_idx]),
        ("output", frames),
        ("source mouth", src_crops[:, top:]),
        ("output mouth", crops[:, top:]),
    ]
    fig, axes = plt.subplots(len(rows), columns, figsize=(1.6 * columns, 1.7 * len(rows)))
    for r, (name, images) in enumerate(rows):
        for c, i in enumerate(cols):
            ax = axes[r, c]
            ax.imshow(images[i])
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"{i / pipeline.preset.media.fps:.2f} s", fontsize=8)
            if c == 0:
                ax.set_ylabel(name, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _print_report(m: dict, out: Path) -> None:
    print(f"wrote {out / 'output.mp4'}, {out / 'side_by_side.png'}, {out / 'metrics.json'}")
    print(
        f"TTFF {m['ttff_ms']:.0f} ms (first chunk compute {m['first_chunk_compute_ms']:.0f} ms; "
        f"a live source waits for its audio too: {m['live_ttff_ms']:.0f} ms)"
    )
    print(
        f"FPS {m['fps']:.1f} (generation {m['generation_fps']:.1f}), real-time factor "
        f"{m['real_time_factor']:.2f} ({'faster' if m['real_time_factor'] < 1 else 'slower'} "
        "than real time)"
    )
    if "sync_c_output" in m:
        print(
            f"Sync-C vs the new audio: output {m['sync_c_output']:.2f}, "
            f"unmodified source {m['sync_c_source']:.2f} (our SyncNet)"
        )
    else:
        print(f"Sync-C: {m['sync']}")
