"""LoRA (peft) as the release configures it: the trainable set, its size by formula, adapters
saved alone in OmniAvatar's layout and merged back, rank mismatches refused."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch
from distill_helpers import toy_batch, toy_model
from test_stages import toy_cache, toy_preset

from lipforcing.config import LoraConfig, get_preset
from lipforcing.distill.latents import make_batch
from lipforcing.distill.lora import (
    adapter_state,
    add_lora,
    expected_trainable,
    load_adapter,
    save_adapter,
    trainable_names,
)
from lipforcing.errors import CheckpointError
from lipforcing.models import build_model
from lipforcing.models.checkpoints import read_state_dict


def test_trainable_set_is_lora_plus_audio_and_patch_embedding():
    base = toy_model()
    names_before = {n for n, _ in base.named_parameters()}
    batch = toy_batch(1, 3)
    t = torch.full((1,), 0.5)
    before = base(batch["x0"], t, batch["cond"]).detach()
    model = add_lora(base, LoraConfig(rank=4, alpha=2.0))
    trainable = set(trainable_names(model))
    linear = re.compile(r"blocks\.\d+\.(self_attn|cross_attn)\.(q|k|v|o)|blocks\.\d+\.ffn\.(0|2)")
    expected = set()
    for n in names_before:
        if n.startswith(("audio_proj.", "audio_cond_projs.", "patch_embedding.")):
            expected.add(n)
        elif linear.match(n) and n.endswith(".weight"):
            stem = n[: -len(".weight")]
            expected |= {f"{stem}.lora_A.default.weight", f"{stem}.lora_B.default.weight"}
    assert trainable == expected
    n_layers = 2 * 4 * len(model.blocks) + 2 * len(model.blocks)  # q k v o x2 attn, ffn 0/2
    assert sum("lora_A" in n for n in trainable) == n_layers
    # lora_B starts at zero: the adapted model equals the base model
    torch.testing.assert_close(model(batch["x0"], t, batch["cond"]).detach(), before)


@pytest.mark.parametrize("preset", ["wan-14b", "wan-1.3b"])
def test_trainable_parameter_count_matches_the_formula_at_wan_width(preset):
    """Rank 128 / alpha 64 on a Wan-width model (2 blocks, built on the meta device)."""
    cfg = dataclasses.replace(
        get_preset(preset).model, num_layers=2, audio_layers=1, audio_first_layer=1
    )
    lora = LoraConfig()
    model = add_lora(build_model(cfg, device="meta"), lora)
    counted = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert counted == expected_trainable(cfg, lora)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    assert frozen > counted  # the blocks' base weights stay frozen


def test_adapter_alone_merges_into_the_base_like_the_lora_model(tmp_path):
    """Save the adapter of a trained LoRA model alone; the one weights loader (what
    `lipforcing convert` runs), given the base and the adapter, folds it back (W += alpha/r B A)
    into a plain model whose output is the LoRA model's."""
    from lipforcing.models.checkpoints import save_checkpoint
    from lipforcing.models.weights import WeightsSpec, load_model

    torch.manual_seed(0)
    preset = toy_preset().with_attention("block_causal")
    base = build_model(preset.model)
    with torch.no_grad():
        for p in base.parameters():
            p.normal_(0, 0.1)
    base_file = save_checkpoint(tmp_path / "base.safetensors", base, preset)
    lora_model = add_lora(base, LoraConfig(rank=4, alpha=2.0))
    with torch.no_grad():
        for p in lora_model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    adapter = save_adapter(
        tmp_path / "adapter.safetensors", lora_model.state_dict(), lora_model.lora, preset
    )
    keys = set(read_state_dict(adapter))
    assert all(".default." not in k for k in keys)
    assert not any(k.endswith(("self_attn.q.weight", "norm_q.weight")) for k in keys)
    merged = load_model(WeightsSpec.of(base_file, [adapter])).model
    assert not any("lora" in n for n, _ in merged.named_parameters())
    batch = make_batch(toy_cache(preset), torch.arange(2), 4, 3)
    t = torch.full((2,), 0.7)
    want = lora_model(batch["x0"], t, batch["cond"])
    torch.testing.assert_close(merged(batch["x0"], t, batch["cond"]), want, rtol=1e-4, atol=1e-5)
    # and loading it back into a LoRA model restores the trainables exactly
    again = add_lora(load_model(base_file).model, LoraConfig(rank=4, alpha=2.0))
    load_adapter(again, read_state_dict(adapter), "adapter.safetensors")
    torch.testing.assert_close(again(batch["x0"], t, batch["cond"]), want)


def test_an_adapter_of_another_rank_is_refused_with_its_name():
    adapter = adapter_state(add_lora(toy_model(), LoraConfig(rank=4)).state_dict(), 64.0)
    model = add_lora(toy_model(), LoraConfig(rank=8))
    with pytest.raises(CheckpointError, match=r"stage1\.safetensors: LoRA rank 4.*rank 8"):
        load_adapter(model, adapter, "stage1.safetensors")


def test_a_release_adapter_starts_the_lora_unmerged_on_the_base_with_its_plain_tensors(tmp_path):
    """``--init W/Wan2.1-T2V --init-adapter omniavatar_ls.pt`` under a LoRA recipe (the release's
    merge_lora=False): the adapter's audio modules and wider patch embedding are in the model,
    its LoRA pairs are the trainable LoRA's start, and the base weights stay Wan's (unmerged)."""
    from lipforcing.conformance.standins import (
        LORA_RANK,
        model_config,
        peft_name,
        write_adapter,
        write_wan_base,
    )
    from lipforcing.distill.weights import from_cli, load_model

    cfg = model_config("1.3b", 1)
    base = write_wan_base(tmp_path / "wan", cfg, seed=0)
    adapter = write_adapter(tmp_path / "omniavatar_ls.pt", cfg, seed=1)
    lora = LoraConfig(rank=LORA_RANK, alpha=64.0)  # the stand-in's rank (the release: 128)
    weights = from_cli(str(tmp_path / "wan"), [str(tmp_path / "omniavatar_ls.pt")], lora)
    with pytest.raises(
        CheckpointError, match=f"LoRA rank {LORA_RANK}, but the recipe trains rank 8"
    ):
        load_model(weights, "block_causal", LoraConfig(rank=8, alpha=64.0))
    with pytest.raises(CheckpointError, match="LoRA alpha 64.0, but the recipe trains alpha 32.0"):
        load_model(weights, "block_causal", LoraConfig(rank=LORA_RANK, alpha=32.0))
    model, _ = load_model(weights, "block_causal", lora)
    own = model.state_dict()
    pairs = [k for k in adapter if ".lora_" in k]
    assert pairs and len(pairs) < len(adapter)
    for k, v in adapter.items():  # the file holds bf16
        name = peft_name(k) if k in pairs else k
        assert torch.equal(own[name], v.bfloat16().float()), k
    modules = {k.split(".lora_")[0] for k in pairs}
    for m in modules:  # the base weight: Wan's as stored, exactly (the pair never folded in)
        assert torch.equal(own[f"{m}.base_layer.weight"], base[f"{m}.weight"]), m
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {peft_name(k) for k in pairs} <= trainable
    assert "patch_embedding.weight" in trainable and own["patch_embedding.weight"].shape[1] > 16


def test_a_stage1_adapter_rebuilds_the_student_it_trained_bit_for_bit(tmp_path, monkeypatch):
    """Stage 1 from ``--init W/Wan2.1-T2V --init-adapter omniavatar_ls.pt`` (LoRA, the release's
    recipe) writes its adapter; given alone (as ``train stage2 --student`` takes it), the adapter
    rebuilds the trainee Stage 1 held in memory when it saved, every parameter bit for bit: its
    JSON records the released adapter as part of the base (audio modules, wider patch
    embedding), its own trained modules and LoRA replace the released ones. Folded by the
    loader (what ``lipforcing convert`` runs) over the recorded base, each weight is
    W + (alpha / r) B A of the trained factors and each trained module is the trained one."""
    from lipforcing.config import DiffusionForcingConfig, OptimConfig
    from lipforcing.conformance.standins import (
        LORA_RANK,
        model_config,
        peft_name,
        write_adapter,
        write_wan_base,
    )
    from lipforcing.distill import stages
    from lipforcing.distill.weights import Weights, adapter_base, load_model
    from lipforcing.models.text import Context
    from lipforcing.models.weights import WeightsSpec
    from lipforcing.models.weights import load_model as load_folded

    cfg = model_config("1.3b", 1)  # audio_proj stored, no audio block at this depth
    base = write_wan_base(tmp_path / "wan", cfg, seed=0)
    released = write_adapter(tmp_path / "omniavatar_ls.pt", cfg, seed=1)
    lora = LoraConfig(rank=LORA_RANK, alpha=64.0)
    preset = get_preset("wan-1.3b")
    cache = toy_cache(preset, n=2, frames=3)
    context = Context(torch.randn(1, 4, cfg.text_dim), None, "context")
    trained = {}
    save = stages._save_final

    def keep(path, model, preset, extra):  # the trainee as it is when Stage 1 saves it
        trained.update({k: v.detach().clone() for k, v in model.state_dict().items()})
        save(path, model, preset, extra)

    monkeypatch.setattr(stages, "_save_final", keep)
    opt = OptimConfig(lr=1e-3, warmup_steps=0, batch_size=1, micro_batch=1, steps=1)
    s1 = stages.run_stage1(
        cache,
        tmp_path / "wan",
        DiffusionForcingConfig(optim=opt, latent_frames=3, lora=lora),
        tmp_path / "s1",
        init_adapter=tmp_path / "omniavatar_ls.pt",
        context=context,
    )
    assert adapter_base(s1).adapters == ((tmp_path / "omniavatar_ls.pt").resolve(),)
    rebuilt, _ = load_model(Weights.of(s1), "block_causal", lora)
    got = rebuilt.state_dict()
    assert got.keys() == trained.keys()
    for k, v in trained.items():
        assert torch.equal(got[k], v), k
    unused = [k for k in released if k.startswith("audio_proj.")]  # no block reads it here
    assert unused
    moved = [k for k in released if not torch.equal(trained[peft_name(k)], as_loaded(released[k]))]
    assert moved == [k for k in released if k not in unused]  # Stage 1 trained them all
    frozen = "blocks.0.ffn.2.base_layer.weight"
    assert torch.equal(trained[frozen], base["blocks.0.ffn.2.weight"])  # Wan's, never folded
    recorded = Weights.of(s1).base
    folded = load_folded(WeightsSpec(recorded.path, (*recorded.adapters, s1))).model
    plain = {k.replace(".base_layer.", "."): v for k, v in trained.items() if "lora_" not in k}
    scale = lora.alpha / lora.rank
    for name, value in folded.state_dict().items():
        module = name[: -len(".weight")]
        if f"{module}.lora_A.default.weight" in trained:
            a = trained[f"{module}.lora_A.default.weight"]
            b = trained[f"{module}.lora_B.default.weight"]
            assert torch.equal(value, plain[name] + scale * (b @ a)), name
        else:
            assert torch.equal(value, plain[name]), name


def as_loaded(value: torch.Tensor) -> torch.Tensor:
    """A stand-in tensor as the released bf16 file gives it to an fp32 trainee."""
    return value.bfloat16().float()
