"""Conformance: every `lipforcing` command on random-weight stand-ins of the released files.

The stand-ins (:mod:`lipforcing.conformance.standins`) have the released layouts exactly (file
names, shards + index, key names and prefixes, dtypes) at reduced depth: 1.3B width here,
14B width in the slow run. Crops are 32 px (``--resolution``, a real option) so a 1.3B-wide
DiT runs on two CPU cores; weights are random, so the checks are about layouts and plumbing:
bit-exact equalities between layouts, valid outputs, one-line errors.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from lipforcing.cli.main import main
from lipforcing.conformance.standins import write_all

RESOLUTION = "32"  # aligned crop side: 4 x 4 latents


@pytest.fixture(
    scope="module",
    params=["1.3b", pytest.param("14b", marks=pytest.mark.slow)],
)
def standins(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"release-{request.param}")
    manifest = write_all(out, width=request.param, layers=4)
    manifest["out"] = out
    yield manifest
    shutil.rmtree(out, ignore_errors=True)


@pytest.fixture(scope="module")
def context(standins):
    path = standins["out"] / "context.safetensors"
    argv = ["encode-prompt", "--text-encoder", standins["t5"], "--out", str(path)]
    assert main([*argv, "--negative-prompt", "blurry, static, low quality"]) == 0
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A SynthTalk talking face as a plain video + wav (no landmark file: dlib tracks it)."""
    from lipforcing.media.synthtalk import write_dataset

    folder = tmp_path_factory.mktemp("clip")
    write_dataset(folder, 1, 2.0, 5)
    for extra in [*folder.glob("*.npz"), folder / "index.json"]:
        extra.unlink(missing_ok=True)
    return folder


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


@pytest.mark.slow  # ~2.5 CPU minutes: 50-step teacher trajectories + Wan VAE / SyncNet scoring
def test_analyze_trajectory_one_clip_two_steps(standins, context, clip, tmp_path):
    """The teacher = Wan base shards + the OmniAvatar-LS adapter; shards preprocessed with the
    release's alignment, mask and wav2vec2; the release's full-drop CFG with the negative prompt."""
    s = standins
    shards, out = tmp_path / "shards", tmp_path / "analysis"
    argv = ["preprocess", str(clip), "--out", str(shards), "--preset", s["family"]]
    assert main([*argv, "--wav2vec2", s["wav2vec2"], "--resolution", RESOLUTION]) == 0
    meta = json.loads(next(shards.glob("*/meta.json")).read_text())
    assert meta["crop_size"] == int(RESOLUTION) and meta["audio_kind"] == "wav2vec2"
    argv = [
        "analyze", "trajectory", "--teacher", s["base_index"], "--adapter", s["adapter"],
        "--context", str(context), "--codec", s["vae"], "--shards", str(shards), "--clips", "1",
        "--steps", "0,49", "--landings", "30", "--sweep", "4.5", "--drop-modes", "release",
        "--syncnet-v2", s["syncnet_v2"], "--latent-frames", "3", "--out", str(out),
        "--no-progress", "--device", "cpu",
    ]  # fmt: skip
    assert main(argv) == 0
    rows = (out / "trajectory.csv").read_text().splitlines()
    steps = {int(r.split(",")[5]) for r in rows[1:] if r.split(",")[1] == "trajectory"}
    assert steps == {0, 49}
    assert {r.split(",")[4] for r in rows[1:]} >= {"release"}
    assert all(p.is_file() for p in (out / "summary.md", out / "trajectory.png"))
