"""Train the tiny latent codec on preprocessed shards (aligned face crops).

``lipforcing train codec SHARDS... --out DIR [--eval SHARDS...] [--steps N]`` writes
``DIR/codec.safetensors``, ``DIR/report.json`` (held-out PSNR, whole and mouth region) and
``DIR/recon.png``; ``DIR/state.pt`` makes an interrupted run resume. ``--synthtalk N`` renders
N SynthTalk clips (and 4 held-out ones) into ``DIR/data`` and trains on them.

``--evaluate CODEC`` only measures a trained codec on ``--eval`` / ``--eval-extra`` shards.

The shipped ``lipforcing/assets/tiny/codec.safetensors`` was trained on SynthTalk only (the
CPU recipe's 96 training clips, seeds 0-95; held out: its 8 test clips, seeds 50000-50007)::

    lipforcing synthtalk --out runs/tiny/synthtalk/train --clips 96 --seconds 4 --seed 0
    lipforcing synthtalk --out runs/tiny/synthtalk/test --clips 8 --seconds 4 --seed 50000
    lipforcing preprocess runs/tiny/synthtalk/train --out runs/tiny/shards/train --preset tiny
    lipforcing preprocess runs/tiny/synthtalk/test --out runs/tiny/shards/test --preset tiny
    OMP_NUM_THREADS=1 lipforcing train codec runs/tiny/shards/train \
        --eval runs/tiny/shards/test --out runs/codec --steps 1500 --seed 0

(about 12 minutes on one shared CPU core). Real clips are used for reporting only::

    lipforcing preprocess /work/shared/data/clips-256 --out shards_real --preset tiny
    lipforcing train codec --evaluate src/lipforcing/assets/tiny/codec.safetensors \
        --eval runs/tiny/shards/test --eval-extra shards_real --out runs/codec_eval
"""

from __future__ import annotations

import argparse

HELDOUT_SEED = 60_000  # SynthTalk seeds of the held-out clips made by --synthtalk
EVERY = 500  # steps between the codecs written along the way


DESCRIPTION = """\
Train the tiny latent codec on preprocessed shards (aligned face crops). Writes
OUT/codec.safetensors, OUT/report.json (held-out PSNR, whole crop and mouth region) and
OUT/recon.png; OUT/state.pt lets an interrupted run resume. --synthtalk N renders N SynthTalk
clips (and 4 held-out ones) into OUT/data and trains on them. --evaluate CODEC only measures a
trained codec on the --eval / --eval-extra shards.

How the shipped codec was trained (SynthTalk only; about 12 minutes on one CPU core):
  lipforcing synthtalk --out runs/tiny/synthtalk/train --clips 96 --seconds 4 --seed 0
  lipforcing synthtalk --out runs/tiny/synthtalk/test --clips 8 --seconds 4 --seed 50000
  lipforcing preprocess runs/tiny/synthtalk/train --out runs/tiny/shards/train --preset tiny
  lipforcing preprocess runs/tiny/synthtalk/test --out runs/tiny/shards/test --preset tiny
  lipforcing train codec runs/tiny/shards/train --eval runs/tiny/shards/test \\
      --out runs/codec --steps 1500 --seed 0"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", nargs="*", metavar="SHARDS", help="folders of shards")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--eval", nargs="*", default=[], help="held-out shard folders")
    parser.add_argument(
        "--eval-extra",
        nargs="*",
        default=[],
        help="more shard folders to report PSNR on separately (e.g. real clips)",
    )
    parser.add_argument(
        "--evaluate",
        metavar="CODEC",
        default=None,
        help="no training: evaluate this codec checkpoint on --eval / --eval-extra shards",
    )
    parser.add_argument("--synthtalk", type=int, default=0, help="render N SynthTalk clips")
    parser.add_argument("--preset", default="tiny", help="preset whose codec config is used")
    parser.add_argument("--init", help="start from this codec's weights (fine-tuning)")
    parser.add_argument("--steps", type=int, default=2000, help="optimiser steps")
    parser.add_argument("--batch", type=int, default=8, help="windows per step")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--frames", type=int, default=5, help="frames per window (1 + 4k)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")


def _synthtalk_shards(out, clips: int, preset):
    from lipforcing.data.preprocess import preprocess
    from lipforcing.media.synthtalk import write_dataset

    dirs = {}
    for name, count, seed in (("train", clips, 0), ("heldout", 4, HELDOUT_SEED)):
        raw, shards = out / "data" / "synthtalk" / name, out / "data" / "shards" / name
        write_dataset(raw, count, 4.0, seed)
        if not (shards / "report.json").exists():
            preprocess([raw], shards, preset, progress=True)
        dirs[name] = str(shards)
    return [dirs["train"]], [dirs["heldout"]]


def _reached(state_path, step: int) -> bool:
    """Whether the run's saved state is at ``step`` or later."""
    from lipforcing.distill.checkpointing import saved_step

    saved = saved_step(state_path)
    return saved is not None and saved >= step


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np
    import torch

    from lipforcing.codecs import build_codec
    from lipforcing.codecs.train import CodecTrainConfig, CropWindows, fit_codec
    from lipforcing.config import get_preset
    from lipforcing.data.preprocess import find_shards
    from lipforcing.errors import UserError

    try:
        preset = get_preset(args.preset)
    except ValueError as e:
        raise UserError(str(e)) from None
    if args.steps < 1 or args.batch < 1 or args.synthtalk < 0:
        raise UserError("--steps and --batch must be >= 1, --synthtalk >= 0")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    extra_dirs = find_shards(args.eval_extra) if args.eval_extra else []
    if args.evaluate:
        return evaluate_only(args, preset, out, extra_dirs)
    train_roots, eval_roots = list(args.data), list(args.eval)
    if args.synthtalk:
        st_train, st_eval = _synthtalk_shards(out, args.synthtalk, preset)
        train_roots += st_train
        eval_roots += st_eval
    if not train_roots:
        raise UserError("give shard folders or --synthtalk N")
    train_dirs = find_shards(train_roots)
    eval_dirs = find_shards(eval_roots) if eval_roots else train_dirs[-2:]
    if not eval_roots:
        train_dirs = train_dirs[:-2] or train_dirs
    crop = np.load(train_dirs[0] / "crops.npy", mmap_mode="r").shape[1]
    if crop != preset.codec.image_size:
        raise UserError(
            f"shards have {crop}px crops; preset {preset.name} needs "
            f"{preset.codec.image_size}px (preprocess with --preset {preset.name})"
        )

    if args.frames < 1 or (args.frames - 1) % 4:
        raise UserError(f"--frames must be 1 + 4k, got {args.frames}")
    cfg = CodecTrainConfig(
        steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed, frames=args.frames
    )
    torch.manual_seed(cfg.seed)
    codec = build_codec(preset.codec, weights=args.init)
    data = CropWindows(train_dirs, cfg.frames)
    state_path = out / "state.pt"
    for stop in range(EVERY, cfg.steps, EVERY):  # a usable codec along the way
        if not _reached(state_path, stop):
            history = fit_codec(codec, data, cfg, state_path, stop_at=stop)
            finish(codec, out, cfg, data, eval_dirs, preset, history, train_dirs, stop)
    history = fit_codec(codec, data, cfg, state_path)
    finish(codec, out, cfg, data, eval_dirs, preset, history, train_dirs, cfg.steps, extra_dirs)
    return 0


def evaluate_only(args, preset, out, extra_dirs) -> int:
    """``--evaluate CODEC``: PSNR of a trained codec on shards; writes report.json + recon.png."""
    import json

    import numpy as np

    from lipforcing.codecs import load_codec
    from lipforcing.codecs.train import evaluate_shards, recon_sheet
    from lipforcing.data.preprocess import find_shards
    from lipforcing.errors import UserError
    from lipforcing.media.mask import mouth_mask

    roots = list(args.eval) + list(args.data)
    eval_dirs = find_shards(roots) if roots else []
    if not eval_dirs and not extra_dirs:
        raise UserError("--evaluate needs shard folders (--eval, --eval-extra or positional)")
    codec = load_codec(args.evaluate).eval()
    mask = mouth_mask(preset.media)
    report = {"codec": str(args.evaluate)}
    if eval_dirs:
        report["heldout"] = evaluate_shards(codec, eval_dirs, mask)
    if extra_dirs:
        report["extra"] = evaluate_shards(codec, extra_dirs, mask)
    first = (eval_dirs or extra_dirs)[0]
    recon_sheet(codec, np.load(first / "crops.npy", mmap_mode="r"), out / "recon.png")
    (out / "report.json").write_text(json.dumps(report, indent=1))
    for name in ("heldout", "extra"):
        if name in report:
            r = report[name]
            print(f"{name}: PSNR {r['psnr']:.2f} dB (mouth {r['psnr_mouth']:.2f} dB)")
    return 0


def finish(
    codec, out, cfg, data, eval_dirs, preset, history, train_dirs, step, extra_dirs=()
) -> None:
    """Measure latent statistics, evaluate on held-out shards, write codec + report + PNG."""
    import json

    import numpy as np

    from lipforcing.codecs import save_codec
    from lipforcing.codecs.train import evaluate_shards, recon_sheet, set_latent_stats
    from lipforcing.media.mask import mouth_mask

    codec.eval()
    size = preset.codec.image_size
    set_latent_stats(codec, [data.sample(np.random.default_rng(i), 4, size) for i in range(4)])
    report = {
        "step": step,
        "config": cfg.__dict__,
        "train_shards": len(train_dirs),
        "train_data": sorted({str(d.parent) for d in train_dirs}),
        "heldout": evaluate_shards(codec, eval_dirs, mouth_mask(preset.media)),
        "history": history,
        "latent_std": codec.latent_std.tolist(),
    }
    if extra_dirs:
        report["extra"] = evaluate_shards(codec, list(extra_dirs), mouth_mask(preset.media))
    extra = {"step": step, "heldout_psnr": report["heldout"]["psnr"]}
    path = save_codec(out / "codec.safetensors", codec, extra=extra)
    recon_sheet(codec, np.load(eval_dirs[0] / "crops.npy", mmap_mode="r"), out / "recon.png")
    (out / "report.json").write_text(json.dumps(report, indent=1))
    h = report["heldout"]
    print(
        f"step {step}: held-out PSNR {h['psnr']:.2f} dB "
        f"(mouth {h.get('psnr_mouth', float('nan')):.2f} dB); wrote {path}, report.json, recon.png"
    )
