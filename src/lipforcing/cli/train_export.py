"""Write one model of a training run's distributed checkpoint as one file, on one process:
``lipforcing train export RUN --trainee student [--ema] --out student.safetensors``. A fully
fine-tuned model becomes a checkpoint (.safetensors + .json); a LoRA model its adapter alone
(its JSON names the base it applies to; `lipforcing convert BASE --adapter FILE` merges it)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run folder (with checkpoint/ and trainer.json)")
    parser.add_argument("--trainee", default="student", help="student, critic or model")
    parser.add_argument("--ema", action="store_true", help="the EMA weights instead")
    parser.add_argument("--out", required=True, help="output .safetensors")


def run(args: argparse.Namespace) -> int:
    from lipforcing.distill.run_state import export_checkpoint

    print(export_checkpoint(args.run, args.trainee, args.out, ema=args.ema))
    return 0
