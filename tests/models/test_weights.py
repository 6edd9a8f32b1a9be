"""The one loader: every released layout, LoRA folding (peft as the oracle), adapters over a
base, architecture read from the tensors, and every bad input as one message."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from model_helpers import random_cond

from lipforcing.cli.main import main
from lipforcing.config import get_preset
from lipforcing.conformance.layouts import lora_shapes, omniavatar_audio_shapes, wan_t2v_shapes
from lipforcing.errors import CheckpointError
from lipforcing.models import build_model
from lipforcing.models.checkpoints import save_checkpoint
from lipforcing.models.weights import WeightsSpec, load_model, parse_key

FAMILY = get_preset("wan-1.3b")


def narrow_family():
    """wan-1.3b's family at a width the CPU handles: the tests load against it by name."""
    m = dataclasses.replace(FAMILY.model, dim=64, ffn_dim=96, num_heads=2, text_dim=32)
    return dataclasses.replace(FAMILY, model=m)


@pytest.fixture
def family(monkeypatch):
    """Register the narrow family as preset ``wan-test`` for these tests."""
    from lipforcing import config

    fam = dataclasses.replace(narrow_family(), name="wan-test")
    monkeypatch.setitem(config.PRESETS, "wan-test", lambda: fam)
    return fam


def rand(table, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return {k: (0.1 * torch.randn(*s, generator=g)).to(dtype) for k, s in table.items()}


def save_st(path, tensors, metadata=None):
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    return path


def omni_full(fam, layers=4, in_dim=65, seed=0):
    cfg = dataclasses.replace(fam.model, num_layers=layers)
    return rand(wan_t2v_shapes(cfg, in_dim) | omniavatar_audio_shapes(cfg), seed)


# ----------------------------------------------------------------------------- layouts


def test_every_layout_loads_the_same_weights(tmp_path, family):
    """One file, shards + index, any one shard, a folder, a flat .pth under every wrapper
    prefix, a training checkpoint and a distributed checkpoint: the same model."""
    import torch.distributed.checkpoint as dcp

    state = omni_full(family)
    ref = load_model(WeightsSpec(save_st(tmp_path / "one.safetensors", state), family="wan-test"))
    assert ref.model.cfg.num_layers == 4 and ref.model.cfg.num_audio_layers == 1
    keys = sorted(state)
    folder = tmp_path / "shards"
    folder.mkdir()
    weight_map = {}
    for k, part in enumerate([keys[0::3], keys[1::3], keys[2::3]], 1):
        name = f"diffusion_pytorch_model-{k:05d}-of-00003.safetensors"
        save_st(folder / name, {key: state[key] for key in part})
        weight_map |= {key: name for key in part}
    index = folder / "diffusion_pytorch_model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    named = [index, folder, folder / "diffusion_pytorch_model-00002-of-00003.safetensors"]
    for prefix in ("", "_core.", "module._orig_mod.", "model."):
        torch.save({prefix + k: v.bfloat16() for k, v in state.items()}, tmp_path / "flat.pth")
        named.append(tmp_path / f"flat{len(named)}.pth")
        (tmp_path / "flat.pth").rename(named[-1])
    torch.save({"model": {"net": {"_core." + k: v for k, v in state.items()}}, "iteration": 3},
               tmp_path / "0000003.pth")  # fmt: skip
    named.append(tmp_path / "0000003.pth")
    dcp.save({"_core." + k: v for k, v in state.items()}, checkpoint_id=str(tmp_path / "d"))
    named.append(tmp_path / "d")
    for path in named:
        got = load_model(WeightsSpec(path, family="wan-test"))
        tol = 1e-2 if path.suffix == ".pth" and "0000003" not in path.name else 0
        for (k, a), b in zip(ref.model.state_dict().items(), got.model.state_dict().values()):
            assert torch.allclose(a, b, atol=tol, rtol=tol), (path, k)


def test_diffusers_folder_written_by_diffusers(tmp_path, family):
    """A ``transformer/`` folder saved by diffusers itself (sharded) loads as a Wan base."""
    diffusers = pytest.importorskip("diffusers")
    m = family.model
    net = diffusers.WanTransformer3DModel(
        patch_size=m.patch_size, num_attention_heads=m.num_heads, attention_head_dim=m.head_dim,
        in_channels=16, out_channels=16, text_dim=m.text_dim, freq_dim=m.freq_dim,
        ffn_dim=m.ffn_dim, num_layers=4, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
    )  # fmt: skip
    net.save_pretrained(tmp_path / "pipe" / "transformer", max_shard_size="200KB")
    assert len(list((tmp_path / "pipe" / "transformer").glob("*.safetensors"))) > 1
    loaded = load_model(tmp_path / "pipe", allow_missing=True)  # family found by width? no:
    assert loaded.preset.name == "wan-test"  # width 64 is the registered test family
    w = loaded.model.blocks[3].cross_attn.o.weight
    assert torch.equal(w, net.blocks[3].attn2.to_out[0].weight)
    assert torch.equal(loaded.model.blocks[1].norm3.weight, net.blocks[1].norm2.weight)
    assert loaded.report.reshaped == ["patch_embedding.weight"]
    assert all(k.startswith("audio_") for k in loaded.report.missing)


# ----------------------------------------------------------------------------- LoRA


def _peft_merged(weight, a, b, alpha):
    """The oracle: peft's own LoRA Linear, merged by peft."""
    from peft import LoraConfig, inject_adapter_in_model

    rank = a.shape[0]
    lin = torch.nn.Sequential(torch.nn.Linear(weight.shape[1], weight.shape[0]))
    lin[0].weight.data.copy_(weight)
    inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=alpha, target_modules=["0"]), lin)
    lin[0].lora_A["default"].weight.data.copy_(a)
    lin[0].lora_B["default"].weight.data.copy_(b)
    lin[0].merge()
    return lin[0].base_layer.weight.detach()


@pytest.mark.parametrize("naming", ["omniavatar", "peft", "kohya"])
def test_lora_adapter_folds_like_peft(tmp_path, family, naming):
    cfg = dataclasses.replace(family.model, num_layers=4)
    base = rand(wan_t2v_shapes(cfg), seed=1)
    save_st(tmp_path / "base.safetensors", base)
    adapter = rand(lora_shapes(cfg, rank=8, naming=naming), seed=2)
    adapter |= rand(omniavatar_audio_shapes(cfg), seed=3)
    adapter |= rand({"patch_embedding.weight": (cfg.dim, 33, 1, 2, 2)}, seed=4)
    torch.save(adapter, tmp_path / "pytorch_model.pt")
    spec = WeightsSpec(tmp_path / "base.safetensors", (tmp_path / "pytorch_model.pt",))
    loaded = load_model(spec)
    assert len(loaded.report.merged) == 4 * 10 and not loaded.report.missing
    a_key, b_key = [k for k in adapter if k.startswith("blocks.2.ffn.0.")]
    want = _peft_merged(base["blocks.2.ffn.0.weight"], adapter[a_key], adapter[b_key], 64)
    assert torch.allclose(loaded.model.blocks[2].ffn[0].weight, want, atol=1e-5)
    pe = loaded.model.patch_embedding.weight
    assert torch.equal(pe[:, :33], adapter["patch_embedding.weight"]) and not pe[:, 33:].any()


def test_later_adapter_replaces_earlier_lora(tmp_path, family):
    """The Stage-2 delta's LoRA replaces the teacher adapter's (the release's loader)."""
    cfg = dataclasses.replace(family.model, num_layers=4)
    save_st(tmp_path / "base.safetensors", omni_full(family, seed=1))
    first, second = (rand(lora_shapes(cfg, 4, "omniavatar"), seed=s) for s in (5, 6))
    torch.save(first, tmp_path / "teacher.pt")
    delta = {"_core." + k.replace(".weight", ".default.weight"): v for k, v in second.items()}
    torch.save({"model": {"net": delta}}, tmp_path / "0000600.pth")
    spec = WeightsSpec(
        tmp_path / "base.safetensors", (tmp_path / "teacher.pt", tmp_path / "0000600.pth")
    )
    got = load_model(spec).model.blocks[0].self_attn.q.weight
    only_delta = load_model(WeightsSpec(spec.path, (tmp_path / "0000600.pth",)))
    assert torch.equal(got, only_delta.model.blocks[0].self_attn.q.weight)


def test_parse_key_variants():
    assert parse_key("blocks.0.attn1.to_q.lora_A.weight", True) == ("blocks.0.self_attn.q", "A")
    assert parse_key("blocks.0.ffn.2.lora_up.weight", False) == ("blocks.0.ffn.2", "B")
    assert parse_key("blocks.0.ffn.2.alpha", False) == ("blocks.0.ffn.2", "alpha")
    assert (
        parse_key("blocks.1.self_attn.o.base_layer.weight", False)[0]
        == "blocks.1.self_attn.o.weight"
    )


# ----------------------------------------------------------------------------- bad input


def test_bad_inputs_one_message(tmp_path, family, capsys):
    cfg = dataclasses.replace(family.model, num_layers=4)
    state = omni_full(family)
    good = save_st(tmp_path / "good.safetensors", state)
    cases = {}
    wide = dataclasses.replace(cfg, dim=96, num_heads=2)
    cases["other size"] = (
        save_st(tmp_path / "wide.safetensors", rand(wan_t2v_shapes(wide))),
        (),
        r"patch_embedding.weight has shape \(96, 16, 1, 2, 2\).*\(64",
    )
    big = rand(lora_shapes(wide, 4), seed=7)
    torch.save(big, tmp_path / "wide_lora.pt")
    cases["adapter of another size"] = (
        good,
        (tmp_path / "wide_lora.pt",),
        r"wide_lora.pt: LoRA .*lora_B.weight \(96, 4\)",
    )
    lora = rand(lora_shapes(cfg, 4), seed=8)
    lora["blocks.1.ffn.0.lora_B.weight"] = torch.zeros(cfg.ffn_dim, 5)
    torch.save(lora, tmp_path / "rank.pt")
    cases["rank mismatch"] = (good, (tmp_path / "rank.pt",), r"rank mismatch at blocks.1.ffn.0")
    save_st(tmp_path / "unknown.safetensors", state | {"blocks.0.extra.weight": torch.zeros(2)})
    cases["unknown key"] = (
        tmp_path / "unknown.safetensors",
        (),
        r"unknown key blocks.0.extra.weight",
    )
    nan = dict(state)
    nan["blocks.2.ffn.2.weight"] = nan["blocks.2.ffn.2.weight"].clone()
    nan["blocks.2.ffn.2.weight"][0, 3] = float("nan")
    cases["NaN weights"] = (
        save_st(tmp_path / "nan.safetensors", nan),
        (),
        r"nan.safetensors: tensor blocks.2.ffn.2.weight has 1 non-finite",
    )
    folder = tmp_path / "missing_shard"
    folder.mkdir()
    save_st(folder / "m-00001-of-00002.safetensors", {"a": torch.zeros(1)})
    (folder / "m.safetensors.index.json").write_text(
        json.dumps(
            {
                "weight_map": {
                    "a": "m-00001-of-00002.safetensors",
                    "b": "m-00002-of-00002.safetensors",
                }
            }
        )
    )
    cases["missing shard"] = (folder, (), r"names shard m-00002-of-00002.safetensors \(for b")
    cases["lone shard"] = (folder / "m-00001-of-00002.safetensors", (), r"names shard m-00002")
    torch.save({"model": {"net": state}, "cfg": tmp_path}, tmp_path / "code.pth")
    cases["pickle with code"] = (tmp_path / "code.pth", (), r"needs more than tensors .*PosixPath")
    adapter_only = tmp_path / "adapter_only.pt"
    torch.save(lora, adapter_only)
    cases["adapter without base"] = (adapter_only, (), r"no patch_embedding.weight .*--adapter")
    tiny = get_preset("tiny").with_attention("block_causal")
    other = save_checkpoint(tmp_path / "tiny.safetensors", build_model(tiny.model), tiny)
    cases["other family"] = (other, (), r"tiny.safetensors holds a tiny model, not wan-test")
    for name, (path, adapters, pattern) in cases.items():
        with pytest.raises(CheckpointError, match=pattern) as e:
            load_model(WeightsSpec(path, adapters, family="wan-test"))
        assert "\n" not in str(e.value), name
    for name, (path, adapters, pattern) in cases.items():  # the CLI: one line, exit 2, no file
        out = tmp_path / "out" / f"{name.replace(' ', '_')}.safetensors"
        flags = [a for adapter in adapters for a in ("--adapter", str(adapter))]
        argv = ["convert", str(path), *flags, "--preset", "wan-test", "--out", str(out)]
        assert main(argv) == 2, name
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, (name, err)
        assert re.search(pattern, err), (name, err)
        missing = "m-00002-of-00002.safetensors"  # a shard case: the file that is not there
        named = missing if "shard" in name else Path(adapters[0] if adapters else path).name
        assert named in err, (name, err)  # the file at fault
        assert not out.exists() and not out.with_suffix(".json").exists(), name
    with pytest.raises(CheckpointError) as e:
        load_model(tmp_path / "code.pth")
    assert str(e.value).endswith(".") and len(str(e.value)) > 200  # whole sentence, not cut


def test_huge_header_fails_before_allocating(tmp_path, monkeypatch):
    """Issue 19 item 5: a 1.9 KB file whose header names wan-14b builds nothing but meta."""
    from lipforcing.models import weights

    p14 = get_preset("wan-14b").with_attention("block_causal")
    path = save_st(tmp_path / "huge.safetensors", {"patch_embedding.weight": torch.zeros(4, 4)},
                   {"format": "lipforcing-dit", "preset": p14.to_json()})  # fmt: skip
    assert path.stat().st_size < 4096
    built = []
    real = weights.build_model
    monkeypatch.setattr(weights, "build_model", lambda cfg, device="cpu", **kw: (
        built.append(str(device)), real(cfg, device=device, **kw))[1])  # fmt: skip
    with pytest.raises(
        CheckpointError,
        match=r"patch_embedding.weight has shape \(4, 4\), the model needs \(5120, 65, 1, 2, 2\)",
    ):
        load_model(path)
    assert built == ["meta"]
    # and through the CLI under a 6 GB address-space limit: one line, exit 2 (not a MemoryError)
    code = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30));"
        "from lipforcing.cli.main import main;"
        "sys.exit(main(['info', '--checkpoint', sys.argv[1]]))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith("error: ") and run.stderr.count("\n") == 1


def test_native_checkpoint_with_adapter_and_dtype(tmp_path):
    preset = get_preset("tiny").with_attention("block_causal")
    model = build_model(preset.model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = save_checkpoint(tmp_path / "s.safetensors", model, preset)
    loaded = load_model(path, dtype=torch.bfloat16)
    assert loaded.preset == preset and loaded.model.head.head.weight.dtype == torch.bfloat16
    cond = random_cond(preset.model, 3)
    x, t = torch.randn(1, 16, 3, 4, 4), torch.full((1,), 0.3)
    with torch.no_grad():
        assert torch.equal(model(x, t, cond), load_model(path).model(x, t, cond))
    with pytest.raises(CheckpointError, match="holds a tiny model, not wan-1.3b"):
        load_model(WeightsSpec(path, family="wan-1.3b"))
