"""Encode a prompt and a negative prompt with a local UMT5 encoder into a context file.

``lipforcing encode-prompt --text-encoder Wan2.1-T2V-14B/models_t5_umt5-xxl-enc-bf16.pth
--prompt "a person talking" --negative-prompt "..." --out context.safetensors``; the encoder is
a diffusers pipeline folder (``text_encoder/`` + ``tokenizer/``), a ``text_encoder/`` folder, or
Wan's umT5 ``.pth`` with its tokenizer folder beside it (or ``--tokenizer DIR``). Every command
that runs a Wan-scale model then takes ``--context context.safetensors``.
"""

from __future__ import annotations

import argparse

from lipforcing.cli import options

DESCRIPTION = """\
Encode a prompt (and a negative prompt) with a local UMT5 text encoder into a small context
file that sync, serve, demo, analyze and training read with --context. The encoder is a diffusers
pipeline folder (text_encoder/ + tokenizer/), a text_encoder/ folder, or Wan's umT5 .pth with
its tokenizer folder beside it.
"""

DEFAULT_PROMPT = "a person talking"  # the release's default prompt


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--text-encoder", required=True, help="UMT5 encoder folder or Wan .pth")
    parser.add_argument("--tokenizer", help="tokenizer folder (default: found beside the encoder)")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT, help=f"default {DEFAULT_PROMPT!r}")
    parser.add_argument(
        "--negative-prompt",
        help="negative prompt for the release's full-drop CFG (omitted: none stored, and that "
        "drop uses a zero embedding, the release's default)",
    )
    parser.add_argument("--out", required=True, help="output .safetensors")
    options.add_device(parser)


def run(args: argparse.Namespace) -> int:
    from lipforcing.models.text import TextEncoder, save_context

    device, dtype = options.device_and_dtype(args)
    encoder = TextEncoder.load(args.text_encoder, args.tokenizer, device=device, dtype=dtype)
    prompts = [args.prompt] + ([args.negative_prompt] if args.negative_prompt is not None else [])
    embeds = encoder.encode(prompts)
    meta = {"prompt": args.prompt, "encoder": encoder.name}
    if args.negative_prompt is not None:
        meta["negative_prompt"] = args.negative_prompt
    path = save_context(args.out, embeds[0], embeds[1] if len(embeds) > 1 else None, meta)
    shapes = ", ".join(f"{tuple(e.shape)}" for e in embeds)
    print(f"wrote {path}: {shapes} (prompt{' + negative' if len(embeds) > 1 else ''})")
    return 0
