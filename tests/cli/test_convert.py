"""``lipforcing convert``: a LoRA adapter over a sharded base becomes one checkpoint; converting
that again is bit-exact; bad input writes nothing."""

from __future__ import annotations

import dataclasses

import torch
from safetensors.torch import load_file, save_file

from lipforcing.cli.main import main
from lipforcing.config import get_preset
from lipforcing.conformance.layouts import lora_shapes, omniavatar_audio_shapes, wan_t2v_shapes
from lipforcing.models.weights import WeightsSpec, load_model


def _rand(table, seed):
    g = torch.Generator().manual_seed(seed)
    return {k: 0.1 * torch.randn(*s, generator=g) for k, s in table.items()}


def test_convert_round_trip_and_bad_input(tmp_path, capsys, monkeypatch):
    from lipforcing import config

    fam = get_preset("wan-1.3b")
    m = dataclasses.replace(fam.model, dim=64, ffn_dim=96, num_heads=2, text_dim=32, num_layers=4)
    fam = dataclasses.replace(fam, name="wan-test", model=m)
    monkeypatch.setitem(config.PRESETS, "wan-test", lambda: fam)
    base = _rand(wan_t2v_shapes(m), 0)
    keys = sorted(base)
    for k, part in enumerate((keys[::2], keys[1::2]), 1):
        save_file({n: base[n] for n in part}, str(tmp_path / f"w-{k:05d}-of-00002.safetensors"))
    adapter = _rand(lora_shapes(m, 4) | omniavatar_audio_shapes(m), 1)
    torch.save(adapter, tmp_path / "adapter.pt")
    first, second = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    shard = str(tmp_path / "w-00001-of-00002.safetensors")
    argv = ["convert", shard, "--adapter", str(tmp_path / "adapter.pt"), "--attention", "student"]
    assert main([*argv, "--out", str(first)]) == 0
    out = capsys.readouterr().out
    assert "merged 40 LoRA pairs" in out and "widened patch_embedding.weight" in out
    assert main(["convert", str(first), "--out", str(second)]) == 0
    a, b = load_file(str(first)), load_file(str(second))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert all(v.dtype == torch.bfloat16 for v in a.values())
    direct = load_model(
        WeightsSpec(tmp_path / "w-00002-of-00002.safetensors", (tmp_path / "adapter.pt",)),
        dtype=torch.bfloat16,
        attention="block_causal",
    )
    converted = load_model(first)
    assert converted.preset == direct.preset
    for x, y in zip(direct.model.state_dict().values(), converted.model.state_dict().values()):
        assert torch.equal(x, y)
    (tmp_path / "w-00002-of-00002.safetensors").unlink()
    bad = tmp_path / "c.safetensors"
    assert main(["convert", shard, "--out", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "w-00002-of-00002.safetensors" in err
    assert not bad.exists() and not list(tmp_path.glob("c*"))
