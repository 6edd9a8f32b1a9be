"""Lip-sync a video (or a still image) to an audio file, offline, with the streaming engine.

The output keeps the source's frame size and frame rate and carries the new audio; the source
plays forward and backward (ping-pong) when the audio outlasts it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lipforcing.cli import options

DESCRIPTION = """\
Lip-sync a video (or a still image) to an audio file, offline. The output keeps the source's
frame size and frame rate and carries the new audio; the source plays forward and backward
when the audio outlasts it."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--video", required=True, help="source video or still image")
    parser.add_argument("--audio", required=True, help="driving speech (any format PyAV reads)")
    parser.add_argument("--out", required=True, help="output .mp4")
    options.add_student(parser)
    parser.add_argument("--seed", type=int, default=0, help="noise seed")
    options.add_device(parser)
    options.add_execution(parser)


def run(args: argparse.Namespace) -> int:
    from lipforcing.media.io import read_audio, write_video
    from lipforcing.streaming.offline import conform_fps, lipsync_offline
    from lipforcing.streaming.source import Source

    out = Path(args.out)
    if out.suffix.lower() not in {".mp4", ".mov", ".mkv"}:
        from lipforcing.errors import UserError

        raise UserError(f"--out must be an .mp4/.mov/.mkv file, got {out.name}")
    pipeline = options.load_pipeline(args)
    source = Source.from_file(args.video, pipeline.preset.media)
    audio = read_audio(args.audio, sample_rate=pipeline.preset.audio.sample_rate)
    result = lipsync_offline(pipeline, source, audio, seed=args.seed, progress=True)
    fps = source.source_fps or result.fps
    frames = conform_fps(result.frames, result.fps, fps)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_video(out, frames, fps, audio=audio, sample_rate=pipeline.preset.audio.sample_rate)
    st = result.stats
    print(
        f"wrote {out} ({len(frames)} frames, {fps:g} fps, {frames.shape[2]}x{frames.shape[1]}); "
        f"generation {st.gen_fps:.1f} FPS, first chunk {1000 * st.first_chunk_compute_s:.0f} ms"
    )
    return 0
