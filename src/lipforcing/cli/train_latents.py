"""Encode preprocessed shards into the latent cache the training stages read.

``lipforcing train latents SHARDS --codec Wan2.1_VAE.pth --out latents_train.pt`` cuts every
shard into windows of ``--latent-frames`` latent frames (21: the release's 81-frame clips) and
encodes each window, its mouth-masked copy, reference frame and reference sequence once with
the codec (:func:`lipforcing.distill.latents.encode_dataset`); ``train teacher | stage1 |
stage2 --latents`` then train on the cache without touching the codec again.
"""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Encode preprocessed shards (lipforcing preprocess) into the latent cache that 'train teacher',
'train stage1' and 'train stage2' read with --latents: every window of --latent-frames latent
frames, its mouth-masked copy, reference frame and reference sequence, encoded once with
--codec (the Wan 2.1 VAE at Wan scale)."""

RELEASE_LATENT_FRAMES = 21  # the release trains on 81-frame clips: 1 + 4 x 20 frames


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lipforcing.cli import options

    parser.add_argument("shards", help="folder of shards written by 'lipforcing preprocess'")
    parser.add_argument("--codec", required=True, help="codec weights (Wan2.1_VAE.pth, ...)")
    parser.add_argument("--out", required=True, help="output latent cache (.pt)")
    parser.add_argument(
        "--latent-frames",
        type=int,
        default=RELEASE_LATENT_FRAMES,
        help="latent frames per training window (a multiple of 3)",
    )
    parser.add_argument("--batch", type=int, default=1, help="windows encoded per codec call")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    options.add_device(parser)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from lipforcing.cli import options
    from lipforcing.codecs import load_codec
    from lipforcing.data.datasets import ShardDataset
    from lipforcing.distill.latents import encode_dataset, save_cache
    from lipforcing.errors import UserError

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    if out.suffix != ".pt":
        raise UserError(f"{out}: the latent cache is written as a .pt file")
    if not Path(args.codec).exists():
        raise UserError(f"{args.codec}: no such file or folder")
    device, dtype = options.device_and_dtype(args)
    dataset = ShardDataset(args.shards, latent_frames=args.latent_frames)
    codec = load_codec(args.codec).to(device=device, dtype=dtype).eval()
    cache = encode_dataset(_OnDevice(dataset, device, dtype), codec, batch=args.batch)
    cache = {k: v.float().cpu() if torch.is_tensor(v) else v for k, v in cache.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_cache(cache, out)
    print(f"{len(dataset)} windows of {args.latent_frames} latent frames -> {out}")
    return 0


PIXELS = ("video", "ref", "ref_seq", "mask")  # what the codec reads (audio stays as it is)


class _OnDevice:
    """The dataset's items with their pixel tensors on the codec's device and dtype."""

    def __init__(self, dataset, device, dtype) -> None:
        self.dataset, self.device, self.dtype = dataset, device, dtype

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        item = dict(self.dataset[i])
        for k in PIXELS:
            item[k] = item[k].to(self.device, self.dtype)
        return item
