"""`lipforcing train syncnet` on synthetic shards whose mouth brightness follows the audio: the
trained net must find applied audio shifts on a held-out shard."""

from __future__ import annotations

import json

import numpy as np

from lipforcing.cli.main import main
from lipforcing.evaluation.sync import sync_search
from lipforcing.evaluation.syncnet import load_syncnet


def write_shard(folder, seed: int, frames: int = 160, size: int = 32, n_mels: int = 4):
    """Per-frame random loudness u_f: the crop's lower half has brightness u_f; the audio feature
    of frame f holds u_{f-2} .. u_{f+2}, four 100 Hz mel steps each (as mel_windows lays out)."""
    rng = np.random.default_rng(seed)
    u = rng.random(frames)
    crops = np.full((frames, size, size, 3), 128, np.uint8)
    crops[:, size // 2 :] = (u * 255).astype(np.uint8)[:, None, None, None]
    idx = np.clip(np.arange(frames)[:, None] + np.arange(-2, 3)[None], 0, frames - 1)
    steps = np.repeat(u[idx], 4, axis=1)  # (T, 20)
    feats = np.repeat(steps[:, None], n_mels, axis=1).reshape(frames, -1).astype(np.float32)
    folder.mkdir(parents=True)
    np.save(folder / "crops.npy", crops)
    np.save(folder / "audio_features.npy", feats)
    np.save(folder / "found.npy", np.ones(frames, bool))
    (folder / "meta.json").write_text(json.dumps({"frames": frames}))
    return crops, feats


def test_train_syncnet_learns_offsets(tmp_path):
    for i in range(3):
        write_shard(tmp_path / "shards" / f"clip{i}", seed=i)
    crops, feats = write_shard(tmp_path / "shards" / "held", seed=9)
    out = tmp_path / "run"
    argv = ["train", "syncnet", str(tmp_path / "shards"), "--out", str(out), "--steps", "150"]
    assert main(argv + ["--batch", "16", "--holdout", "held"]) == 0
    meta = json.loads((out / "syncnet.json").read_text())
    assert meta["segments"] > 0 and meta["offset_accuracy"] >= 0.8
    model = load_syncnet(out / "syncnet.safetensors")
    synced = sync_search(model, crops[10:60], feats[10:60], vshift=8)
    shifted = sync_search(model, crops[10:60], feats[13:63], vshift=8)
    assert synced.offset == 0 and shifted.offset == 3
    assert synced.sync_c > 0


def test_train_syncnet_without_shards_is_a_user_error(tmp_path, capsys):
    assert main(["train", "syncnet", str(tmp_path), "--out", str(tmp_path / "o")]) != 0
    assert "no shards" in capsys.readouterr().err
