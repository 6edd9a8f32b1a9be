"""Options several commands share: how weights are named, device and dtype, how the student runs.

``--checkpoint PATH [--adapter PATH ...] [--preset FAMILY] [--lora-alpha A]`` names a model in
any layout :mod:`lipforcing.models.weights` reads; ``--device auto|cpu|cuda[:i]`` and
``--dtype auto|bf16|fp16|fp32`` place it (:mod:`lipforcing.devices`); ``--compile
--cuda-graphs --two-streams --fp8 --sdpa`` are the chunk runtime's execution options
(:mod:`lipforcing.streaming.options`), printed as one ``note:`` line each when the device
cannot run them.
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
    parser.add_argument(
        "--avatar",
        metavar="NAME.avatar",
        help="a personal avatar (lipforcing avatar create): its student, codec and, unless "
        "--video is given, its own footage as the source",
    )
    add_weights(
        parser,
        help="student weights in any accepted layout (default: the built-in tiny student)",
    )
    parser.add_argument("--codec", help="codec / VAE (default: codec.safetensors beside it)")
    parser.add_argument("--decoder", help="fast decoder used instead of the codec's (taew2_1.pth)")
    parser.add_argument("--wav2vec2", help="local wav2vec2 model dir (wav2vec2-audio presets)")
    parser.add_argument(
        "--context", help="text context file (lipforcing encode-prompt; Wan presets)"
    )
    parser.add_argument("--mask", help="mouth mask image, white = keep (LatentSync's mask.png)")
    parser.add_argument(
        "--resolution", type=int, help="aligned crop side in pixels (default: the model's preset)"
    )
    parser.add_argument(
        "--paste",
        choices=["mouth", "crop"],
        help="paste back the feathered mouth region (mouth: the default, as the release's) or "
        "the whole generated crop with the release's soft edge (crop: its "
        "--composite_full_face)",
    )


STREAM_THREADS_HELP = (
    "CPU: sessions of a batched step split across N threads, torch at one intra-op thread "
    "(frames = a run at --threads 1); auto: N = the CPU threads, 1 on CUDA"
)


def stream_threads(text: str) -> int | str:
    """``--stream-threads`` as ExecutionOptions takes it: ``"auto"`` or an int (a word that is
    neither is left for ExecutionOptions to refuse, in one line)."""
    text = str(text).strip()
    return int(text) if text.lstrip("-").isdigit() else text


def add_execution(parser: argparse.ArgumentParser, *, stream_threads: str = "1") -> None:
    """The chunk runtime's device-specific execution options (outputs stay the same, except
    ``--stream-threads``: see ``streaming/options.py``); ``stream_threads`` is the default of
    ``--stream-threads`` (``"auto"`` for ``serve``)."""
    g = parser.add_argument_group("execution (how the student runs)")
    g.add_argument("--compile", action="store_true", help="torch.compile the DiT blocks")
    g.add_argument("--cuda-graphs", action="store_true", help="CUDA: replay steady chunks")
    g.add_argument("--two-streams", action="store_true", help="CUDA: codec and DiT overlap")
    g.add_argument("--fp8", action="store_true", help="CUDA sm89+: FP8 block Linears (approx.)")
    g.add_argument("--sdpa", default="auto", help="attention kernel: auto, flash, cudnn, ...")
    g.add_argument("--stream-threads", default=stream_threads, help=STREAM_THREADS_HELP)


def execution_options(args: argparse.Namespace):
    """:class:`~lipforcing.streaming.options.ExecutionOptions` from :func:`add_execution`'s
    flags (the exact defaults for a command without them)."""
    from lipforcing.errors import UserError
    from lipforcing.streaming.options import ExecutionOptions

    try:
        return ExecutionOptions(
            compile=getattr(args, "compile", False),
            cuda_graphs=getattr(args, "cuda_graphs", False),
            two_streams=getattr(args, "two_streams", False),
            fp8=getattr(args, "fp8", False),
            sdpa=getattr(args, "sdpa", "auto"),
            stream_threads=stream_threads(getattr(args, "stream_threads", "1")),
        )
    except ValueError as e:
        raise UserError(str(e)) from None


def load_pipeline(args: argparse.Namespace):
    """The :class:`~lipforcing.streaming.pipeline.Pipeline` the student options name; one
    ``note:`` line on stderr per execution option the device runs otherwise."""
    import sys

    from lipforcing.streaming.pipeline import Pipeline, shipped_checkpoint

    device, dtype = device_and_dtype(args)
    load = {"device": device, "dtype": dtype, "options": execution_options(args)}
    avatar = load_avatar(args)
    if avatar is not None:
        pipeline = avatar.pipeline(**load)
    else:
        pipeline = Pipeline.load(
            weights_spec(args, args.checkpoint or shipped_checkpoint()),
            args.codec,
            wav2vec2=args.wav2vec2,
            decoder=args.decoder,
            context=args.context,
            mask=args.mask,
            resolution=args.resolution,
            paste=getattr(args, "paste", None),
            **load,
        )
    for note in pipeline.notes:
        print(f"note: {note}", file=sys.stderr)
    return pipeline


def load_avatar(args: argparse.Namespace):
    """The verified :class:`~lipforcing.avatar.Avatar` of ``--avatar`` (None without it);
    refused beside options naming another student or codec."""
    from lipforcing.errors import UserError

    if not getattr(args, "avatar", None):
        return None
    own = (
        "checkpoint", "codec", "decoder", "wav2vec2", "adapter", "context", "mask", "resolution",
        "paste",
    )  # fmt: skip
    clash = [f for f in own if getattr(args, f, None)]
    if clash:
        raise UserError(f"--avatar brings its own student, codec and inputs; drop --{clash[0]}")
    from lipforcing.avatar import Avatar

    return Avatar.load(args.avatar)


def load_source(args: argparse.Namespace, pipeline, default=None, face=None):
    """The source: ``--video`` (tracked, driving ``face``: a FaceChoice), else the avatar's idle
    base with ``--avatar``, else ``default()`` (None without one)."""
    from lipforcing.streaming.source import Source

    if getattr(args, "video", None):
        return Source.from_file(args.video, pipeline.preset.media, face=face)
    avatar = load_avatar(args)
    if avatar is not None:
        return avatar.source(pipeline.preset.media)
    return default() if default is not None else None
