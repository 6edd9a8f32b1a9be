"""The per-person training stages, each a thin caller of the project's training code.

Every stage writes one final file in its run folder and is skipped when that file exists; an
interrupted stage resumes from its ``state.pt`` (codec, SyncNet and the three distillation
stages all save resumable state). ``init="builtin"`` starts the codec, SyncNet and teacher
from the shipped SynthTalk networks (the teacher from the shipped student's weights: the
block-causal mask holds no weights), ``"scratch"`` from fresh initialisations.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lipforcing.avatar.config import AvatarConfig
from lipforcing.config import PresetConfig


def builtin(name: str) -> Path:
    """A shipped tiny network (CheckpointError when the package lacks it)."""
    from lipforcing.errors import CheckpointError
    from lipforcing.streaming.pipeline import shipped_asset

    path = shipped_asset(name)
    if path is None:
        raise CheckpointError(f"the built-in {name} is missing; use --init scratch")
    return path


def person_codec(
    train: Path, cfg: AvatarConfig, preset: PresetConfig, run_dir: Path, step_seconds=None
) -> Path:
    """The codec fine-tuned (or trained) on the person's crops; latent statistics re-measured.
    ``step_seconds`` (every stage here): each training step's wall seconds appended to it."""
    from lipforcing.codecs import build_codec, save_codec
    from lipforcing.codecs.train import CropWindows, fit_codec, set_latent_stats
    from lipforcing.data.preprocess import find_shards

    final = run_dir / "codec.safetensors"
    if final.is_file():
        return final
    init = builtin("codec.safetensors") if cfg.init == "builtin" else None
    torch.manual_seed(cfg.seed)
    codec = build_codec(preset.codec, weights=init)
    data = CropWindows(find_shards([train]), cfg.codec.frames)
    fit_codec(codec, data, cfg.codec, run_dir / "state.pt", step_seconds=step_seconds)
    codec.eval()
    size = preset.codec.image_size
    set_latent_stats(codec, [data.sample(np.random.default_rng(i), 4, size) for i in range(4)])
    save_codec(final, codec, extra={"init": cfg.init, "steps": cfg.codec.steps})
    return final


def person_syncnet(
    train: Path, cfg: AvatarConfig, preset: PresetConfig, run_dir: Path, step_seconds=None
) -> Path:
    """Our LipSyncNet fine-tuned (or trained) on the person's windows."""
    from lipforcing.data.preprocess import find_shards, load_shard
    from lipforcing.evaluation.syncnet import (
        LipSyncNet,
        LipSyncNetConfig,
        load_syncnet,
        save_syncnet,
    )
    from lipforcing.evaluation.syncnet_train import Clip, train_syncnet

    final = run_dir / "syncnet.safetensors"
    if final.is_file():
        return final
    clips = [Clip.from_arrays(load_shard(d)[0]) for d in find_shards([train])]
    torch.manual_seed(cfg.seed)
    if cfg.init == "builtin":
        model = load_syncnet(builtin("syncnet.safetensors"))
    else:
        model = LipSyncNet(LipSyncNetConfig(n_mels=preset.audio.n_mels))
    train_syncnet(model, clips, cfg.syncnet, run_dir / "state.pt", step_seconds=step_seconds)
    save_syncnet(model.eval(), final, {"init": cfg.init, "steps": cfg.syncnet.steps})
    return final


def latent_cache(part: Path, codec_path: Path, cfg: AvatarConfig, path: Path, *, train: bool):
    """Encode the windows of a part with the person's codec (training windows overlap)."""
    from lipforcing.codecs import load_codec
    from lipforcing.data.datasets import ShardDataset
    from lipforcing.distill.latents import encode_dataset, load_cache, save_cache

    if not path.is_file():
        frames = cfg.recipe.teacher.latent_frames
        stride = cfg.window_stride if train else None
        ds = ShardDataset(part, latent_frames=frames, stride=stride, seed=cfg.seed)
        codec = load_codec(codec_path).eval()
        save_cache(encode_dataset(ds, codec, keep_video=not train), path)
    return load_cache(path)


def distill_teacher(
    cache: dict, cfg: AvatarConfig, preset: PresetConfig, work: Path, step_seconds=None
) -> Path:
    """The bidirectional teacher (from the shipped student's weights with ``builtin``)."""
    from lipforcing.distill.stages import run_teacher

    init = builtin("student.safetensors") if cfg.init == "builtin" else None
    rc = cfg.recipe
    run_dir = work / "teacher"
    return run_teacher(
        cache, preset, rc.teacher, run_dir, seed=cfg.seed, init=init, step_seconds=step_seconds
    )


def distill_stage1(
    cache: dict, teacher: Path, cfg: AvatarConfig, work: Path, step_seconds=None
) -> Path:
    """Stage 1: Diffusion Forcing of the causal student from the teacher."""
    from lipforcing.distill.stages import run_stage1

    run_dir = work / "stage1"
    return run_stage1(
        cache, teacher, cfg.recipe.stage1, run_dir, seed=cfg.seed, step_seconds=step_seconds
    )


def distill_stage2(
    cache: dict, paths: dict, cfg: AvatarConfig, work: Path, reward, step_seconds=None
) -> Path:
    """Stage 2: Self-Forcing DMD with Sync-Window CFG and the person's SyncNet reward."""
    from lipforcing.distill.stages import run_stage2

    return run_stage2(
        cache,
        paths["stage1"],
        paths["teacher"],
        cfg.recipe.stage2,
        work / "stage2",
        seed=cfg.seed,
        reward_fn=reward,
        step_seconds=step_seconds,
    )


def reward_fn(codec_path: Path, syncnet_path: Path, cfg: AvatarConfig):
    """Stage 2's SyncNet reward: the person's SyncNet on crops decoded by the person's codec."""
    from lipforcing.codecs import load_codec
    from lipforcing.distill.reward import syncnet_reward
    from lipforcing.evaluation.syncnet import load_syncnet

    codec, net = load_codec(codec_path).eval(), load_syncnet(syncnet_path)
    return syncnet_reward(codec, net, cfg.recipe.stage2.reward)


__all__ = [
    "builtin",
    "distill_stage1",
    "distill_stage2",
    "distill_teacher",
    "latent_cache",
    "person_codec",
    "person_syncnet",
    "reward_fn",
]
