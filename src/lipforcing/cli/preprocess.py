"""Turn talking-face videos (files or folders; SynthTalk folders use their .npz landmarks) into
training/evaluation shards: aligned crops, mouth mask, transforms, audio features, raw audio."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Turn talking-face videos (files or folders; SynthTalk folders use their .npz landmarks) into
training and evaluation shards: aligned face crops, mouth mask, transforms, audio features and
raw audio."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="video files or folders")
    parser.add_argument("--out", required=True, help="output folder of shards")
    parser.add_argument("--preset", default="tiny", help="preset fixing crop size and features")
    parser.add_argument("--fps", type=float, help="conform video to this rate (preset default)")
    parser.add_argument("--max-frames", type=int, help="use at most this many frames per video")
    parser.add_argument("--wav2vec2", help="local wav2vec2 model folder (wav2vec2 presets)")
    parser.add_argument("--face", help="face to track: index (0 = leftmost) or box x0,y0,x1,y1")
    parser.add_argument(
        "--resolution", type=int, help="aligned crop side in pixels (default: the preset's)"
    )
    parser.add_argument("--mask", help="mouth mask image, white = keep (LatentSync's mask.png)")


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import sys
    from pathlib import Path

    from lipforcing.config import get_preset
    from lipforcing.data.preprocess import preprocess
    from lipforcing.errors import UserError
    from lipforcing.media.audio import Wav2Vec2Features
    from lipforcing.media.faces import parse_face

    try:
        preset = get_preset(args.preset)
    except ValueError as e:
        raise UserError(str(e)) from None
    if args.fps is not None:
        if args.fps <= 0:
            raise UserError(f"--fps must be positive, got {args.fps}")
        media = dataclasses.replace(preset.media, fps=args.fps)
        audio = dataclasses.replace(preset.audio, fps=args.fps)
        if audio.feature_dim != preset.audio.feature_dim:  # mel windows depend on the rate
            raise UserError(
                f"--fps {args.fps:g} changes the size of preset {preset.name}'s audio features "
                f"({preset.audio.kind}, defined at {preset.audio.fps:g} fps)"
            )
        preset = dataclasses.replace(preset, media=media, audio=audio)
    if args.resolution is not None:
        try:
            preset = preset.at_resolution(args.resolution)
        except ValueError as e:
            raise UserError(f"--resolution: {e}") from None
    if args.mask is not None:
        from lipforcing.media.mask import mouth_mask

        media = dataclasses.replace(preset.media, mask_image=args.mask)
        mouth_mask(media)  # a missing or unreadable image fails here, before any work
        preset = dataclasses.replace(preset, media=media)
    w2v = None
    if preset.audio.kind == "wav2vec2":
        if not args.wav2vec2:
            raise UserError(f"preset {preset.name} uses wav2vec2 features: pass --wav2vec2 DIR")
        w2v = Wav2Vec2Features(args.wav2vec2)
    face = parse_face(args.face)
    report = preprocess(
        args.inputs, args.out, preset, max_frames=args.max_frames, wav2vec2=w2v, face=face
    )
    for path, reason in report.failed.items():
        print(f"skipped {path}: {reason}", file=sys.stderr)
    print(
        f"{len(report.done)} written, {len(report.skipped)} already done, "
        f"{len(report.failed)} failed -> {Path(args.out) / 'report.json'}"
    )
    if not report.done and not report.skipped:
        raise UserError(f"no usable video among the inputs (see {Path(args.out) / 'report.json'})")
    return 0
