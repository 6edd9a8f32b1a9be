"""``lipforcing eval --pred DIR_OR_FILE --gt DIR_OR_FILE [--audio F] [--syncnet CKPT |
--syncnet-v2 syncnet_v2.model] [--arcface backbone.pth] [--bench JSON] [--trim] [--full-frame]
[--align arcface5|latentsync3] --out DIR``.

Videos are paired by file name (or given as two files) and read at 25 fps; frame counts must
match exactly unless ``--trim``. Sync audio: ``--audio``, else the gt soundtrack, else
``<gt stem>.wav`` beside it. The ground truth's face is tracked once and the same crops
are cut from both videos (:mod:`lipforcing.evaluation.protocol`). Writes metrics.json,
metrics.csv and metrics.md (Table 1 layout: FVD, FID, SSIM, LPIPS, CSIM, Sync-C, Sync-D, FPS,
TTFF, + LMD; one row per video; which SyncNet / identity network scored).
"""

from __future__ import annotations

import argparse

FPS = 25.0  # evaluation frame rate (SyncNet's)


DESCRIPTION = """\
Evaluate generated videos against ground truth: FVD, FID, SSIM, LPIPS, CSIM, Sync-C,
Sync-D and LMD (and FPS / TTFF from a --bench result). Videos are paired by file name (or given
as two files) and read at 25 fps; frame counts must match unless --trim. Sync audio: --audio,
else the ground truth's soundtrack, else <gt name>.wav beside it. The ground truth's face is
tracked once and the same crops are cut from both videos. Writes metrics.json, metrics.csv and
metrics.md (one row per video; says which SyncNet and identity network scored)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", required=True, help="generated video file or folder")
    parser.add_argument("--gt", required=True, help="ground-truth video file or folder")
    parser.add_argument("--audio", help="driving audio for sync (default: the gt soundtrack)")
    parser.add_argument("--syncnet", help="our LipSyncNet checkpoint (lipforcing train syncnet)")
    parser.add_argument("--syncnet-v2", help="syncnet_python's syncnet_v2.model")
    parser.add_argument(
        "--arcface", help="ArcFace iresnet100 backbone.pth for CSIM (default: dlib)"
    )
    parser.add_argument("--bench", help="benchmark JSON with fps / ttff_s")
    parser.add_argument("--trim", action="store_true", help="cut both videos to the shorter")
    parser.add_argument("--full-frame", action="store_true", help="no face crops (no CSIM/LMD)")
    parser.add_argument("--face", help="ground-truth face: index (0 = leftmost) or x0,y0,x1,y1")
    parser.add_argument(
        "--align",
        choices=("arcface5", "latentsync3"),
        default="arcface5",
        help="how the face crops are placed: arcface5 (5-point ArcFace template, ours) "
        "or latentsync3 (the release's 3-point alignment, the Wan presets' crops)",
    )
    parser.add_argument("--csim-step", type=int, default=5, help="CSIM on every Nth frame")
    parser.add_argument("--fvd-layer", choices=("logits", "pool"), default="logits")
    parser.add_argument("--label", default="prediction", help="method name in metrics.md")
    parser.add_argument("--out", required=True, help="output folder")


def pairs(pred: str, gt: str):
    from pathlib import Path

    from lipforcing.errors import UserError

    p, g = Path(pred), Path(gt)
    if p.is_file() and g.is_file():
        return [(p, g)]
    if not (p.is_dir() and g.is_dir()):
        raise UserError("--pred and --gt must both be files or both be folders")
    found = [(f, g / f.name) for f in sorted(p.iterdir()) if (g / f.name).is_file()]
    if not found:
        raise UserError(f"no file names in {p} match files in {g}")
    return found


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tqdm import tqdm

    from lipforcing.errors import UserError
    from lipforcing.evaluation.evaluate import Evaluator, Networks
    from lipforcing.evaluation.report import write_report
    from lipforcing.media.faces import parse_face
    from lipforcing.media.io import read_audio, read_video

    if args.csim_step < 1:
        raise UserError("--csim-step must be >= 1")
    todo = pairs(args.pred, args.gt)
    face = parse_face(args.face)
    check_media(todo, args)  # every input before the networks load
    bench = _read_bench(args.bench) if args.bench else None
    nets = Networks.load(
        syncnet=args.syncnet,
        syncnet_v2=args.syncnet_v2,
        arcface=args.arcface,
        fvd_layer=args.fvd_layer,
    )
    ev = Evaluator(nets, args.full_frame, args.trim, args.csim_step, face, args.align)
    driving = read_audio(args.audio) if args.audio and nets.syncnet is not None else None
    for p, g in tqdm(todo, desc="eval", unit="video"):
        pv = ev.timed("read", read_video, p, FPS)
        gv = ev.timed("read", read_video, g, FPS)
        audio = driving if driving is not None else gv.audio
        if audio is None and nets.syncnet is not None and g.with_suffix(".wav").is_file():
            audio = read_audio(g.with_suffix(".wav"))  # clips-256 style: speech beside the mp4
        if nets.syncnet is not None and audio is None:
            raise UserError(f"{g.name}: no soundtrack for Sync; give --audio")
        ev.add(p.name, pv.frames, gv.frames, audio)
    result = ev.result(bench)
    write_report(args.out, result, args.label)
    print((Path(args.out) / "metrics.md").read_text())
    print("timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in result["timings_s"].items()))
    return 0


def check_media(todo, args: argparse.Namespace) -> None:
    """Headers and first frames of every video (and the audio Sync will need) before any
    network loads."""
    import math

    from lipforcing.errors import UserError
    from lipforcing.media.inputs import check_source, check_speech

    sync = bool(args.syncnet or args.syncnet_v2)
    if args.audio:
        check_speech(args.audio)
    for p, g in todo:
        check_source(p, math.inf)
        info = check_source(g, math.inf)
        if sync and not args.audio and not info.has_audio:
            if not g.with_suffix(".wav").is_file():
                raise UserError(f"{g.name}: no soundtrack for Sync; give --audio")
            check_speech(g.with_suffix(".wav"))


def _read_bench(path: str) -> dict:
    import json
    from pathlib import Path

    from lipforcing.errors import UserError

    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"--bench {path}: not a readable JSON file ({e})") from None
