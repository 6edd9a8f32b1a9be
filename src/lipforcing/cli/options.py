"""Options several commands share: how weights are named, device and dtype.

``--checkpoint PATH [--adapter PATH ...] [--preset FAMILY] [--lora-alpha A]`` names a model in
any layout :mod:`lipforcing.models.weights` reads; ``--device auto|cpu|cuda[:i]`` and
``--dtype auto|bf16|fp16|fp32`` place it (:mod:`lipforcing.devices`).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_weights(
    parser: argparse.ArgumentParser,
    flag: str = "--checkpoint",
    help: str = "model weights: our .safetensors, lipforcing_14b.pth, Wan shards/index/folder, "
    "a diffusers folder or a distributed-checkpoint folder",
    *,
    family: bool = True,
) -> None:
    parser.add_argument(flag, help=help)
    parser.add_argument(
        "--adapter",
        action="append",
        default=[],
        metavar="PATH",
        help="adapter applied on top, in order (OmniAvatar LoRA + audio, a Stage-2 delta); "
        "repeatable",
    )
    if family:
        parser.add_argument(
            "--preset", help="preset family the weights must belong to (default: by width)"
        )
    parser.add_argument(
        "--lora-alpha", type=float, help="LoRA alpha where a file has no .alpha key (default 64)"
    )


def weights_spec(args: argparse.Namespace, path: str | Path, family: str | None = None):
    """The :class:`~lipforcing.models.weights.WeightsSpec` the options name."""
    from lipforcing.models.weights import WeightsSpec

    family = family if family is not None else getattr(args, "preset", None)
    return WeightsSpec(
        Path(path),
        tuple(Path(a) for a in getattr(args, "adapter", []) or []),
        family=family,
        lora_alpha=getattr(args, "lora_alpha", None),
    )


def add_device(parser: argparse.ArgumentParser, *, dtype: bool = True) -> None:
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N"
    )
    if dtype:
        parser.add_argument(
            "--dtype", default="auto", help="auto (bf16 on CUDA, fp32 on CPU), bf16, fp16, fp32"
        )


def device_and_dtype(args: argparse.Namespace):
    """(torch.device, torch.dtype) from ``--device`` / ``--dtype``."""
    from lipforcing.devices import resolve_device, resolve_dtype

    device = resolve_device(args.device)
    return device, resolve_dtype(getattr(args, "dtype", "auto"), device)


def add_student(parser: argparse.ArgumentParser) -> None:
    """The streaming student and what runs beside it (sync, serve, demo)."""
    add_weights(
        parser,
        help="student weights in any accepted layout (default: the built-in tiny student)",
    )
    parser.add_argument("--codec", help="codec / VAE (default: codec.safetensors beside it)")
    parser.add_argument("--decoder", help="fast decoder used instead of the codec's (taew2_1.pth)")
    parser.add_argument("--wav2vec2", help="local wav2vec2 model dir (wav2vec2-audio presets)")


def load_pipeline(args: argparse.Namespace):
    """The :class:`~lipforcing.streaming.pipeline.Pipeline` the student options name."""
    from lipforcing.streaming.pipeline import Pipeline, shipped_checkpoint

    device, dtype = device_and_dtype(args)
    return Pipeline.load(
        weights_spec(args, args.checkpoint or shipped_checkpoint()),
        args.codec,
        device=device,
        dtype=dtype,
        wav2vec2=args.wav2vec2,
        decoder=args.decoder,
    )
