"""``lipforcing eval --pred DIR_OR_FILE --gt DIR_OR_FILE [--audio F] [--syncnet CKPT |
--syncnet-v2 syncnet_v2.model] [--bench JSON] [--trim] --out DIR``.

Videos are paired by file name (or given as two files), read at 25 fps; frame counts must
match exactly unless ``--trim`` (then both are cut to the shorter, stated in the report). The
frames are compared as given: pass aligned face crops cut with the SAME boxes for prediction
and ground truth (detect once on the ground truth) — independent detection inflates FID.
Not computed here yet: FVD and CSIM (shown as "-").
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", required=True, help="generated video file or folder")
    parser.add_argument("--gt", required=True, help="ground-truth video file or folder")
    parser.add_argument("--audio", help="driving audio for sync (default: the gt soundtrack)")
    parser.add_argument("--syncnet", help="our LipSyncNet checkpoint (lipforcing train syncnet)")
    parser.add_argument("--syncnet-v2", help="syncnet_python's syncnet_v2.model")
    parser.add_argument("--bench", help="benchmark JSON with fps / ttff_s")
    parser.add_argument("--trim", action="store_true", help="cut both videos to the shorter")
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
    import json
    import time
    from collections import defaultdict
    from pathlib import Path

    import numpy as np
    from tqdm import tqdm

    from lipforcing.errors import UserError
    from lipforcing.evaluation.fid import FIDNet, fid
    from lipforcing.evaluation.image_metrics import psnr, ssim
    from lipforcing.evaluation.lpips import LPIPS, lpips_frames
    from lipforcing.evaluation.report import write_report
    from lipforcing.evaluation.sync import sync_scores
    from lipforcing.media.io import read_audio, read_video

    timings: dict[str, float] = defaultdict(float)

    def timed(stage, fn, *a):
        t0 = time.perf_counter()
        r = fn(*a)
        timings[stage] += time.perf_counter() - t0
        return r

    syncnet, label = None, None
    if args.syncnet:
        from lipforcing.evaluation.syncnet import load_syncnet

        syncnet, label = load_syncnet(args.syncnet), "LipSyncNet (ours)"
    elif args.syncnet_v2:
        from lipforcing.evaluation.syncnet import load_syncnet_v2

        syncnet, label = load_syncnet_v2(args.syncnet_v2), "SyncNetV2 (syncnet_python)"
    lp, fidnet = LPIPS("alex"), FIDNet()
    rows, pf, gf, notes = [], [], [], []
    for p, g in tqdm(pairs(args.pred, args.gt), desc="eval", unit="video", disable=None):
        pv, gv = timed("read", read_video, p, 25.0), timed("read", read_video, g, 25.0)
        n = min(len(pv.frames), len(gv.frames))
        if len(pv.frames) != len(gv.frames):
            if not args.trim:
                raise UserError(f"{p.name}: {len(pv.frames)} vs {len(gv.frames)} frames (--trim)")
            notes.append(f"{p.name}: trimmed {len(pv.frames)} / {len(gv.frames)} -> {n} frames")
        a, b = pv.frames[:n], gv.frames[:n]
        row = {"video": p.name, "frames": n}
        row["ssim"] = float(timed("ssim", ssim, a, b).mean())
        row["psnr"] = float(np.mean(np.minimum(timed("psnr", psnr, a, b), 100.0)))
        row["lpips"] = float(timed("lpips", lpips_frames, lp, a, b).mean())
        pf.append(timed("fid_features", fidnet.features, a))
        gf.append(timed("fid_features", fidnet.features, b))
        if syncnet is not None:
            audio = read_audio(args.audio) if args.audio else gv.audio
            if audio is None:
                raise UserError(f"{g.name}: no soundtrack; give --audio")
            c, d, off = timed("sync", sync_scores, syncnet, a, audio)
            row |= {"sync_c": c, "sync_d": d, "sync_offset": off}
        rows.append(row)
    summary = {k: float(np.mean([r[k] for r in rows])) for k in ("ssim", "psnr", "lpips")}
    summary["fid"] = timed("fid", fid, pf, gf) if sum(map(len, pf)) > 1 else None
    if syncnet is not None:
        summary |= {k: float(np.mean([r[k] for r in rows])) for k in ("sync_c", "sync_d")}
        notes.append(f"Sync-C / Sync-D by {label}")
    if args.bench:
        bench = json.loads(Path(args.bench).read_text())
        summary |= {k: bench.get(k) for k in ("fps", "ttff_s")}
    notes.append("FVD and CSIM: not computed by this version")
    result = {"summary": summary, "videos": rows, "timings_s": dict(timings), "notes": notes}
    write_report(args.out, result)
    print((Path(args.out) / "metrics.md").read_text())
    print("timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    return 0
