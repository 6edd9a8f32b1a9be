"""Conformance: every `lipforcing` command on random-weight stand-ins of the released files.

The stand-ins (:mod:`lipforcing.conformance.standins`) have the released layouts exactly (file
names, shards + index, key names and prefixes, dtypes) at reduced depth: 1.3B width here,
14B width in the slow run (``conftest.standins``). Crops are 32 px (``--resolution``, a real
option) so a 1.3B-wide DiT runs on two CPU cores; weights are random, so the checks are about
layouts and plumbing: bit-exact equalities between layouts, valid outputs, one-line errors.
The documented commands themselves run in ``test_release_commands``.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from lipforcing.cli.main import main

RESOLUTION = "32"  # aligned crop side: 4 x 4 latents


@pytest.fixture(scope="module")
def context(standins):
    path = standins["out"] / "context.safetensors"
    argv = ["encode-prompt", "--text-encoder", standins["t5"], "--out", str(path)]
    assert main([*argv, "--negative-prompt", "blurry, static, low quality"]) == 0
    return path


def _convert(*argv) -> dict[str, torch.Tensor]:
    out = argv[argv.index("--out") + 1]
    assert main(["convert", *argv]) == 0
    return load_file(out)


def test_every_layout_assembles_the_released_student(standins, tmp_path, capsys):
    """Base shards + OmniAvatar-LS adapter + Stage-2 delta (.pth or FSDP folder) == the merged
    lipforcing .pth, bit for bit after conversion; converting a conversion changes nothing."""
    s = standins
    merged = _convert(
        s["student"], "--attention", "student", "--out", str(tmp_path / "a.safetensors")
    )
    for delta in (s["delta"], s["delta_fsdp"]):
        argv = [s["base_index"], "--adapter", s["adapter"], "--adapter", delta]
        assembled = _convert(
            *argv, "--attention", "student", "--out", str(tmp_path / "b.safetensors")
        )
        assert assembled.keys() == merged.keys()
        assert all(torch.equal(assembled[k], merged[k]) for k in merged), delta
    out = capsys.readouterr().out
    assert "merged 40 LoRA pairs" in out and "3 safetensors shards + index" in out
    again = _convert(str(tmp_path / "a.safetensors"), "--out", str(tmp_path / "c.safetensors"))
    assert all(torch.equal(again[k], merged[k]) for k in merged)
    preset = json.loads((tmp_path / "a.json").read_text())["preset"]
    assert preset["name"] == s["family"] and preset["model"]["num_layers"] == 4
    assert preset["model"]["attention"] == "block_causal"


def test_info_on_each_layout_and_bad_combinations(standins, capsys):
    s = standins
    assert main(["info", "--checkpoint", s["student"], "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["preset"] == s["family"] and report["checked_params"] == report["params"]["total"]
    assert main(["info", "--checkpoint", s["base"], "--adapter", s["adapter"]]) == 0
    assert main(["info", "--checkpoint", s["diffusers"]]) == 0  # a base: audio left at init
    assert "not in the weights" in capsys.readouterr().out
    assert main(["info", "--checkpoint", s["delta"]]) == 2
    other = "wan-14b" if s["family"] == "wan-1.3b" else "wan-1.3b"
    assert main(["info", "--checkpoint", s["student"], "--preset", other]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "--adapter" in err[0] and "patch_embedding.weight has shape" in err[1]


def test_both_text_encoder_layouts_give_the_same_context(standins, context, tmp_path):
    from lipforcing.config import get_preset
    from lipforcing.models.text import load_context

    other = tmp_path / "ctx.safetensors"
    argv = ["encode-prompt", "--text-encoder", standins["diffusers"], "--out", str(other)]
    assert main([*argv, "--negative-prompt", "blurry, static, low quality"]) == 0
    a, b = load_file(str(context)), load_file(str(other))
    assert a.keys() == b.keys() == {"context", "negative"}
    assert all(torch.equal(a[k], b[k]) for k in a)
    ctx = load_context(context, get_preset(standins["family"]).model)
    assert ctx.context.shape == (1, 512, get_preset(standins["family"]).model.text_dim)
