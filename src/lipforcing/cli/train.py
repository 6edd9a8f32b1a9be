"""Training entry points: ``lipforcing train {codec,latents,teacher,...}``."""

from __future__ import annotations

import argparse

from lipforcing.cli.main import add_subcommands

STAGES = {
    "codec": ("lipforcing.cli.train_codec", "train the tiny latent codec"),
    "latents": ("lipforcing.cli.train_latents", "encode shards into the training latent cache"),
    "teacher": ("lipforcing.cli.train_teacher", "train the bidirectional teacher"),
    "syncnet": ("lipforcing.cli.train_syncnet", "train our SyncNet (reward and metric)"),
    "stage1": ("lipforcing.cli.train_stage1", "Stage 1: Diffusion Forcing"),
    "stage2": ("lipforcing.cli.train_stage2", "Stage 2: Sync-Window DMD with SyncNet reward"),
    "recipe": ("lipforcing.cli.train_recipe", "the whole chain on a preset (CPU: tiny)"),
    "export": ("lipforcing.cli.train_export", "one model of a run's checkpoint as one file"),
}


DESCRIPTION = """\
Train one part of the system: the codec, the latent cache of the training clips, the
bidirectional teacher, our SyncNet, the student (Stage 1, Stage 2), or the whole chain
(recipe). Run 'lipforcing train STAGE --help' for a stage's options."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_subcommands(parser, STAGES)


def run(args: argparse.Namespace) -> int:
    return args._run(args)
