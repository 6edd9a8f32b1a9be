"""Checkpoints: round trip, teacher -> student, Wan / OmniAvatar / LoRA / official, errors."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from model_helpers import random_cond, randomized, small_config

from lipforcing.config import get_preset
from lipforcing.errors import CheckpointError
from lipforcing.models import build_model
from lipforcing.models.checkpoints import (
    load_checkpoint,
    load_pretrained,
    load_weights,
    save_checkpoint,
    student_from_teacher,
)


def wan_t2v_shapes(dim, ffn, layers, in_dim, text_dim, freq_dim=256, out=16, patch=(1, 2, 2)):
    """Wan 2.1 T2V parameter names and shapes, written out from ``wan/modules/model.py``."""
    table = {
        "patch_embedding.weight": (dim, in_dim, *patch),
        "patch_embedding.bias": (dim,),
        "text_embedding.0.weight": (dim, text_dim),
        "text_embedding.0.bias": (dim,),
        "text_embedding.2.weight": (dim, dim),
        "text_embedding.2.bias": (dim,),
        "time_embedding.0.weight": (dim, freq_dim),
        "time_embedding.0.bias": (dim,),
        "time_embedding.2.weight": (dim, dim),
        "time_embedding.2.bias": (dim,),
        "time_projection.1.weight": (6 * dim, dim),
        "time_projection.1.bias": (6 * dim,),
        "head.head.weight": (out * patch[0] * patch[1] * patch[2], dim),
        "head.head.bias": (out * patch[0] * patch[1] * patch[2],),
        "head.modulation": (1, 2, dim),
    }
    for i in range(layers):
        b = f"blocks.{i}"
        for attn in ("self_attn", "cross_attn"):
            for lin in "qkvo":
                table[f"{b}.{attn}.{lin}.weight"] = (dim, dim)
                table[f"{b}.{attn}.{lin}.bias"] = (dim,)
            table[f"{b}.{attn}.norm_q.weight"] = (dim,)
            table[f"{b}.{attn}.norm_k.weight"] = (dim,)
        table[f"{b}.norm3.weight"] = (dim,)
        table[f"{b}.norm3.bias"] = (dim,)
        table[f"{b}.ffn.0.weight"] = (ffn, dim)
        table[f"{b}.ffn.0.bias"] = (ffn,)
        table[f"{b}.ffn.2.weight"] = (dim, ffn)
        table[f"{b}.ffn.2.bias"] = (dim,)
        table[f"{b}.modulation"] = (1, 6, dim)
    return table


def omniavatar_audio_shapes(dim, layers, audio_dim, hidden=32):
    """OmniAvatar's audio modules (``AudioPack`` (4, 1, 1) + ``num_layers // 2 - 1`` Linears)."""
    table = {
        "audio_proj.proj.weight": (hidden, 4 * audio_dim),
        "audio_proj.proj.bias": (hidden,),
        "audio_proj.norm_out.weight": (hidden,),
        "audio_proj.norm_out.bias": (hidden,),
    }
    for k in range(layers // 2 - 1):
        table[f"audio_cond_projs.{k}.weight"] = (dim, hidden)
        table[f"audio_cond_projs.{k}.bias"] = (dim,)
    return table


def _random_state(table, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(*s, generator=g) for k, s in table.items()}


def wan_cfg():
    """OmniAvatar's default audio layout (blocks 2 .. L//2) at a small size, text context on."""
    return small_config(num_layers=6, audio_layers=None, audio_first_layer=2, use_text_context=True)


def test_round_trip(tmp_path):
    preset = get_preset("tiny").with_attention("block_causal")
    preset = dataclasses.replace(preset, model=dataclasses.replace(preset.model, num_layers=2))
    model = randomized(preset.model)
    path = save_checkpoint(tmp_path / "student.safetensors", model, preset, extra={"step": 7})
    assert json.loads(path.with_suffix(".json").read_text())["extra"] == {"step": 7}
    loaded, p2 = load_checkpoint(path)
    assert p2 == preset
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    path.with_suffix(".json").unlink()  # the copy in the safetensors header still works
    assert load_checkpoint(path)[1] == preset


def test_teacher_initialises_student(tmp_path):
    preset = get_preset("tiny")
    preset = dataclasses.replace(preset, model=dataclasses.replace(preset.model, num_layers=2))
    teacher = randomized(preset.model)
    path = save_checkpoint(tmp_path / "teacher.safetensors", teacher, preset)
    student, sp = student_from_teacher(path)
    assert sp.model.attention == "block_causal" and preset.model.attention == "bidirectional"
    report = load_weights(build_model(sp.model), teacher.state_dict(), strict=True)
    assert report.missing == [] and report.unexpected == [] and report.reshaped == []
    assert all(torch.equal(a, b) for a, b in zip(teacher.parameters(), student.parameters()))


def test_wan_official_names_load():
    """A Wan 2.1 T2V state dict (16 channels) fills every base parameter; channels expand."""
    cfg = wan_cfg()
    wan = _random_state(wan_t2v_shapes(cfg.dim, cfg.ffn_dim, cfg.num_layers, 16, cfg.text_dim))
    model = build_model(cfg)
    report = load_weights(model, {f"model.{k}": v for k, v in wan.items()}, strict=False)
    assert report.unexpected == []
    assert report.reshaped == ["patch_embedding.weight"]
    assert all(k.startswith("audio_") for k in report.missing)  # only the lip-sync additions
    w = model.patch_embedding.weight
    assert torch.equal(w[:, :16], wan["patch_embedding.weight"]) and w[:, 16:].abs().max() == 0
    assert torch.equal(
        model.blocks[1].cross_attn.norm_k.weight, wan["blocks.1.cross_attn.norm_k.weight"]
    )
    with pytest.raises(CheckpointError, match="missing"):
        load_weights(build_model(cfg), wan, strict=True)


def test_omniavatar_names_load_with_zero_missing(tmp_path):
    cfg = wan_cfg()
    table = wan_t2v_shapes(cfg.dim, cfg.ffn_dim, cfg.num_layers, 33, cfg.text_dim)
    table |= omniavatar_audio_shapes(cfg.dim, cfg.num_layers, cfg.audio_feature_dim)
    state = _random_state(table)
    torch.save(state, tmp_path / "pytorch_model.pt")
    model = build_model(cfg)
    report = load_pretrained(model, tmp_path / "pytorch_model.pt")
    assert report.missing == [] and report.unexpected == []
    assert report.reshaped == ["patch_embedding.weight"]
    assert torch.equal(model.patch_embedding.weight[:, :33], state["patch_embedding.weight"])
    assert torch.equal(model.audio_cond_projs[1].weight, state["audio_cond_projs.1.weight"])


def test_official_training_checkpoint_with_peft_lora(tmp_path):
    cfg = wan_cfg()
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, cfg.dim, generator=g), torch.randn(cfg.dim, 4, generator=g)
    # the causal wrapper keeps the DiT at `_core.`, PEFT-wrapped Linears, plus its own heads
    net = {f"_core.{k}": v for k, v in randomized(cfg).state_dict().items()}
    q = net.pop("_core.blocks.0.self_attn.q.weight")
    net["_core.blocks.0.self_attn.q.base_layer.weight"] = q
    net["_core.blocks.0.self_attn.q.lora_A.default.weight"] = a
    net["_core.blocks.0.self_attn.q.lora_B.default.weight"] = b
    net["logvar_linear.weight"] = torch.zeros(1, 4)
    torch.save({"model": {"net": net}, "iteration": 600}, tmp_path / "0000600.pth")
    model = build_model(cfg)
    report = load_pretrained(model, tmp_path / "0000600.pth")
    assert report.missing == [] and report.unexpected == []
    assert report.ignored == ["0000600.pth:logvar_linear.weight"]
    assert report.merged == ["blocks.0.self_attn.q"]
    assert torch.equal(model.head.modulation, net["_core.head.modulation"])
    merged_q = q + (64.0 / 4) * b @ a  # OmniAvatar / Lip Forcing LoRA alpha 64
    assert torch.allclose(model.blocks[0].self_attn.q.weight, merged_q, atol=1e-5)


def test_corrupt_and_mismatched_checkpoints(tmp_path):
    preset = get_preset("tiny")
    preset = dataclasses.replace(preset, model=dataclasses.replace(preset.model, num_layers=1))
    path = save_checkpoint(tmp_path / "m.safetensors", build_model(preset.model), preset)
    data = path.read_bytes()
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(data[: len(data) // 2])
    bad.with_suffix(".json").write_text(path.with_suffix(".json").read_text())
    with pytest.raises(CheckpointError, match="not a readable safetensors file") as e:
        load_checkpoint(bad)
    assert "\n" not in str(e.value)
    # weights of a 1-layer model under a config claiming 2 layers
    other = dataclasses.replace(preset, model=dataclasses.replace(preset.model, num_layers=2))
    path.with_suffix(".json").write_text(json.dumps({"preset": other.to_dict()}))
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(path)
    wide = dataclasses.replace(preset.model, dim=preset.model.dim + 4)
    with pytest.raises(CheckpointError, match="shape|does not match"):
        load_weights(build_model(wide), build_model(preset.model).state_dict())
    pickled = tmp_path / "code.pth"
    torch.save({"model": {"net": {"x": torch.zeros(1)}}, "obj": tmp_path}, pickled)
    with pytest.raises(CheckpointError):
        load_pretrained(build_model(preset.model), pickled)
    with pytest.raises(CheckpointError, match="no weights at"):
        load_checkpoint(tmp_path / "absent.safetensors")


def test_loaded_model_runs(tmp_path):
    cfg = wan_cfg()
    model = randomized(cfg)
    preset = get_preset("tiny")
    preset = dataclasses.replace(
        preset, model=dataclasses.replace(cfg, audio_feature_dim=preset.model.audio_feature_dim)
    )
    model = randomized(preset.model)
    path = save_checkpoint(tmp_path / "x.safetensors", model, preset)
    loaded, _ = load_checkpoint(path)
    cond = random_cond(preset.model, 3)
    x, t = torch.randn(1, 16, 3, 4, 4), torch.full((1,), 0.4)
    with torch.no_grad():
        assert torch.equal(model(x, t, cond), loaded(x, t, cond))
