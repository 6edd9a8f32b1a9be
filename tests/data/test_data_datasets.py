"""data.datasets.ShardDataset: windows, non-overlapping references, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lipforcing.data.datasets import ShardDataset, window_frames
from lipforcing.data.preprocess import write_shard
from lipforcing.errors import UserError

S, A = 8, 6


def fake_shard(root, name, t, missing=()):
    """Frame i of the crops is filled with the value i, audio row i with i."""
    crops = np.broadcast_to(np.arange(t, dtype=np.uint8)[:, None, None, None], (t, S, S, 3))
    found = np.ones(t, bool)
    found[list(missing)] = False
    arrays = {
        "crops": np.ascontiguousarray(crops),
        "found": found,
        "mask": np.ones((S, S), np.float32),
        "audio_features": np.repeat(np.arange(t, dtype=np.float32)[:, None], A, 1),
    }
    write_shard(root, name, arrays, {"frames": t})


def frame_ids(video: torch.Tensor) -> np.ndarray:
    """(3, T, S, S) in [-1, 1] -> the frame index each frame was filled with."""
    return np.rint((video[0, :, 0, 0].numpy() + 1) * 127.5).astype(int)


def test_windows_and_references(tmp_path):
    fake_shard(tmp_path, "long", 60)
    fake_shard(tmp_path, "gappy", 40, missing=[15])
    fake_shard(tmp_path, "short", 15)  # < 2 windows of 9 frames: unusable
    data = ShardDataset(tmp_path, latent_frames=3, seed=3)
    n = window_frames(3)
    assert n == 9
    by_shard = {}
    for item in (data[i] for i in range(len(data))):
        by_shard.setdefault(item["shard"], []).append(item["start"])
        ids = frame_ids(item["video"])
        assert np.array_equal(ids, np.arange(item["start"], item["start"] + n))
        assert np.array_equal(item["audio"][:, 0].numpy(), ids)
        ref_ids = frame_ids(item["ref_seq"])
        assert np.array_equal(ref_ids, np.arange(ref_ids[0], ref_ids[0] + n))
        assert not set(ref_ids) & set(ids)  # never overlaps the window
        ref = int(round((item["ref"][0, 0, 0].item() + 1) * 127.5))
        assert ref not in ids and ref == item["ref_index"]
        assert item["video"].shape == (3, n, S, S) and item["mask"].shape == (S, S)
        assert item["video"].min() >= -1 and item["video"].max() <= 1
    assert by_shard["long"] == [0, 9, 18, 27, 36, 45]
    assert by_shard["gappy"] == [0, 18, 27]  # the window holding frame 15 is dropped
    assert "short" not in by_shard


def test_deterministic_with_seed(tmp_path):
    fake_shard(tmp_path, "clip", 80)
    a, b, c = (ShardDataset(tmp_path, 3, seed=s) for s in (1, 1, 2))
    picks = lambda d: [(d[i]["ref_start"], d[i]["ref_index"]) for i in range(len(d))]  # noqa: E731
    assert picks(a) == picks(b) and picks(a) != picks(c)
    batch = next(iter(torch.utils.data.DataLoader(a, batch_size=2)))
    assert batch["video"].shape == (2, 3, 9, S, S)


def test_errors(tmp_path):
    with pytest.raises(UserError, match="no shards"):
        ShardDataset(tmp_path, 3)
    fake_shard(tmp_path, "short", 10)
    with pytest.raises(UserError, match="multiple of 3"):
        ShardDataset(tmp_path, 4)
    with pytest.raises(UserError, match="no shard has"):
        ShardDataset(tmp_path, 3)


def test_stride_gives_overlapping_windows(tmp_path):
    fake_shard(tmp_path, "long", 40)
    fake_shard(tmp_path, "gappy", 40, missing=[15])
    data = ShardDataset(tmp_path, latent_frames=3, stride=4)
    starts = {}
    for i in range(len(data)):
        item = data[i]
        starts.setdefault(item["shard"], []).append(item["start"])
        assert not set(frame_ids(item["ref_seq"])) & set(frame_ids(item["video"]))
    assert starts["long"] == list(range(0, 32, 4))
    assert starts["gappy"] == [0, 4, 16, 20, 24, 28]  # windows holding frame 15 are dropped
    with pytest.raises(UserError, match="stride"):
        ShardDataset(tmp_path, 3, stride=-1)


def test_items_carry_the_window_soundtrack(tmp_path):
    """``wave`` is the raw audio of exactly the window's frames (640 samples a frame at
    16 kHz / 25 fps), zero-padded past the end of the soundtrack."""
    t = 30
    fake_shard(tmp_path, "clip", t)
    audio = np.arange(t * 640 - 100, dtype=np.float32)  # 100 samples short of the last frame
    np.save(tmp_path / "clip" / "audio.npy", audio)
    data = ShardDataset(tmp_path, latent_frames=3)
    for i in range(len(data)):
        item = data[i]
        wave, start = item["wave"].numpy(), item["start"]
        assert wave.shape == (9 * 640,)
        want = np.zeros(9 * 640, np.float32)
        part = audio[start * 640 : (start + 9) * 640]
        want[: len(part)] = part
        assert np.array_equal(wave, want)
