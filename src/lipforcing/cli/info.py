"""Print a preset (or the architecture of named weights, checked) with exact parameter counts.

``base`` counts the Wan 2.1 DiT as it would be with 16 input channels; ``lipsync`` the added
input channels of the patch embedding, the audio modules and the learned null context. Counts
come from a model built on the meta device (no memory, no weights).
"""

from __future__ import annotations

import argparse
import json
import math

from lipforcing.cli import options

DESCRIPTION = """\
Print a preset's configuration (or the one stored in a checkpoint) with exact parameter
counts. "base" counts the Wan 2.1 DiT as it would be with 16 input channels; "lipsync" the
added input channels, the audio modules and the learned null context. No weights are loaded."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_weights(parser, family=False)
    parser.add_argument(
        "--preset", help="tiny (default), wan-1.3b or wan-14b; with --checkpoint, its family"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from lipforcing.config import get_preset
    from lipforcing.errors import UserError
    from lipforcing.models import count_params

    report: dict = {}
    if args.checkpoint:
        from lipforcing.models.weights import resolve

        spec = options.weights_spec(args, args.checkpoint)
        plan, preset, checked = resolve(spec, allow_missing=True)
        report["checkpoint"] = args.checkpoint
        report["layout"] = checked.files
        report["lora_merged"] = len(checked.merged)
        report["checked_params"] = sum(math.prod(ref.shape) for ref in plan.tensors.values())
        report["not_in_weights"] = checked.missing
    else:
        try:
            preset = get_preset(args.preset or "tiny")
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
        for line in report["layout"]:
            print(f"  read {line}")
        if report["not_in_weights"]:
            print(
                f"  {len(report['not_in_weights'])} lip-sync parameters are not in the weights "
                "(a base: they would start at their initialisation)"
            )
        print(f"  checkpoint {report['checkpoint']}: every tensor's name and shape fit this model")
    return 0
