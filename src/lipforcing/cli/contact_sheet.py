"""Write a face-tracking contact sheet PNG: frames with landmarks, aligned crops, the mouth mask
and the pasted-back result, for a person to check the media pipeline on a video."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Write a face-tracking contact sheet PNG: frames with landmarks, aligned crops, the mouth mask
and the pasted-back result, to check the face tracking on a video by eye."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", help="input video")
    parser.add_argument("--out", required=True, help="output .png")
    parser.add_argument("--preset", default="wan-1.3b", help="preset giving crop size and mask")
    parser.add_argument("--columns", type=int, default=8, help="frames shown")
    parser.add_argument("--max-frames", type=int, default=250, help="frames read from the video")
    parser.add_argument("--face", help="face to track: index (0 = leftmost) or box x0,y0,x1,y1")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lipforcing.config import get_preset
    from lipforcing.errors import UserError
    from lipforcing.media.contact_sheet import contact_sheet, write_png
    from lipforcing.media.faces import parse_face, require_face, track_faces
    from lipforcing.media.io import read_video

    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise UserError(f"--out must be a .png file, got {out.name}")
    if args.columns < 1:
        raise UserError("--columns must be at least 1")
    try:
        media = get_preset(args.preset).media
    except ValueError as e:
        raise UserError(str(e)) from None
    clip = read_video(args.video, fps=media.fps, max_frames=args.max_frames)
    track = track_faces(clip.frames, media, face=parse_face(args.face))
    require_face(track, Path(args.video).name)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_png(out, contact_sheet(clip.frames, track, media, columns=args.columns))
    print(
        f"wrote {out} (face found in {100 * track.found_ratio:.1f}% of {len(clip.frames)} frames)"
    )
    return 0
