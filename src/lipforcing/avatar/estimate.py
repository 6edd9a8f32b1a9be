"""How long ``avatar create`` will take: each stage's step, timed on this machine right now.

Design choices:
- Calibration times each training step function (codec, SyncNet, teacher, Stage 1, the
  Stage-2 critic and student steps with the reward) on random data of the real shapes, with
  the preset's networks (below), after one warm-up forward pass, so the estimate
  follows the machine's current speed and load. Each is timed ``REPEATS`` times and the median
  kept: single calls on the shared 2-core machine differed up to 2.4x between two
  calibrations a minute apart (teacher 11.3 vs 4.8 s, nice 19 under load). The steps are the
  very functions the stages run; optimiser updates (a few ms at this size) are left out.
- The networks are the ones the stages start from (the shipped SynthTalk networks with
  ``--init builtin``; random ones with ``scratch``), and denormal floats are flushed to zero
  while calibrating: in one process a minute apart, one teacher step took 1.9-2.2 s with the
  random perturbed network, 0.70-0.76 s with the shipped weights and 0.71-0.81 s with the
  random one with denormals flushed (``docs/avatar/README.md``).
- On the shared 2-core machine one calibration does not predict the next hour: the same
  teacher step took 0.7 s and 10-15 s in one process 15 minutes apart as other jobs came and
  went, and the first budgeted create's calibration overestimated its stages' steps 1.4-4.8x
  (it finished in 22 of its 60 minutes). So the calibration gives the estimate printed before
  training; each trained stage then fixes its steps from its own timed steps
  (``avatar.budget``, ``avatar.sizing``).
- Stage seconds = steps x seconds per step (Stage 2: ``critic_steps`` critic steps plus one
  student step per update); encoding and the report are estimated from the window count and a
  timed codec encode / DiT forward. Real runs log their actual times beside the estimate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from lipforcing.avatar.config import AvatarConfig
from lipforcing.config import PresetConfig

ENGINE_FPS = 40.0  # held-out frames the streaming engine generates per second (tiny, CPU)
LANDMARK_FPS = 25.0  # frames per second dlib's detector + 68 points manage on 256 px frames
REPORT_VIDEOS = 4  # videos whose lips the report measures (real, generated x2, dubbed source)
TEACHER_CALLS = 100  # network calls of the teacher per window: 50 Euler steps x 2 CFG branches
ENCODES = 4  # codec encodes per cached window: clip, masked clip, reference, reference sequence
REPEATS = 3  # timed calls per step function (median): one call on a shared machine swings 2x


@dataclass(frozen=True)
class StageEstimate:
    name: str
    steps: int
    seconds: float


def _timed(fn, repeats: int = REPEATS) -> float:
    """Median seconds of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _random_cache(preset: PresetConfig, n: int, frames: int) -> dict:
    g = torch.Generator().manual_seed(0)
    c, (h, w) = preset.model.latent_channels, preset.latent_hw
    t = preset.codec.video_frames(frames)
    s = preset.media.crop_size

    def r(*shape):
        return torch.randn(*shape, generator=g)

    return {
        "x0": r(n, c, frames, h, w),
        "masked": r(n, c, frames, h, w),
        "ref": r(n, c, 1, h, w),
        "ref_seq": r(n, c, frames, h, w),
        "audio": r(n, t, preset.audio.feature_dim),
        "mask": (torch.arange(s)[:, None] > s // 2).float().expand(s, s).contiguous(),
    }


def _perturbed(preset: PresetConfig):
    """A preset's model with small random weights (a fresh one predicts exactly 0)."""
    from lipforcing.models import build_model

    model = build_model(preset.model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model


def _networks(cfg: AvatarConfig, preset: PresetConfig) -> tuple:
    """(codec, SyncNet, teacher, student) as the stages start them: the shipped SynthTalk
    networks with ``init="builtin"``, random ones with ``"scratch"``."""
    from lipforcing.avatar.train import builtin
    from lipforcing.codecs import build_codec
    from lipforcing.evaluation.syncnet import LipSyncNet, LipSyncNetConfig, load_syncnet
    from lipforcing.models import build_model
    from lipforcing.models.checkpoints import load_weights, read_state_dict

    bi, ca = preset.with_attention("bidirectional"), preset.with_attention("block_causal")
    if cfg.init != "builtin":
        net = LipSyncNet(LipSyncNetConfig(n_mels=preset.audio.n_mels))
        return build_codec(preset.codec), net, _perturbed(bi), _perturbed(ca)
    weights = read_state_dict(builtin("student.safetensors"))
    teacher, student = build_model(bi.model), build_model(ca.model)
    for model in (teacher, student):
        load_weights(model, weights, strict=True)
    codec = build_codec(preset.codec, weights=builtin("codec.safetensors"))
    return codec, load_syncnet(builtin("syncnet.safetensors")), teacher, student


def calibrate(cfg: AvatarConfig, preset: PresetConfig) -> dict[str, float]:
    """Seconds per step of every stage, measured now (see the module docstring), with
    denormal floats flushed to zero while it runs (restored after)."""
    flushed = torch.set_flush_denormal(True)
    try:
        return _calibrate(cfg, preset)
    finally:
        if flushed:
            torch.set_flush_denormal(False)


def _calibrate(cfg: AvatarConfig, preset: PresetConfig) -> dict[str, float]:
    from lipforcing.codecs.train import train_step as codec_step
    from lipforcing.distill.diffusion_forcing import diffusion_forcing_step, teacher_step
    from lipforcing.distill.dmd import critic_step, student_step
    from lipforcing.distill.draws import Draws
    from lipforcing.distill.latents import make_batch
    from lipforcing.distill.reward import syncnet_reward
    from lipforcing.evaluation.syncnet_train import contrastive_loss

    torch.manual_seed(0)
    rc, g = cfg.recipe, torch.Generator().manual_seed(0)
    pack = preset.model.audio_pack_frames
    codec, net, teacher, student = _networks(cfg, preset)
    cc = cfg.codec
    video = torch.rand(cc.batch, 3, cc.frames, cc.patch, cc.patch) * 2 - 1
    s, a = preset.media.crop_size, net.cfg.audio_dim
    sn = cfg.syncnet
    sync_batch = {
        "video": torch.rand(sn.batch, 3, 5, s, s) * 2 - 1,
        "audio": torch.randn(sn.batch, a),
        "neg": torch.randn(sn.batch, sn.shifts, a),
    }
    frames = rc.teacher.latent_frames
    cache = _random_cache(preset, max(rc.teacher.optim.micro_batch, 1), frames)
    micro = torch.arange(rc.teacher.optim.micro_batch)
    batch = make_batch(cache, micro, pack, frames)
    s2_frames = rc.stage2.num_chunks * preset.causal.chunk_frames
    s2 = make_batch(cache, torch.arange(rc.stage2.optim.micro_batch) % len(micro), pack, s2_frames)
    reward = syncnet_reward(codec.eval(), net.eval(), rc.stage2.reward)
    causal, sched, d2 = preset.causal, preset.schedule, rc.stage2
    d1 = Draws.for_micro_batch(cfg.seed, 0, 0, len(micro))
    d2_draws = Draws.for_micro_batch(cfg.seed, 0, 0, rc.stage2.optim.micro_batch)

    def backward(step):
        return lambda: step()[0].backward()

    one = make_batch(cache, micro[:1], pack, frames)
    _forward(teacher, one)  # warm-up: first-call allocations and kernel choices
    return {
        "codec": _timed(backward(lambda: codec_step(codec.train(), video, cc, g))),
        "syncnet": _timed(backward(lambda: contrastive_loss(net.train(), sync_batch))),
        "teacher": _timed(backward(lambda: teacher_step(teacher, batch, rc.teacher, d1))),
        "stage1": _timed(
            backward(lambda: diffusion_forcing_step(student, batch, rc.stage1, causal, sched, d1))
        ),
        "critic": _timed(
            backward(lambda: critic_step(teacher, student, s2, d2, causal, sched, d2_draws))
        ),
        "student": _timed(
            backward(
                lambda: student_step(
                    student, teacher, teacher, s2, d2, causal, sched, d2_draws, reward
                )
            )
        ),
        "encode": _timed(lambda: _encode(codec, preset, frames)),
        "forward": _timed(lambda: _forward(teacher, one)),
    }


@torch.no_grad()
def _encode(codec, preset: PresetConfig, frames: int) -> None:
    s = preset.media.crop_size
    codec.eval().encode(torch.zeros(1, 3, preset.codec.video_frames(frames), s, s))


@torch.no_grad()
def _forward(model, batch: dict) -> None:
    model(batch["x0"], torch.full((1,), 0.5), batch["cond"])


def plan(
    cfg: AvatarConfig, rates: dict[str, float], train_windows: int, heldout_frames: int
) -> list[StageEstimate]:
    """Per-stage seconds of a create, from calibrated ``rates`` (seconds per step)."""
    rc = cfg.recipe
    s2_step = rc.stage2.critic_steps * rates["critic"] + rates["student"]
    window = 1 + 4 * (rc.teacher.latent_frames - 1)  # video frames of a held-out window
    windows = min(heldout_frames // window, cfg.report_windows)
    teacher_gen = windows * TEACHER_CALLS * rates["forward"]  # one window per forward
    report_frames = min(heldout_frames, int(cfg.report_seconds * 25))
    report = teacher_gen + report_frames * (2 / ENGINE_FPS + REPORT_VIDEOS / LANDMARK_FPS)
    encode = (train_windows + heldout_frames // window) * ENCODES * rates["encode"]
    return [
        StageEstimate("codec", cfg.codec.steps, cfg.codec.steps * rates["codec"]),
        StageEstimate("syncnet", cfg.syncnet.steps, cfg.syncnet.steps * rates["syncnet"]),
        StageEstimate("latents", train_windows, encode),
        StageEstimate("teacher", rc.teacher.optim.steps, rc.teacher.optim.steps * rates["teacher"]),
        StageEstimate("stage1", rc.stage1.optim.steps, rc.stage1.optim.steps * rates["stage1"]),
        StageEstimate("stage2", rc.stage2.optim.steps, rc.stage2.optim.steps * s2_step),
        StageEstimate("report", report_frames, report),
    ]


def format_plan(stages: list[StageEstimate]) -> str:
    total = sum(s.seconds for s in stages)
    parts = ", ".join(f"{s.name} {_minutes(s.seconds)}" for s in stages)
    return f"estimated time: {_minutes(total)} ({parts}; measured on this machine now)"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{int(np.ceil(seconds))} s"


__all__ = ["StageEstimate", "calibrate", "format_plan", "plan"]
