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


def test_train_syncnet_resumes_exactly_and_fine_tunes(tmp_path):
    import torch

    from lipforcing.evaluation.syncnet import LipSyncNet, LipSyncNetConfig, save_syncnet
    from lipforcing.evaluation.syncnet_train import Clip, SyncNetTrainConfig, train_syncnet

    crops, feats = write_shard(tmp_path / "s" / "a", seed=1)
    clips = [Clip.from_arrays({"crops": crops, "audio_features": feats})]
    cfg = SyncNetTrainConfig(steps=4, batch=4, save_every=2)
    nets = []
    for name, stops in (("whole", [None]), ("split", [2, None])):
        for stop in stops:  # a new process per run: only the state file carries over
            torch.manual_seed(0)
            net = LipSyncNet(LipSyncNetConfig(n_mels=4))
            train_syncnet(net, clips, cfg, tmp_path / name / "state.pt", stop_at=stop)
        nets.append(net)
    for (k, a), b in zip(nets[0].state_dict().items(), nets[1].state_dict().values()):
        assert torch.equal(a, b), k
    save_syncnet(nets[0].eval(), tmp_path / "start.safetensors")
    out = tmp_path / "tuned"
    argv = ["train", "syncnet", str(tmp_path / "s"), "--out", str(out), "--steps", "1"]
    argv += ["--lr", "1e-12", "--batch", "4", "--init"]
    assert main(argv + [str(tmp_path / "missing.safetensors")]) == 2
    assert main(argv + [str(tmp_path / "start.safetensors")]) == 0
    tuned = load_syncnet(out / "syncnet.safetensors")
    for k, v in nets[0].state_dict().items():
        if v.is_floating_point():
            assert torch.allclose(tuned.state_dict()[k], v, atol=1e-6), k
