"""Render the procedural SynthTalk dataset: talking faces with formant speech in exact sync.

Writes ``<id>.mp4`` + ``<id>.wav`` + ``<id>.npz`` (landmarks, mouth parameters, phonemes) per
clip and ``sheet.png`` (first clips over time, with the mouth opening and the audio envelope).
Clips already written are kept, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Render the procedural SynthTalk dataset: talking faces with formant speech in exact sync.
Writes <id>.mp4, <id>.wav and <id>.npz (landmarks, mouth parameters, phonemes) per clip, and
sheet.png (the first clips over time, with mouth opening and audio envelope). Clips already
written are kept, so an interrupted run resumes."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--clips", type=int, default=8, help="number of clips")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each clip")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first clip")
    parser.add_argument("--size", type=int, default=256, help="frame side in pixels")
    parser.add_argument("--fps", type=float, default=25.0, help="frame rate")
    parser.add_argument("--no-sheet", action="store_true", help="skip sheet.png")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lipforcing.errors import UserError
    from lipforcing.media.synthtalk import write_dataset
    from lipforcing.media.synthtalk.sheet import synthtalk_sheet

    if args.clips < 1 or args.seconds <= 0 or args.size < 64 or args.fps <= 0:
        raise UserError("--clips must be >= 1, --seconds > 0, --size >= 64 and --fps > 0")
    if args.seed < 0:
        raise UserError(f"--seed must be >= 0, got {args.seed}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    paths = write_dataset(out, args.clips, args.seconds, args.seed, size=args.size, fps=args.fps)
    print(f"{len(paths)} clips in {out}")
    if not args.no_sheet:
        sheet = synthtalk_sheet(
            [args.seed + i for i in range(min(4, args.clips))],
            args.seconds,
            size=args.size,
            fps=args.fps,
        )
        import cv2

        cv2.imwrite(str(out / "sheet.png"), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
        print(f"contact sheet: {out / 'sheet.png'}")
    return 0
