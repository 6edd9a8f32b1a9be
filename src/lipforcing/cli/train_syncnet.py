"""Train our LipSyncNet (reward R and tiny-scale sync metric) on preprocessed shards.

``lipforcing train syncnet SHARDS... --out DIR [--steps N] [--quick] [--holdout NAME...]``
writes ``DIR/syncnet.safetensors`` (+ ``.json`` with config, steps and held-out offset
accuracy). SHARDS are folders of shards written by ``lipforcing preprocess`` (or a single shard).
"""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Train our LipSyncNet (the Stage-2 reward and the sync metric at the tiny scale) on
preprocessed shards. Writes OUT/syncnet.safetensors and OUT/syncnet.json (config, steps,
held-out offset accuracy). SHARDS are folders written by 'lipforcing preprocess' (or single
shards)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", nargs="*", metavar="SHARDS", help="folders of shards")
    parser.add_argument("--data", dest="data_opt", nargs="+", default=[], help="more shards")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--steps", type=int, default=1500, help="optimiser steps")
    parser.add_argument("--quick", action="store_true", help="200 steps")
    parser.add_argument("--batch", type=int, default=32, help="windows per step")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--holdout", nargs="*", default=[], help="shard names kept for testing")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init", help="start from this LipSyncNet checkpoint (fine-tuning)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")


def run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    import torch

    from lipforcing.data.preprocess import find_shards, load_shard
    from lipforcing.errors import UserError
    from lipforcing.evaluation.syncnet import (
        LipSyncNet,
        LipSyncNetConfig,
        load_syncnet,
        save_syncnet,
    )
    from lipforcing.evaluation.syncnet_train import (
        Clip,
        SyncNetTrainConfig,
        offset_accuracy,
        train_syncnet,
    )

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    dirs = find_shards(args.data + args.data_opt)
    clips = {d.name: Clip.from_arrays(load_shard(d)[0]) for d in dirs}
    held = [clips.pop(n) for n in args.holdout if n in clips]
    train = list(clips.values())
    a_dim = train[0].feats.shape[1]
    model = (
        load_syncnet(args.init) if args.init else LipSyncNet(LipSyncNetConfig(n_mels=a_dim // 20))
    )
    if model.cfg.audio_dim != a_dim:
        raise UserError(f"{args.init} reads {model.cfg.audio_dim}-d audio; the shards have {a_dim}")
    steps = 200 if args.quick else args.steps
    cfg = SyncNetTrainConfig(steps=steps, batch=args.batch, lr=args.lr, seed=args.seed)
    t0 = time.time()
    train_syncnet(model, train, cfg, Path(args.out) / "state.pt")
    extra = {"steps": steps, "train_s": round(time.time() - t0, 1), "train_shards": list(clips)}
    if held:
        extra |= {"holdout": args.holdout, **offset_accuracy(model, held)}
        print(f"held-out offset accuracy {extra['offset_accuracy']:.3f} ({extra['segments']})")
    out = Path(args.out) / "syncnet.safetensors"
    save_syncnet(model.eval(), out, extra)
    print(f"wrote {out}")
    return 0
