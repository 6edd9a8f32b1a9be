"""What a personal avatar is trained with: footage limits, per-stage budgets, the held-out split.

Design choices:
- One frozen :class:`AvatarConfig` holds the whole chain (codec fine-tune, SyncNet, teacher,
  Stage 1, Stage 2 as the tiny recipe's configs), so a partial build can be compared with a
  rerun's settings and refused when they differ.
- The step counts here are the fixed config (``avatar create --steps-from-config``) and the
  caps of the default time budget (``avatar.budget``), which sizes each stage's steps to the
  wall time from step times measured before training; the data length changes the number of
  training windows, not the steps.
- ``init="builtin"`` starts every network from the shipped SynthTalk checkpoints (the teacher
  from the shipped student's weights: attention masks hold no weights); ``"scratch"`` from a
  fresh initialisation. Both run the same steps, so their reports compare like with like.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Literal

from lipforcing.codecs.train import CodecTrainConfig
from lipforcing.config import RecipeConfig, tiny_recipe
from lipforcing.evaluation.syncnet_train import SyncNetTrainConfig

Init = Literal["builtin", "scratch"]
INITS = ("builtin", "scratch")


@dataclass(frozen=True, kw_only=True)
class FootageLimits:
    """What footage an avatar can be made from (checked before any training)."""

    min_seconds: float = 20.0  # s of frames with a usable face, all inputs together
    min_face_share: float = 0.8  # share of frames with a usable face (found, mouth in frame)
    min_speech_share: float = 0.25  # share of frames with speech in the audio
    speech_db: float = 10.0  # dB above the quiet floor (10th percentile) a speech frame reaches
    speech_min_db: float = -50.0  # dBFS a speech frame reaches at least
    max_identity_distance: float = 0.6  # dlib face-recognition distance: same person below it
    identity_every_s: float = 1.0  # s between the frames whose identity is checked
    max_other_faces: float = 0.2  # share of checked frames that may show a second face
    max_median_yaw: float = 40.0  # degrees: a face turned further away is not usable
    min_blur: float = 20.0  # variance of the Laplacian of the mouth region: sharper than this


@dataclass(frozen=True, kw_only=True)
class AvatarConfig:
    """The whole ``lipforcing avatar create`` chain."""

    init: Init = "builtin"  # start from the shipped SynthTalk networks or from scratch
    holdout: float = 0.15  # share of the footage (the end, in input order) never trained on
    window_stride: int = 4  # video frames between the starts of training windows (overlap)
    base_seconds: float = 10.0  # s of footage kept as the avatar's idle base loop
    report_seconds: float = 20.0  # s of held-out footage the report scores at most
    report_windows: int = 12  # held-out windows of the teacher / student side by side
    seed: int = 0
    footage: FootageLimits = field(default_factory=FootageLimits)
    codec: CodecTrainConfig = field(
        default_factory=lambda: CodecTrainConfig(steps=600, lr=3e-4, min_lr=3e-5)
    )
    syncnet: SyncNetTrainConfig = field(default_factory=lambda: SyncNetTrainConfig(steps=2000))
    recipe: RecipeConfig = field(default_factory=lambda: avatar_recipe_steps(1200, 300, 60))

    def __post_init__(self) -> None:
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")
        if not 0 < self.holdout < 0.5:
            raise ValueError(f"holdout must be in (0, 0.5), got {self.holdout}")
        if self.window_stride < 1 or self.base_seconds <= 0 or self.report_seconds <= 0:
            raise ValueError(f"invalid avatar config: {self}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def avatar_recipe_steps(teacher: int, stage1: int, stage2: int) -> RecipeConfig:
    """The tiny recipe with the avatar's step counts (everything else as the tiny recipe)."""
    rc = tiny_recipe()

    def steps(cfg, n):
        return dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, steps=n))

    return dataclasses.replace(
        rc,
        teacher=steps(rc.teacher, teacher),
        stage1=steps(rc.stage1, stage1),
        stage2=steps(rc.stage2, stage2),
    )


def avatar_config(init: Init = "builtin", *, quick: bool = False, seed: int = 0) -> AvatarConfig:
    """The default chain, or with ``quick`` a smoke-sized one (a few steps per stage: checks
    that the chain runs, trains nothing useful)."""
    cfg = AvatarConfig(init=init, seed=seed)
    if init == "scratch":  # a fresh codec needs the from-scratch learning rate
        cfg = dataclasses.replace(cfg, codec=dataclasses.replace(cfg.codec, lr=1e-3, min_lr=1e-4))
    if not quick:
        return cfg
    rc = avatar_recipe_steps(2, 2, 1)
    small = {"batch_size": 2, "micro_batch": 2}
    rc = dataclasses.replace(
        rc,
        teacher=dataclasses.replace(
            rc.teacher, optim=dataclasses.replace(rc.teacher.optim, **small)
        ),
        stage1=dataclasses.replace(rc.stage1, optim=dataclasses.replace(rc.stage1.optim, **small)),
        stage2=dataclasses.replace(
            rc.stage2, critic_steps=1, optim=dataclasses.replace(rc.stage2.optim, **small)
        ),
    )
    return dataclasses.replace(
        cfg,
        window_stride=cfg.recipe.teacher.latent_frames * 4 - 3,  # tiled windows: 1 + 4 (F - 1)
        base_seconds=2.0,
        report_windows=2,
        codec=dataclasses.replace(cfg.codec, steps=3, batch=2),
        syncnet=dataclasses.replace(cfg.syncnet, steps=3, batch=8),
        recipe=rc,
    )


__all__ = ["INITS", "AvatarConfig", "FootageLimits", "Init", "avatar_config", "avatar_recipe_steps"]
