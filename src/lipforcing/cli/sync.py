"""Lip-sync a video (or a still image) to an audio file, offline, with the streaming engine.

The output keeps the source's frame size and frame rate and carries the new audio; the source
plays forward and backward (ping-pong) when the audio outlasts it.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--video", required=True, help="source video or still image")
    parser.add_argument("--audio", required=True, help="driving speech (any format PyAV reads)")
    parser.add_argument("--out", required=True, help="output .mp4")
    parser.add_argument("--checkpoint", help="student checkpoint (default: the built-in tiny one)")
    parser.add_argument("--codec", help="codec checkpoint (default: codec.safetensors beside it)")
    parser.add_argument("--wav2vec2", help="local wav2vec2 model dir (wav2vec2-audio presets)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")


def run(args: argparse.Namespace) -> int:
    from lipforcing.media.io import read_audio, write_video
    from lipforcing.streaming.offline import conform_fps, lipsync_offline
    from lipforcing.streaming.pipeline import Pipeline, shipped_checkpoint
    from lipforcing.streaming.source import Source

    out = Path(args.out)
    if out.suffix.lower() not in {".mp4", ".mov", ".mkv"}:
        from lipforcing.errors import UserError

        raise UserError(f"--out must be an .mp4/.mov/.mkv file, got {out.name}")
    pipeline = Pipeline.load(
        args.checkpoint or shipped_checkpoint(),
        args.codec,
        device=args.device,
        wav2vec2=args.wav2vec2,
    )
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
