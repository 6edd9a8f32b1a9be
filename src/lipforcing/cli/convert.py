"""Convert any accepted weights (base + adapters) into one safetensors checkpoint + JSON.

``lipforcing convert lipforcing_14b.pth --out student.safetensors`` or
``lipforcing convert Wan2.1-T2V-14B/ --adapter omniavatar_ls_14b.pt --adapter 0000600.pth
--attention student --out student.safetensors``. LoRA pairs are folded, a narrower patch
embedding is widened, the architecture is read from the tensors; what was merged is printed.
The output is our format (loads with ``--checkpoint`` alone); nothing is written on error.
"""

from __future__ import annotations

import argparse

from lipforcing.cli import options

ATTENTION = {"keep": None, "student": "block_causal", "teacher": "bidirectional"}

DESCRIPTION = """\
Convert any accepted weights (a merged .pth, Wan shards, a diffusers folder, training
checkpoints; a base plus adapters) into one safetensors checkpoint with its JSON. LoRA pairs
are folded in, a narrower patch embedding is widened, and the architecture is read from the
tensors; what was merged is printed. The output loads with --checkpoint alone; nothing is
written on error. Examples:
  lipforcing convert lipforcing_14b.pth --out student.safetensors
  lipforcing convert Wan2.1-T2V-14B/ --adapter omniavatar_ls_14b.pt --adapter 0000600.pth \\
      --attention student --out student.safetensors"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="weights in any accepted layout (file or folder)")
    options.add_weights(parser, "--out", "output .safetensors (a .json is written beside it)")
    parser.add_argument(
        "--attention",
        choices=sorted(ATTENTION),
        default="keep",
        help="student (block-causal) or teacher (bidirectional); keep = as stored, else the "
        "family's (foreign layouts carry no attention: a released student needs 'student')",
    )
    parser.add_argument("--dtype", default="bf16", help="stored dtype: bf16 (default), fp16, fp32")
    parser.add_argument("--device", default="cpu", help="where LoRA is folded: cpu, cuda, auto")
    parser.add_argument(
        "--base-only",
        action="store_true",
        help="allow missing audio modules (a plain Wan base); they are stored at their init",
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lipforcing.devices import resolve_device, resolve_dtype
    from lipforcing.errors import UserError
    from lipforcing.models.checkpoints import save_checkpoint
    from lipforcing.models.weights import load_model

    if not args.out:
        raise UserError("--out FILE.safetensors is required")
    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise UserError(f"--out must end in .safetensors, got {out.name}")
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    spec = options.weights_spec(args, args.input)
    loaded = load_model(
        spec,
        attention=ATTENTION[args.attention],
        device=device,
        dtype=dtype,
        allow_missing=args.base_only,
    )
    r = loaded.report
    for line in r.files:
        print(f"read {line}")
    m = loaded.preset.model
    print(
        f"model: {loaded.preset.name} family, dim {m.dim}, {m.num_layers} blocks, ffn "
        f"{m.ffn_dim}, audio blocks {m.num_audio_layers}, {m.attention}"
    )
    print(f"merged {len(r.merged)} LoRA pairs" + (f" ({r.merged[0]} ...)" if r.merged else ""))
    if r.reshaped:
        print(f"widened {', '.join(r.reshaped)} (new input channels zero)")
    if r.missing:
        print(f"left at init (not in the weights): {len(r.missing)} ({r.missing[0]} ...)")
    if r.ignored:
        print(f"ignored {len(r.ignored)} keys outside the DiT ({r.ignored[0]} ...)")
    extra = {"converted_from": [str(spec.path), *map(str, spec.adapters)], "dtype": args.dtype}
    tmp = out.with_name(out.stem + ".partial.safetensors")
    save_checkpoint(tmp, loaded.model, loaded.preset, extra=extra)
    tmp.replace(out)
    tmp.with_suffix(".json").replace(out.with_suffix(".json"))
    print(f"wrote {out} and {out.with_suffix('.json').name}")
    return 0
