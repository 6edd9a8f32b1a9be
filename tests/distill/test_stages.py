"""Stage runners end to end on a toy preset and a random latent cache (no codec needed)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from lipforcing.config import (
    DiffusionForcingConfig,
    DMDConfig,
    OptimConfig,
    TeacherTrainConfig,
    tiny,
)
from lipforcing.distill.stages import run_stage1, run_stage2, run_teacher
from lipforcing.errors import CheckpointError
from lipforcing.models.checkpoints import load_checkpoint, read_state_dict


def toy_preset():
    p = tiny()
    model = dataclasses.replace(
        p.model, dim=32, ffn_dim=64, num_layers=2, audio_layers=1, audio_first_layer=0
    )
    codec = dataclasses.replace(p.codec, image_size=32)
    media = dataclasses.replace(p.media, crop_size=32)
    return dataclasses.replace(p, model=model, codec=codec, media=media)


def toy_cache(preset, n=4, frames=6):
    g = torch.Generator().manual_seed(0)
    lat = (n, 16, frames, 4, 4)
    return {
        "x0": torch.randn(lat, generator=g),
        "masked": torch.randn(lat, generator=g),
        "ref": torch.randn(n, 16, 1, 4, 4, generator=g),
        "ref_seq": torch.randn(lat, generator=g),
        "audio": torch.randn(n, 1 + 4 * (frames - 1), preset.audio.feature_dim, generator=g),
        "mask": (torch.arange(32)[:, None] > 16).float().expand(32, 32).contiguous(),
    }


def teacher_and_stage1(cache, preset, opt, tmp_path):
    """A toy teacher trained in tmp_path/t and its Stage-1 student in tmp_path/s1 (paths)."""
    teacher = run_teacher(
        cache, preset, TeacherTrainConfig(optim=opt, latent_frames=6), tmp_path / "t"
    )
    s1 = run_stage1(
        cache, teacher, DiffusionForcingConfig(optim=opt, latent_frames=6), tmp_path / "s1"
    )
    return teacher, s1


def test_teacher_stage1_stage2_run_and_skip_when_done(tmp_path):
    preset, opt = (
        toy_preset(),
        OptimConfig(lr=1e-3, warmup_steps=1, batch_size=2, micro_batch=2, steps=2),
    )
    cache = toy_cache(preset)
    teacher, s1 = teacher_and_stage1(cache, preset, opt, tmp_path)
    seen = []

    def reward(x0, batch):
        seen.append(x0.requires_grad)
        return torch.zeros(x0.shape[0])

    dmd = DMDConfig(
        optim=dataclasses.replace(opt, steps=1, betas=(0.0, 0.999)), critic_steps=2, num_chunks=2
    )
    s2 = run_stage2(cache, s1, teacher, dmd, tmp_path / "s2", reward_fn=reward)
    ema, _ = load_checkpoint(s2.with_name("student_ema.safetensors"))  # EMA beside it
    t_model, t_preset = load_checkpoint(teacher)
    s1_model, s_preset = load_checkpoint(s1)
    s2_model, _ = load_checkpoint(s2)
    assert t_preset.model.attention == "bidirectional"
    assert s_preset.model.attention == "block_causal"
    assert seen == [False]  # the reward sees a detached rollout, once per student step
    changed = [not torch.equal(a, b) for a, b in zip(s1_model.parameters(), s2_model.parameters())]
    assert any(changed)
    mtime = s2.stat().st_mtime_ns
    assert run_stage2(cache, s1, teacher, dmd, tmp_path / "s2") == s2  # skipped
    assert s2.stat().st_mtime_ns == mtime


def test_stage2_drop_mode_overrides_the_checkpoint_preset(tmp_path, monkeypatch):
    import lipforcing.distill.dmd as dmd_mod

    preset = toy_preset()
    preset = dataclasses.replace(
        preset, schedule=dataclasses.replace(preset.schedule, drop_mode="all")
    )
    opt = OptimConfig(lr=1e-3, warmup_steps=1, batch_size=2, micro_batch=2, steps=1)
    cache = toy_cache(preset)
    teacher = run_teacher(
        cache, preset, TeacherTrainConfig(optim=opt, latent_frames=6), tmp_path / "t"
    )
    s1 = run_stage1(
        cache, teacher, DiffusionForcingConfig(optim=opt, latent_frames=6), tmp_path / "s1"
    )
    modes = []
    real = dmd_mod.guided_velocity

    def spy(model, x_t, t, cond, scale, drop_mode="all", **kw):
        modes.append(drop_mode)
        return real(model, x_t, t, cond, scale, drop_mode, **kw)

    monkeypatch.setattr(dmd_mod, "guided_velocity", spy)
    dmd = DMDConfig(
        optim=dataclasses.replace(opt, betas=(0.0, 0.999)),
        critic_steps=1,
        num_chunks=2,
        drop_mode="audio",
    )
    s2 = run_stage2(cache, s1, teacher, dmd, tmp_path / "s2")
    assert modes and set(modes) == {"audio"}
    assert load_checkpoint(s2)[1].schedule.window_lo == preset.schedule.window_lo
    assert load_checkpoint(s1)[1].schedule.drop_mode == "all"
    assert load_checkpoint(s2)[1].schedule.drop_mode == "audio"


def test_teacher_starts_from_init_weights(tmp_path):
    from lipforcing.models.checkpoints import save_checkpoint

    preset = toy_preset()
    opt = OptimConfig(lr=1e-3, warmup_steps=1, batch_size=2, micro_batch=2, steps=0)
    cfg = TeacherTrainConfig(optim=opt, latent_frames=6)
    donor, _ = load_checkpoint(
        run_teacher(toy_cache(preset), preset, cfg, tmp_path / "donor", seed=5)
    )
    with torch.no_grad():  # a student (block-causal) with distinctive weights
        for p in donor.parameters():
            p.add_(0.1)
    student = preset.with_attention("block_causal")
    save_checkpoint(tmp_path / "student.safetensors", donor, student)
    init = tmp_path / "student.safetensors"
    fresh = run_teacher(toy_cache(preset), preset, cfg, tmp_path / "fresh", seed=5)
    tuned = run_teacher(toy_cache(preset), preset, cfg, tmp_path / "tuned", seed=5, init=init)
    fresh_m, _ = load_checkpoint(fresh)
    tuned_m, tuned_p = load_checkpoint(tuned)
    assert tuned_p.model.attention == "bidirectional"
    for (name, a), b, c in zip(
        tuned_m.state_dict().items(), donor.state_dict().values(), fresh_m.state_dict().values()
    ):
        assert torch.equal(a, b), name
        assert not torch.equal(a, c) or a.numel() == 0, name


def tiny_opt(**kw):
    return OptimConfig(lr=1e-3, warmup_steps=0, batch_size=2, micro_batch=2, steps=1, **kw)


def test_lora_stages_save_adapters_alone_and_continue_from_them(tmp_path):
    """Stage 1 with LoRA writes the adapter alone (naming its base); Stage 2 trains the same
    LoRA from it, with a LoRA critic; the stage-2 adapter and its EMA are adapters too."""
    from safetensors import safe_open

    from lipforcing.config import LoraConfig

    preset = toy_preset()
    cache = toy_cache(preset)
    teacher = run_teacher(
        cache, preset, TeacherTrainConfig(optim=tiny_opt(), latent_frames=6), tmp_path / "t"
    )
    lora = LoraConfig(rank=4, alpha=64.0)
    s1 = run_stage1(
        cache,
        teacher,
        DiffusionForcingConfig(optim=tiny_opt(), latent_frames=6, lora=lora),
        tmp_path / "s1",
    )
    with safe_open(str(s1), "pt") as f:
        keys, meta = set(f.keys()), f.metadata()
    assert meta["rank"] == "4" and all(
        "lora_" in k or k.endswith(".alpha") or k.startswith(("audio_", "patch_")) for k in keys
    )
    alphas = read_state_dict(s1)
    assert {float(v) for k, v in alphas.items() if k.endswith(".alpha")} == {64.0}
    assert sum(k.endswith(".alpha") for k in keys) == sum(k.endswith("lora_A.weight") for k in keys)
    dmd = DMDConfig(
        optim=tiny_opt(betas=(0.0, 0.999)), critic_steps=1, num_chunks=2, lora=lora, reward=None
    )
    s2 = run_stage2(cache, s1, teacher, dmd, tmp_path / "s2")
    with safe_open(str(s2), "pt") as f:
        assert set(f.keys()) == keys
    # the run's checkpoint exports the same adapter; `lipforcing convert` folds it into its base
    from lipforcing.cli.main import main
    from lipforcing.distill.run_state import export_checkpoint

    exported = export_checkpoint(tmp_path / "s2", "student", tmp_path / "adapter.safetensors")
    a, b = read_state_dict(exported), read_state_dict(s2)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    merged = tmp_path / "merged.safetensors"
    assert (
        main(
            [
                "convert",
                str(teacher),
                "--adapter",
                str(exported),
                "--out",
                str(merged),
                "--attention",
                "student",
                "--dtype",
                "fp32",
            ]
        )
        == 0
    )
    assert_merged_is_the_lora_student(merged, teacher, s2, lora, cache)
    assert s2.with_name("student_ema.safetensors").is_file()
    other = dataclasses.replace(dmd, lora=LoraConfig(rank=8, alpha=64.0))
    with pytest.raises(
        CheckpointError, match=r"student.safetensors: LoRA rank 4, but the recipe trains rank 8"
    ):
        run_stage2(cache, s1, teacher, other, tmp_path / "s2b")


def assert_merged_is_the_lora_student(merged, base, adapter, lora, cache):
    """Oracle: the unmerged peft model (base + LoRA factors applied at run time, the trained
    modules copied in) gives the output the folded file gives; the LoRA factors alone move the
    output far more than the two paths differ, so an unmerged or misscaled pair would show."""
    from lipforcing.distill.latents import make_batch
    from lipforcing.distill.lora import add_lora, load_adapter
    from lipforcing.models.weights import load_model

    plain = load_model(merged).model.eval()
    assert not any("lora" in n for n, _ in plain.named_parameters())
    lora_student = add_lora(load_model(base, attention="block_causal").model, lora).eval()
    load_adapter(lora_student, read_state_dict(adapter), adapter.name)
    batch = make_batch(cache, torch.arange(2), 4, 3)
    args = (batch["x0"], torch.full((2,), 0.7), batch["cond"])
    with torch.no_grad():
        want, got = lora_student(*args), plain(*args)
        for name, p in lora_student.named_parameters():
            if "lora_B" in name:
                p.zero_()
        without_pairs = lora_student(*args)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert (got - want).abs().max() < 1e-2 * (want - without_pairs).abs().max()


def test_a_critic_of_the_wrong_width_is_refused_before_any_step(tmp_path):
    """A teacher wider than the student, and no student-scale critic given: the critic would
    start from the teacher's weights by accident."""
    preset = toy_preset()
    wide = dataclasses.replace(preset, model=dataclasses.replace(preset.model, dim=64, ffn_dim=128))
    cache = toy_cache(preset)
    opt = tiny_opt()
    teacher = run_teacher(
        cache, wide, TeacherTrainConfig(optim=opt, latent_frames=6), tmp_path / "t"
    )
    small = run_teacher(
        cache, preset, TeacherTrainConfig(optim=opt, latent_frames=6), tmp_path / "small"
    )
    s1 = run_stage1(
        cache, small, DiffusionForcingConfig(optim=opt, latent_frames=6), tmp_path / "s1"
    )
    dmd = DMDConfig(optim=tiny_opt(betas=(0.0, 0.999)), critic_steps=1, num_chunks=2, reward=None)
    with pytest.raises(
        CheckpointError,
        match=r"critic weights .*teacher.safetensors have width 64.*student's scale \(width 32\)",
    ):
        run_stage2(cache, s1, teacher, dmd, tmp_path / "s2")
    assert not (tmp_path / "s2" / "checkpoint").exists()  # nothing ran
    # the cross-scale run: wide teacher, student-scale critic
    out = run_stage2(cache, s1, teacher, dmd, tmp_path / "s2", critic_path=small)
    assert out.is_file()


def test_stage2_wraps_and_trains_the_student_and_critic_only(tmp_path, monkeypatch):
    """The frozen teacher is loaded without grads, in eval mode, and never handed to the
    sharding wrapper (FSDP2 on CUDA) or to an optimiser: only the student and the critic are."""
    from lipforcing.distill import stages
    from lipforcing.distill.weights import Weights

    preset, opt = toy_preset(), tiny_opt()
    cache = toy_cache(preset)
    teacher, s1 = teacher_and_stage1(cache, preset, opt, tmp_path)
    wrapped = []
    monkeypatch.setattr(stages, "shard_model", lambda m, recompute=False: wrapped.append(m) or m)
    dmd = DMDConfig(optim=tiny_opt(betas=(0.0, 0.999)), critic_steps=1, num_chunks=2, reward=None)
    m = stages.load_stage2(Weights.of(s1), Weights.of(teacher), Weights.of(teacher), dmd, None)
    assert [id(w) for w in wrapped] == [id(m.student), id(m.critic)]
    assert not any(p.requires_grad for p in m.teacher.parameters()) and not m.teacher.training
    trainees = m.trainees(dmd)
    assert {k: id(t.model) for k, t in trainees.items()} == {
        "student": id(m.student),
        "critic": id(m.critic),
    }
    frozen = {id(p) for p in m.teacher.parameters()}
    assert not frozen & {id(p) for t in trainees.values() for p in t.model.parameters()}


def text_preset():
    """The toy preset reading a text context (as the Wan presets do) of <= 8 tokens."""
    p = toy_preset()
    return dataclasses.replace(
        p, model=dataclasses.replace(p.model, use_text_context=True, text_dim=16, text_len=8)
    )


def test_stage2_reads_the_context_fitted_to_the_student_and_the_release_drop_its_negative(
    tmp_path,
):
    """One Context type from the context file to the Stage-2 batches: a short context trains
    exactly as the same context zero-padded by hand to the model's text length (oracle: the
    release pads the umT5 embedding to 512); under the release's full drop the teacher's
    unconditional branch reads the negative prompt (another negative, another student), and a
    context file without one trains as with a zero negative (the release's default)."""
    import torch.nn.functional as F

    from lipforcing.models.text import Context

    preset = text_preset()
    cache = toy_cache(preset)
    g = torch.Generator().manual_seed(3)
    text, negative = torch.randn(1, 5, 16, generator=g), torch.randn(1, 3, 16, generator=g)
    short = Context(text, negative, "prompt.ctx")
    padded = Context(F.pad(text, (0, 0, 0, 3)), F.pad(negative, (0, 0, 0, 5)), "padded.ctx")
    teacher = run_teacher(
        cache,
        preset,
        TeacherTrainConfig(optim=tiny_opt(), latent_frames=6),
        tmp_path / "t",
        context=short,
    )
    s1 = run_stage1(
        cache,
        teacher,
        DiffusionForcingConfig(optim=tiny_opt(), latent_frames=6),
        tmp_path / "s1",
        context=short,
    )
    dmd = DMDConfig(
        optim=tiny_opt(betas=(0.0, 0.999)),
        critic_steps=1,
        num_chunks=2,
        reward=None,
        drop_mode="release",
    )
    runs = {
        name: read_state_dict(run_stage2(cache, s1, teacher, dmd, tmp_path / name, context=c))
        for name, c in (
            ("short", short),
            ("padded", padded),
            ("other_negative", Context(text, -negative, "other.ctx")),
            ("no_negative", Context(text, None, "prompt.ctx")),
            ("zero_negative", Context(text, torch.zeros_like(negative), "zero.ctx")),
        )
    }
    a, b, c = runs["short"], runs["padded"], runs["other_negative"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    d, z = runs["no_negative"], runs["zero_negative"]
    assert all(torch.equal(d[k], z[k]) for k in d)
    assert any(not torch.equal(a[k], d[k]) for k in a)
