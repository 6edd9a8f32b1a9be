"""codecs.train.fit_codec: an interrupted run resumes exactly; `train codec --init` fine-tunes."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from lipforcing.cli.main import main
from lipforcing.codecs import build_codec, load_codec, save_codec
from lipforcing.codecs.train import CodecTrainConfig, CropWindows, fit_codec
from lipforcing.config import CodecConfig

CFG = CodecConfig(kind="tiny", decoder="same", image_size=32, width=8)


def shard_dirs(root, count=2, frames=12):
    rng = np.random.default_rng(0)
    dirs = []
    for i in range(count):
        d = root / f"clip{i}"
        d.mkdir(parents=True)
        np.save(d / "crops.npy", rng.integers(0, 255, (frames, 32, 32, 3), dtype=np.uint8))
        (d / "meta.json").write_text("{}")
        dirs.append(d)
    return dirs


def train(tmp_path, name, stops):
    cfg = CodecTrainConfig(steps=4, batch=2, patch=16, save_every=2)
    torch.manual_seed(0)
    codec = build_codec(CFG)
    data = CropWindows(shard_dirs(tmp_path / name), cfg.frames)
    for stop in stops:
        codec = build_codec(CFG)  # a fresh process: only the state file carries over
        history = fit_codec(codec, data, cfg, tmp_path / name / "state.pt", stop_at=stop)
    return codec, history


def test_resumed_codec_training_equals_uninterrupted(tmp_path):
    whole, h1 = train(tmp_path, "a", [None])
    resumed, h2 = train(tmp_path, "b", [2, None])
    for (k, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    assert h1 == h2


def test_train_codec_init_fine_tunes_the_given_codec(tmp_path):
    from lipforcing.config import get_preset

    preset = get_preset("tiny")
    torch.manual_seed(3)
    start = build_codec(dataclasses.replace(preset.codec))
    save_codec(tmp_path / "start.safetensors", start)
    rng = np.random.default_rng(1)
    for i in range(3):
        d = tmp_path / "shards" / f"c{i}"
        d.mkdir(parents=True)
        crops = rng.integers(0, 255, (21, 128, 128, 3), dtype=np.uint8)
        np.save(d / "crops.npy", crops)
        (d / "meta.json").write_text("{}")
    argv = ["train", "codec", str(tmp_path / "shards"), "--out", str(tmp_path / "run")]
    argv += ["--steps", "1", "--batch", "1", "--lr", "1e-9"]
    assert main(argv + ["--init", str(tmp_path / "start.safetensors")]) == 0
    tuned = load_codec(tmp_path / "run" / "codec.safetensors")
    for k, v in start.state_dict().items():
        if k not in ("latent_mean", "latent_std"):  # re-measured on the data
            assert torch.allclose(tuned.state_dict()[k], v, atol=1e-6), k
    bad = argv + ["--init", str(tmp_path / "nope.safetensors")]
    assert main(bad[:-1] + [str(tmp_path / "nope.safetensors")]) == 2
