"""The recipe's plumbing end to end on a toy preset with stand-in data, codec and SyncNet.

The codec, SynthTalk and SyncNet belong to other parts; here they are replaced by small
deterministic stand-ins so the chain (shards -> latent caches -> three stages -> held-out
evaluation -> report) is checked on its own.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_stages import toy_preset

import lipforcing.codecs
from lipforcing.config import OptimConfig, tiny_recipe
from lipforcing.data.preprocess import write_shard
from lipforcing.distill import recipe


class PoolCodec:
    """Stand-in codec: keep every 4th frame, 8x8 average pool, 3 -> 16 channels (zeros)."""

    def encode(self, video):
        x = video[:, :, ::4]  # (B, 3, F, S, S)
        x = F.avg_pool3d(x, (1, 8, 8))
        return torch.cat([x, torch.zeros_like(x[:, :1]).expand(-1, 13, -1, -1, -1)], dim=1)

    def decode(self, z):
        x = F.interpolate(z[:, :3], scale_factor=(1, 8, 8), mode="nearest")
        x = x.repeat_interleave(4, dim=2)[:, :, 3:]  # 1 + 4 (F - 1) frames
        return x


def fake_shards(out, preset, clips, seed, name):
    root = out / "shards" / name
    rng = np.random.default_rng(seed)
    s, a = preset.media.crop_size, preset.audio.feature_dim
    for i in range(clips):
        t = 48
        crops = rng.integers(0, 255, (t, s, s, 3), dtype=np.uint8)
        arrays = {
            "crops": crops,
            "found": np.ones(t, bool),
            "audio_features": rng.standard_normal((t, a)).astype(np.float32),
            "mask": (np.arange(s)[:, None] > s // 2).repeat(s, 1).astype(np.float32),
        }
        write_shard(root, f"clip{i}", arrays, {"frames": t})
    return root


def test_recipe_chain_writes_checkpoints_and_a_complete_report(tmp_path, monkeypatch):
    monkeypatch.setattr(recipe, "make_shards", fake_shards)
    monkeypatch.setattr(lipforcing.codecs, "load_codec", lambda path: PoolCodec(), raising=False)
    monkeypatch.setattr(recipe, "load_or_train_syncnet", lambda *a: "syncnet")
    sync = lambda video, audio: video.mean(dim=(1, 2, 3, 4)) + audio.mean(dim=(1, 2))  # noqa: E731
    monkeypatch.setattr(recipe, "sync_function", lambda net: sync)
    monkeypatch.setattr(
        recipe,
        "stage2_reward",
        lambda data, net, cfg: (
            None
            if cfg.reward is None
            else lambda x0, batch: sync(data.codec.decode(x0), batch["audio"])
        ),
    )
    opt = OptimConfig(lr=1e-3, warmup_steps=1, batch_size=2, micro_batch=2, steps=2)
    rc = tiny_recipe(quick=True)
    rc = dataclasses.replace(
        rc,
        teacher=dataclasses.replace(rc.teacher, optim=opt),
        stage1=dataclasses.replace(rc.stage1, optim=opt),
        stage2=dataclasses.replace(
            rc.stage2, optim=dataclasses.replace(opt, steps=1), critic_steps=1
        ),
    )
    report = recipe.run_recipe(
        rc, toy_preset(), tmp_path, train_clips=2, test_clips=2, ablation_steps=1
    )
    json.dumps(report)  # serialisable
    for key in ("teacher", "student", "stage1_student"):
        assert {"sync", "mouth_l1", "mouth_psnr", "fps"} <= set(report[key])
    assert report["speedup"] == report["student"]["fps"] / report["teacher"]["fps"]
    assert report["held_out_windows"] == 4  # 2 clips x 2 windows of 21 frames
    assert set(report["dubbing"]) == {"student", "teacher", "unmodified_source"}
    assert (tmp_path / "stage2" / "student.safetensors").is_file()
    assert "| student |" in recipe.report_markdown(report)
    assert {"static_cfg", "sync_window", "sync_window_reward"} <= set(report["ablation"])
    assert "| sync_window_reward (main run) |" in recipe.report_markdown(report)
    # The window + reward arm has the main Stage-2 config here (1 step each): it is not retrained,
    # and its scores are the main student's on the same windows and noise.
    assert report["ablation"]["same_as_main_run"] == ["sync_window_reward"]
    assert not (tmp_path / "ablation" / "sync_window_reward").exists()
    assert (tmp_path / "ablation" / "static_cfg" / "student.safetensors").is_file()
    for metric in ("sync", "mouth_l1"):
        assert report["ablation"]["sync_window_reward"][metric] == pytest.approx(
            report["student"][metric], rel=1e-5
        )


def test_the_training_library_never_imports_the_cli():
    """Issue 16 (structure): the recipe trains SyncNet and finds shards through library
    functions; nothing under lipforcing.distill imports lipforcing.cli."""
    import ast
    from pathlib import Path

    root = Path(recipe.__file__).parent
    found = []
    for path in sorted(root.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            found += [f"{path.name}: {n}" for n in names if n.startswith("lipforcing.cli")]
    assert len(list(root.glob("*.py"))) > 10 and not found, found
