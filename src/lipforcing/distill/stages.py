"""The three training stages on a pre-encoded latent cache, each resumable from its run folder.

- :func:`run_teacher`: bidirectional flow matching with CFG dropout -> ``teacher.safetensors``.
- :func:`run_stage1`: Diffusion Forcing of the block-causal student from its init weights
  -> ``student.safetensors``.
- :func:`run_stage2`: Self Forcing DMD (student + fake-score critic, frozen teacher, optional
  SyncNet reward) -> ``student.safetensors`` and its EMA ``student_ema.safetensors``.

All three run :func:`lipforcing.distill.loop.train`; they differ by their step function. A
stage whose final checkpoint exists is skipped; an interrupted one resumes from its
distributed checkpoint. With LoRA the outputs are the adapter alone (its JSON names the base).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from lipforcing.config import DiffusionForcingConfig, DMDConfig, PresetConfig, TeacherTrainConfig
from lipforcing.distill.diffusion_forcing import diffusion_forcing_step, teacher_step
from lipforcing.distill.distributed import print0, shard_model, training_device, world_info
from lipforcing.distill.dmd import critic_step, student_step
from lipforcing.distill.latents import draw_batch
from lipforcing.distill.loop import Plan, Trainee, train
from lipforcing.distill.lora import is_trainable, save_adapter
from lipforcing.distill.reward import RewardFn, RewardShaper
from lipforcing.distill.run_state import StateDict
from lipforcing.distill.weights import (
    Weights,
    base_record,
    check_inputs,
    check_width,
    load_frozen,
    load_model,
)
from lipforcing.errors import UserError
from lipforcing.models import build_model
from lipforcing.models.checkpoints import load_weights, read_state_dict, save_checkpoint
from lipforcing.models.text import Context


def _logger(run_dir: Path):
    if world_info()[0] != 0:
        return None
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(run_dir / "tb"))

    def log(step: int, metrics: dict) -> None:
        for k, v in metrics.items():
            if isinstance(v, int | float):
                writer.add_scalar(f"{metrics['role']}/{k}", float(v), step)
        writer.flush()

    return log


def _plan(optim, roles=("model",), iterations=None) -> Plan:
    return Plan(iterations or optim.steps, optim.batch_size, optim.micro_batch, tuple(roles))


def check_context(preset: PresetConfig, context: Context | None) -> Context | None:
    """A Wan preset needs the text context: checked against the model (width, length) and
    padded to its ``text_len`` before any step (without a negative prompt the release's full
    drop uses its default, a zero embedding)."""
    m = preset.model
    if not m.use_text_context:
        if context is not None:
            raise UserError(f"the {preset.name} preset uses a learned null context, not --context")
        return None
    if context is None:
        raise UserError(
            f"the {preset.name} preset needs a text context (--context FILE from 'lipforcing "
            f"encode-prompt': (<= {m.text_len}, {m.text_dim}))"
        )
    return context.fit(m)


def _skip(final: Path, stage: str) -> bool:
    if final.exists():
        print0(f"{stage}: {final} exists, skipped")
        return True
    return False


def run_teacher(
    cache: dict,
    preset: PresetConfig,
    cfg: TeacherTrainConfig,
    run_dir: Path,
    *,
    seed: int = 0,
    init: str | Path | None = None,
    context: Context | None = None,
    save_every: int = 100,
    step_seconds: list[float] | None = None,
) -> Path:
    """Train the bidirectional teacher; returns its checkpoint path.

    ``init``: a checkpoint of the same shape (teacher or student: attention masks hold no
    weights) to start from instead of a fresh initialisation (fine-tuning). ``step_seconds``
    (all three stages): each iteration's wall seconds are appended to it
    (:func:`lipforcing.distill.loop.train`).
    """
    final = Path(run_dir) / "teacher.safetensors"
    if _skip(final, "teacher"):
        return final
    preset = preset.with_attention("bidirectional")
    context = check_context(preset, context)
    torch.manual_seed(seed)  # the init (build_model draws from the global generator)
    model = build_model(preset.model)
    if init is not None:
        load_weights(model, read_state_dict(init), strict=True)
    device = training_device()
    model = shard_model(model.to(device), cfg.recompute)
    pack, mask = preset.model.audio_pack_frames, preset.media.mask_style

    def step(role, draws):
        batch = draw_batch(
            cache, draws, pack, cfg.latent_frames, cfg.references, context, mask_style=mask
        )
        return teacher_step(model, to_device(batch, device), cfg, draws)

    trainee = Trainee(model, cfg.optim, meta=trainee_meta(preset, None, None))
    result = train(
        {"model": trainee},
        step,
        _plan(cfg.optim),
        run_dir,
        seed=seed,
        save_every=save_every,
        desc="teacher",
        log=_logger(run_dir),
        step_seconds=step_seconds,
    )
    _save_final(final, model, preset, _extra("teacher", cfg, result))
    return final


def run_stage1(
    cache: dict,
    teacher_path: Path,
    cfg: DiffusionForcingConfig,
    run_dir: Path,
    *,
    seed: int = 0,
    init_adapter: Path | None = None,
    context: Context | None = None,
    save_every: int = 100,
    step_seconds: list[float] | None = None,
) -> Path:
    """Diffusion Forcing from the init weights ``teacher_path`` (the student's own base: the
    teacher at the tiny preset, OmniAvatar at Wan scale; ``init_adapter`` starts the LoRA)."""
    final = Path(run_dir) / "student.safetensors"
    if _skip(final, "stage1"):
        return final
    weights = Weights.of(teacher_path, init_adapter)
    device = training_device()
    model, preset = load_model(weights, "block_causal", cfg.lora, device)
    context = check_context(preset, context)
    model = shard_model(model, cfg.recompute)
    pack, mask = preset.model.audio_pack_frames, preset.media.mask_style

    def step(role, draws):
        batch = draw_batch(
            cache, draws, pack, cfg.latent_frames, cfg.references, context, mask_style=mask
        )
        batch = to_device(batch, device)
        return diffusion_forcing_step(model, batch, cfg, preset.causal, preset.schedule, draws)

    trainee = Trainee(model, cfg.optim, ema=cfg.ema, meta=trainee_meta(preset, cfg.lora, weights))
    result = train(
        {"model": trainee},
        step,
        _plan(cfg.optim),
        run_dir,
        seed=seed,
        save_every=save_every,
        desc="stage1",
        log=_logger(run_dir),
        step_seconds=step_seconds,
    )
    _save_final(final, model, preset, _extra("stage1", cfg, result, weights))
    return final


def run_stage2(
    cache: dict,
    student_path: Path,
    teacher_path: Path,
    cfg: DMDConfig,
    run_dir: Path,
    *,
    seed: int = 0,
    reward_fn: RewardFn | None = None,
    critic_path: Path | None = None,
    critic_adapter: Path | None = None,
    context: Context | None = None,
    save_every: int = 10,
    step_seconds: list[float] | None = None,
) -> Path:
    """Self Forcing DMD: student and critic updates interleaved per ``cfg.roles``.

    The teacher is frozen (no grads, never wrapped or sharded); the critic (fake score, never
    guided) starts from ``critic_path`` (default: the teacher's weights, right when teacher
    and student share a scale; with a 14B teacher and a 1.3B student give student-scale
    weights). ``reward_fn`` scores detached rollouts when ``cfg.reward`` is set. ``context``:
    the text context of every sample (Wan presets), as in Stage 1; with the release's full
    drop (``cfg.drop_mode="release"``) the teacher's unconditional branch reads its negative.
    """
    run_dir = Path(run_dir)
    final = run_dir / "student.safetensors"
    if _skip(final, "stage2"):
        return final
    critic_w = Weights.of(critic_path or teacher_path, critic_adapter)
    m = load_stage2(Weights.of(student_path), Weights.of(teacher_path), critic_w, cfg, context)
    context = None if context is None else context.fit(m.preset.model)  # checked by load_stage2
    causal, schedule = m.preset.causal, m.preset.schedule
    frames, pack = cfg.num_chunks * causal.chunk_frames, m.preset.model.audio_pack_frames
    mask = m.preset.media.mask_style
    shaper = RewardShaper(cfg.reward) if cfg.reward is not None else None
    reward = reward_fn if shaper is not None else None

    def step(role, draws):
        batch = draw_batch(cache, draws, pack, frames, cfg.references, context, mask_style=mask)
        batch = to_device(batch, m.device)
        if role == "critic":
            return critic_step(m.critic, m.student, batch, cfg, causal, schedule, draws)
        return student_step(
            m.student, m.teacher, m.critic, batch, cfg, causal, schedule, draws, reward, shaper
        )

    result = train(
        m.trainees(cfg),
        step,
        _plan(cfg.optim, cfg.roles, cfg.iterations),
        run_dir,
        seed=seed,
        save_every=save_every,
        desc="stage2",
        log=_logger(run_dir),
        hooks={"reward": shaper} if shaper is not None else None,
        step_seconds=step_seconds,
    )
    extra = _extra("stage2", cfg, result, m.student_w)
    _save_final(final, m.student, m.preset, extra)
    if cfg.ema is not None:
        _save_ema(run_dir / "student_ema.safetensors", m.student, m.preset, extra, run_dir)
    return final


@dataclass
class Stage2Models:
    """The three models of Stage 2, checked against each other, on the training device."""

    student: nn.Module
    critic: nn.Module
    teacher: nn.Module
    preset: PresetConfig  # the student's, with the stage's CFG drop mode
    critic_preset: PresetConfig
    student_w: Weights
    critic_w: Weights
    device: torch.device

    def trainees(self, cfg: DMDConfig) -> dict[str, Trainee]:
        student_meta = trainee_meta(self.preset, cfg.lora, self.student_w)
        critic_meta = trainee_meta(self.critic_preset, cfg.lora, self.critic_w)
        return {
            "student": Trainee(self.student, cfg.optim, ema=cfg.ema, meta=student_meta),
            "critic": Trainee(self.critic, cfg.optim, lr=cfg.critic_lr, meta=critic_meta),
        }


def load_stage2(
    student_w: Weights,
    teacher_w: Weights,
    critic_w: Weights,
    cfg: DMDConfig,
    context: Context | None,
) -> Stage2Models:
    """Load the student and critic (trainees, LoRA per the recipe) and the frozen teacher (bf16
    on GPU, never wrapped); refuse a critic of the wrong scale or mismatched inputs before any
    step; shard the trainees."""
    device = training_device()
    student, preset = load_model(student_w, "block_causal", cfg.lora, device)
    frozen_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    teacher, teacher_preset = load_frozen(teacher_w, device=device, dtype=frozen_dtype)
    critic, critic_preset = load_model(critic_w, "bidirectional", cfg.lora, device)
    want = preset if cfg.critic_scale == "student" else teacher_preset
    check_width("critic", critic_w, critic_preset, cfg.critic_scale, want)
    check_inputs("critic", critic_w, critic_preset, preset)
    check_inputs("teacher", teacher_w, teacher_preset, preset)
    if cfg.drop_mode is not None:
        schedule = dataclasses.replace(preset.schedule, drop_mode=cfg.drop_mode)
        preset = dataclasses.replace(preset, schedule=schedule)
    for p in (preset, teacher_preset, critic_preset):  # the release's drop needs its negative
        check_context(p, context)
    student, critic = shard_model(student), shard_model(critic, cfg.recompute)
    return Stage2Models(
        student, critic, teacher, preset, critic_preset, student_w, critic_w, device
    )


def to_device(batch: dict, device: torch.device) -> dict:
    """The model inputs of a batch on the training device (the raw waveform stays on the CPU,
    where the reward's MFCCs are computed)."""
    if device.type == "cpu":
        return batch
    moved = {k: v.to(device) for k, v in batch.items() if k in ("x0", "audio")}
    return {**batch, **moved, "cond": batch["cond"].to(device)}


def trainee_meta(preset: PresetConfig, lora, base: Weights | None) -> dict:
    """What :func:`lipforcing.distill.run_state.export_checkpoint` needs to write a trainee."""
    meta = {"preset": preset.to_dict(), "lora": None if lora is None else dataclasses.asdict(lora)}
    if base is not None:
        meta |= base_record(base)
    return meta


def _extra(stage: str, cfg, result, base: Weights | None = None) -> dict:
    losses = result.losses("student" if stage == "stage2" else None)
    extra = {
        "stage": stage,
        "config": dataclasses.asdict(cfg),
        "final_loss": losses[-1] if losses else None,
        "metrics_tail": result.history[-5:],
    }
    if base is not None:  # what a LoRA stage's adapter applies to
        extra |= base_record(base)
    return extra


def full_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's state dict on the CPU (gathered under FSDP2; collective)."""
    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=opts)


def _write(path: Path, state: dict, model: nn.Module, preset: PresetConfig, extra: dict) -> None:
    if getattr(model, "lora", None) is not None:
        save_adapter(path, state, model.lora, preset, extra)
    else:
        save_checkpoint(path, StateDict(state), preset, extra)


def _save_final(path: Path, model: nn.Module, preset: PresetConfig, extra: dict) -> None:
    """Every process gathers; rank 0 writes the stage's checkpoint; the others wait for it."""
    state = full_state(model)
    if world_info()[0] == 0:
        _write(path, state, model, preset, extra)
    if dist.is_initialized():
        dist.barrier()


def _save_ema(path: Path, model: nn.Module, preset, extra: dict, run_dir: Path) -> None:
    """The student with its EMA weights (read back from the run's final checkpoint)."""
    from lipforcing.distill.run_state import CHECKPOINT, export_trainable

    state = full_state(model)
    if world_info()[0] == 0:
        state.update(export_trainable(run_dir / CHECKPOINT, "student", ema=True))
        _write(path, state, model, preset, {**extra, "ema": True})
    if dist.is_initialized():
        dist.barrier()


__all__ = ["full_state", "is_trainable", "run_stage1", "run_stage2", "run_teacher"]
