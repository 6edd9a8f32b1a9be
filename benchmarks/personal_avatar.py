"""Personal-avatar measurements (issue 20) on footage the developer supplies.

    # engine FPS with an avatar vs the shipped student, same idle base and audio (3 runs each)
    python benchmarks/personal_avatar.py fps me.avatar speech.wav
    # --init builtin vs scratch, held-out: each build's codec (mouth PSNR / SSIM of its
    # reconstruction of the held-out crops) and SyncNet (Sync-C / offset on the real held-out
    # footage with its own audio); the shipped networks as a reference
    python benchmarks/personal_avatar.py inits me-builtin.avatar.partial me-scratch.avatar.partial
    # a create at a reduced training budget (teacher / Stage 1 / Stage 2 steps, report windows),
    # resuming whatever finished stages its partial folder holds
    python benchmarks/personal_avatar.py budget --steps 20 10 2 --windows 4 --out me.avatar \
        a.mp4 b.mp4

Builds keep their partial folder (``--keep-work``) so ``inits`` can read both. Results print as
JSON with the commit and the load average (the machine may be shared: see the figures' notes).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import torch

RUNS = 3  # timed runs per pipeline (medians reported)
FPS_SECONDS = 8.0  # seconds of driving audio per FPS run
SR = 16_000


def commit() -> str:
    try:
        cmd = ["git", "rev-parse", "--short", "HEAD"]
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def engine_fps(avatar: Path, audio_path: Path) -> dict:
    from lipforcing.avatar import Avatar
    from lipforcing.media.io import read_audio
    from lipforcing.streaming.offline import lipsync_offline
    from lipforcing.streaming.pipeline import Pipeline, shipped_checkpoint

    a = Avatar.load(avatar)
    pipes = {"avatar": a.pipeline(), "shipped": Pipeline.load(shipped_checkpoint())}
    source = a.source(pipes["avatar"].preset.media)
    audio = read_audio(audio_path)[: int(SR * FPS_SECONDS)]
    for p in pipes.values():
        lipsync_offline(p, source, audio[:SR], seed=0)  # warm-up
    runs: dict[str, list[float]] = {k: [] for k in pipes}
    for _ in range(RUNS):  # alternating, so both see the same load
        for k, p in pipes.items():
            runs[k].append(float(lipsync_offline(p, source, audio, seed=0).stats.gen_fps))
    return {k: {"runs": v, "median": float(np.median(v))} for k, v in runs.items()}


def _heldout(partial: Path):
    from lipforcing.data.preprocess import find_shards, load_shard

    for shard in find_shards([partial / "heldout"]):
        a, _ = load_shard(shard)
        usable = np.asarray(a.get("usable", a["found"]), bool)
        yield np.asarray(a["crops"]), usable, np.asarray(a["audio"], np.float32)


def _codec_scores(codec_path: Path, clips, preset) -> dict:
    from lipforcing.avatar.scoring import codec_reconstruction, mouth_region
    from lipforcing.codecs import load_codec
    from lipforcing.evaluation.image_metrics import psnr, ssim

    class Nets:  # what codec_reconstruction reads
        pipeline = type("P", (), {"codec": load_codec(codec_path).eval()})

    scores, weights = [], []
    for crops, usable, _ in clips:
        rec = codec_reconstruction(Nets, crops)
        keep = usable[: len(rec)]
        a = mouth_region(rec[keep], preset)
        b = mouth_region(crops[: len(rec)][keep], preset)
        scores.append((np.mean(np.minimum(psnr(a, b), 100.0)), np.mean(ssim(a, b))))
        weights.append(int(keep.sum()))
    psnr_, ssim_ = np.average(np.array(scores), axis=0, weights=weights)
    return {"mouth_psnr": float(psnr_), "mouth_ssim": float(ssim_)}


def _syncnet_scores(path: Path, clips) -> list[dict]:
    from lipforcing.evaluation.sync import sync_search
    from lipforcing.evaluation.syncnet import load_syncnet

    net = load_syncnet(path).eval()
    out = []
    for crops, _, audio in clips:
        r = sync_search(net, crops, audio)
        out.append({"sync_c": r.sync_c, "sync_d": r.sync_d, "offset": r.offset})
    return out


def compare_inits(builtin: Path, scratch: Path) -> dict:
    from lipforcing.config import get_preset
    from lipforcing.streaming.pipeline import shipped_asset

    preset = get_preset("tiny")
    clips = list(_heldout(builtin))
    out: dict = {"heldout_frames": int(sum(len(c[0]) for c in clips))}
    codecs = {"shipped": shipped_asset("codec.safetensors")}
    nets = {"shipped": shipped_asset("syncnet.safetensors")}
    for name, partial in (("builtin", builtin), ("scratch", scratch)):
        codecs[name] = partial / "codec" / "codec.safetensors"
        nets[name] = partial / "syncnet" / "syncnet.safetensors"
    for name, path in codecs.items():
        out[f"codec_{name}"] = _codec_scores(path, clips, preset)
    for name, path in nets.items():
        out[f"syncnet_{name}"] = _syncnet_scores(path, clips)
    return out


def budget_create(videos: list[str], out: Path, steps: list[int], windows: int) -> dict:
    from lipforcing.avatar.config import avatar_config, avatar_recipe_steps
    from lipforcing.avatar.create import create_avatar

    cfg = avatar_config("builtin")
    cfg = dataclasses.replace(cfg, recipe=avatar_recipe_steps(*steps), report_windows=windows)
    create_avatar(videos, out, cfg, keep_work=True)
    report = json.loads((out / "report" / "report.json").read_text())
    return {"targets": report["targets"], "summary": report["summary"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    f = sub.add_parser("fps")
    f.add_argument("avatar", type=Path)
    f.add_argument("audio", type=Path)
    i = sub.add_parser("inits")
    i.add_argument("builtin", type=Path, help="the --init builtin build's partial folder")
    i.add_argument("scratch", type=Path, help="the --init scratch build's partial folder")
    b = sub.add_parser("budget")
    b.add_argument("videos", nargs="+")
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--steps", type=int, nargs=3, required=True, metavar=("TEACHER", "S1", "S2"))
    b.add_argument("--windows", type=int, default=12, help="teacher-vs-student report windows")
    b.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(getattr(args, "threads", 2))
    if args.what == "fps":
        result = engine_fps(args.avatar, args.audio)
    elif args.what == "inits":
        result = compare_inits(args.builtin, args.scratch)
    else:
        result = budget_create(args.videos, args.out, args.steps, args.windows)
    result |= {"commit": commit(), "load_average": os.getloadavg()}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
