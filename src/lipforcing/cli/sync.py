"""Lip-sync a video (or a still image) to an audio file, offline, with the streaming engine.

The output keeps the source's frame size and frame rate and carries the new audio; the source
plays forward and backward (ping-pong) when the audio outlasts it. Frames where the chosen
face is not found are left untouched (the mouth patch fades out and in around them), and the
report says which face was driven and how many frames had it. Silent stretches of the audio
close the mouth (the silence gate, on by default). Every input is checked before the model
loads.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lipforcing.cli import options

DESCRIPTION = """\
Lip-sync a video (or a still image) to an audio file, offline. The output keeps the source's
frame size and frame rate and carries the new audio; the source plays forward and backward
when the audio outlasts it. With --avatar NAME.avatar the avatar's own student and codec run,
and its own footage is the source unless --video is given."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--video", help="source video or still image (with --avatar: its own footage by default)"
    )
    parser.add_argument(
        "--audio",
        help="driving speech, any format PyAV reads (default: the video's own sound; "
        "needed with --avatar and no --video)",
    )
    parser.add_argument("--out", required=True, help="output .mp4, .mov or .mkv")
    parser.add_argument(
        "--face",
        default="largest",
        help="which face to drive when several are present: largest, center, N (0 = leftmost) "
        "or a box x0,y0,x1,y1; chosen again after each shot cut (default: largest)",
    )
    parser.add_argument(
        "--no-silence-gate",
        action="store_true",
        help="drive the mouth with the audio as it is, also in silent stretches",
    )
    options.add_student(parser)
    parser.add_argument("--seed", type=int, default=0, help="noise seed")
    options.add_device(parser)
    options.add_execution(parser)


def check_inputs(args: argparse.Namespace):
    """Every input, before any heavy work: (face choice, output path). Raises UserError."""
    from lipforcing.errors import UserError
    from lipforcing.media.faces import parse_face
    from lipforcing.media.inputs import check_source, check_speech

    face = parse_face(args.face)
    avatar = getattr(args, "avatar", None)
    if not args.video and not avatar:
        raise UserError("give --video (a face to lip-sync) or --avatar NAME.avatar")
    if not args.video and not args.audio:
        raise UserError("--avatar without --video needs --audio (the speech to drive it with)")
    options.device_and_dtype(args)  # an unusable --device / --dtype, before the media
    out = Path(args.out)
    if out.suffix.lower() not in {".mp4", ".mov", ".mkv"}:
        raise UserError(f"--out must be an .mp4/.mov/.mkv file, got {out.name}")
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give a file name")
    inputs = [Path(p) for p in (args.video, args.audio, avatar) if p]
    if any(out.resolve() == p.resolve() for p in inputs):
        raise UserError(f"--out {out} would overwrite an input")
    if args.video:
        check_source(args.video, need_audio=args.audio is None)
    if args.audio:
        check_speech(args.audio)
    return face, out


def run(args: argparse.Namespace) -> int:
    from lipforcing.errors import MediaError
    from lipforcing.media.io import read_audio, read_soundtrack, write_video
    from lipforcing.media.vad import SilenceGateConfig
    from lipforcing.streaming.offline import conform_fps, lipsync_offline

    face, out = check_inputs(args)
    pipeline = options.load_pipeline(args)
    rate = pipeline.preset.audio.sample_rate
    if args.audio:
        audio = read_audio(args.audio, sample_rate=rate)
    else:
        audio = read_soundtrack(args.video, sample_rate=rate)
        if audio is None:
            raise MediaError(f"{Path(args.video).name}: the soundtrack is empty; give --audio")
    source = options.load_source(args, pipeline, face=face)
    if args.video:
        print(source.face_report() + "; frames without it are left untouched")
    gate = SilenceGateConfig(enabled=not args.no_silence_gate)
    result = lipsync_offline(
        pipeline, source, audio, seed=args.seed, progress=True, silence_gate=gate
    )
    fps = source.source_fps or result.fps
    frames = conform_fps(result.frames, result.fps, fps)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_video(out, frames, fps, audio=audio, sample_rate=rate)
    st = result.stats
    print(
        f"wrote {out} ({len(frames)} frames, {fps:g} fps, {frames.shape[2]}x{frames.shape[1]}); "
        f"generation {st.gen_fps:.1f} FPS, first chunk {1000 * st.first_chunk_compute_s:.0f} ms"
    )
    return 0
