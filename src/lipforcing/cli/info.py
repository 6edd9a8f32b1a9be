"""Print a preset (or a checkpoint's stored preset) with exact parameter counts.

``base`` counts the Wan 2.1 DiT as it would be with 16 input channels; ``lipsync`` the added
input channels of the patch embedding, the audio modules and the learned null context. Counts
come from a model built on the meta device (no memory, no weights).
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="tiny", help="tiny, wan-1.3b or wan-14b")
    parser.add_argument("--checkpoint", help="a .safetensors checkpoint: load it and report it")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from lipforcing.config import get_preset
    from lipforcing.errors import UserError
    from lipforcing.models import count_params

    report: dict = {}
    if args.checkpoint:
        from lipforcing.models.checkpoints import load_checkpoint

        model, preset = load_checkpoint(args.checkpoint)
        report["checkpoint"] = args.checkpoint
        report["loaded_params"] = sum(p.numel() for p in model.parameters())
    else:
        try:
            preset = get_preset(args.preset)
        except ValueError as e:
            raise UserError(str(e)) from None
    report = {
        "preset": preset.name,
        "params": count_params(preset.model),
        "config": preset.to_dict(),
        **report,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    p = report["params"]
    print(f"preset {preset.name} ({preset.model.attention})")
    for key in ("base", "lipsync", "total"):
        print(f"  {key:8s} {p[key]:>16,d} params")
    m = preset.model
    print(f"  dim {m.dim}, ffn {m.ffn_dim}, heads {m.num_heads}, layers {m.num_layers}")
    print(f"  latent {preset.latent_hw}, {preset.tokens_per_frame} tokens / latent frame")
    if "checkpoint" in report:
        print(f"  checkpoint {report['checkpoint']} loaded")
    return 0
