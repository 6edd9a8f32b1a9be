"""A torch Dataset of training windows cut from preprocessed shards.

Design choices:
- A window is ``T = 1 + stride * (F - 1)`` consecutive video frames (Wan's causal layout), with
  ``F`` latent frames a multiple of the chunk size. Windows tile each shard without overlap
  (start frames 0, T, 2T, ...), or start every ``stride`` frames when given (overlapping
  windows: more training windows from little footage); windows containing a frame where no
  face was found are dropped.
- The reference frame and the reference sequence come from the same clip at another time:
  both are drawn uniformly among positions that do not overlap the window, so the mouth being
  generated can never leak through them. A shard shorter than 2T frames yields no window.
- Sampling is a pure function of ``(seed, index)`` (``numpy.random.default_rng``), so two
  datasets with the same seed yield identical items in any order and in any worker.
- Crops are memory-mapped; one item reads only its 2T + 1 frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from lipforcing.data.preprocess import load_shard
from lipforcing.errors import UserError


@dataclass(frozen=True)
class Window:
    shard: int  # index into the dataset's shard list
    start: int  # first video frame of the window


def window_frames(latent_frames: int, temporal_stride: int = 4) -> int:
    """Video frames of ``latent_frames`` latent frames: 1 + stride * (F - 1)."""
    return 1 + temporal_stride * (latent_frames - 1)


def _to_video(crops: np.ndarray) -> torch.Tensor:
    """(T, S, S, 3) uint8 -> (3, T, S, S) float32 in [-1, 1]."""
    x = torch.from_numpy(np.array(crops)).float()  # copy out of the memory map
    return x.permute(3, 0, 1, 2) / 127.5 - 1.0


class ShardDataset(Dataset):
    """Training windows over the shards in ``root`` (folders with ``meta.json``).

    Each item is a dict: ``video`` (3, T, S, S), ``audio`` (T, A), ``ref`` (3, S, S),
    ``ref_seq`` (3, T, S, S) float32 (video in [-1, 1]), ``mask`` (S, S) float32, ``wave``
    (T * sample_rate / fps,) the window's raw soundtrack (when the shard has ``audio.npy``),
    and ``shard``/``start``/``ref_index``/``ref_start`` for bookkeeping.
    """

    def __init__(
        self,
        root: str | Path,
        latent_frames: int = 3,
        *,
        chunk_frames: int = 3,
        temporal_stride: int = 4,
        seed: int = 0,
        stride: int | None = None,
    ) -> None:
        if latent_frames < chunk_frames or latent_frames % chunk_frames:
            raise UserError(f"latent_frames {latent_frames}: need a multiple of {chunk_frames}")
        root = Path(root)
        dirs = sorted(p.parent for p in root.glob("*/meta.json"))
        if not dirs:
            raise UserError(f"{root}: no shards (run `lipforcing preprocess` first)")
        self.frames = window_frames(latent_frames, temporal_stride)
        self.stride = stride or self.frames
        if self.stride < 1:
            raise UserError(f"window stride must be >= 1 frame, got {stride}")
        self.seed = seed
        self.shards = [load_shard(d) for d in dirs]
        self.names = [d.name for d in dirs]
        self.windows = [w for i in range(len(dirs)) for w in self._windows(i)]
        if not self.windows:
            raise UserError(f"{root}: no shard has 2 x {self.frames} frames with a face")

    def _windows(self, i: int) -> list[Window]:
        found = np.asarray(self.shards[i][0]["found"])
        t, n = len(found), self.frames
        if t < 2 * n:
            return []
        starts = range(0, t - n + 1, self.stride)
        return [Window(i, s) for s in starts if found[s : s + n].all()]

    def __len__(self) -> int:
        return len(self.windows)

    def _outside(self, rng: np.random.Generator, total: int, start: int, length: int) -> int:
        """A start position of ``length`` frames not overlapping [start, start + frames)."""
        n = self.frames
        choices = [p for p in range(total - length + 1) if p + length <= start or p >= start + n]
        return int(rng.choice(choices))

    def __getitem__(self, index: int) -> dict:
        w = self.windows[index]
        arrays, _ = self.shards[w.shard]
        rng = np.random.default_rng([self.seed, index])
        total, n = len(arrays["crops"]), self.frames
        ref_start = self._outside(rng, total, w.start, n)
        ref_index = self._outside(rng, total, w.start, 1)
        item = {
            "video": _to_video(arrays["crops"][w.start : w.start + n]),  # (3, T, S, S)
            "audio": torch.from_numpy(np.array(arrays["audio_features"][w.start : w.start + n])),
            "ref": _to_video(arrays["crops"][ref_index : ref_index + 1])[:, 0],  # (3, S, S)
            "ref_seq": _to_video(arrays["crops"][ref_start : ref_start + n]),  # (3, T, S, S)
            "mask": torch.from_numpy(np.array(arrays["mask"], np.float32)),  # (S, S)
            "shard": self.names[w.shard],
            "start": w.start,
            "ref_index": ref_index,
            "ref_start": ref_start,
        }
        if "audio" in arrays:  # the raw soundtrack of the window (the reward's own audio)
            item["wave"] = self._wave(w, arrays["audio"], self.shards[w.shard][1])
        return item

    def _wave(self, w: Window, audio: np.ndarray, meta: dict) -> torch.Tensor:
        """(T * sample_rate / fps,) float32 samples of the window, zero-padded at the end."""
        per_frame = meta.get("sample_rate", 16_000) / meta.get("fps", 25.0)
        lo, n = round(w.start * per_frame), round(self.frames * per_frame)
        wave = np.zeros(n, np.float32)
        part = np.asarray(audio[lo : lo + n], np.float32)
        wave[: len(part)] = part
        return torch.from_numpy(wave)


__all__ = ["ShardDataset", "Window", "window_frames"]
