"""Held-out clips for the trajectory analysis, and the mouth-region scores of an x0 prediction.

Design choices (ours where the paper is silent):
- A clip is one window of a preprocessed shard (:class:`~lipforcing.data.datasets.ShardDataset`
  with the teacher's window length), encoded with the codec exactly as the training latent cache
  is (:func:`lipforcing.distill.latents.encode_dataset`), so the conditions are the ones the
  teacher was trained on. Clips are taken round-robin over shards (first window of every shard,
  then the second, ...), so a few clips already span several identities.
- An x0 prediction is decoded, clamped to [-1, 1] and pasted into the ground-truth crop on the
  hard mouth mask (what the pipeline shows: the model only owns the mouth region).
- Fidelity on the mouth box (the bounding box of the mask): LPIPS (AlexNet, lpips v0.1; boxes
  under 32 px on a side are upsampled to 32 so every AlexNet tap has spatial extent) and SSIM
  against the ground-truth frames, averaged over the frames of the clip.
- Sync: Sync-C / Sync-D of the composited crops against the clip's audio, with our LipSyncNet
  (the shard's per-frame features when they match its input, else the waveform) or
  syncnet_python's SyncNetV2 (the waveform). syncnet_python's definitions (Sync-D = min over
  audio offsets of the mean embedding distance, Sync-C = median - min), but the offset search
  spans +-6 frames over valid window pairs only (:func:`~lipforcing.evaluation.sync.
  valid_shift_distances`, as the reward does): on a 21-frame window syncnet_python's +-15 frames
  of zero-padded audio would make most of the offsets padding and swamp the median.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lipforcing.errors import UserError
from lipforcing.models.conditioning import LipSyncCond

FIDELITY = ("lpips", "ssim")
SYNC = ("sync_c", "sync_d")
LPIPS_MIN_SIDE = 32


@dataclass
class Clip:
    """One held-out window with everything the analysis needs."""

    id: str  # "<shard>@<start frame>"
    index: int  # dataset index (seeds the clip's noise)
    x0: Tensor  # (1, C, F, h, w) codec latent of the ground truth
    cond: LipSyncCond  # batch 1
    gt: np.ndarray  # (T, S, S, 3) uint8 ground-truth crops
    mask: np.ndarray  # (S, S) float32 hard mouth mask, 1 = generated
    features: Tensor  # (T, A) per-frame audio features of the window
    waveform: np.ndarray | None  # (L,) float32 16 kHz audio of the window


def select_windows(dataset, clips: int) -> list[int]:
    """``clips`` dataset indices, round-robin over shards in shard order."""
    by_shard: dict[int, list[int]] = {}
    for i, w in enumerate(dataset.windows):
        by_shard.setdefault(w.shard, []).append(i)
    order = sorted(
        range(len(dataset)),
        key=lambda i: (by_shard[dataset.windows[i].shard].index(i), dataset.windows[i].shard),
    )
    return order[:clips]


def window_waveform(dataset, item: dict) -> np.ndarray | None:
    """The 16 kHz audio under the window's frames, or None when the shard has none."""
    arrays, meta = dataset.shards[dataset.names.index(item["shard"])]
    if "audio" not in arrays or "fps" not in meta:
        return None
    per_frame = 16_000 / float(meta["fps"])  # audio is 16 kHz everywhere
    t = item["video"].shape[1]
    lo, hi = int(round(item["start"] * per_frame)), int(round((item["start"] + t) * per_frame))
    wav = np.asarray(arrays["audio"][lo:hi], np.float32)
    return wav if len(wav) == hi - lo else None


@torch.no_grad()
def prepare_clip(
    dataset, index: int, codec, pack: int, *, context=None, mask_style: str = "rectangle"
) -> Clip:
    """Encode dataset item ``index`` into latents and conditions (the training cache path);
    ``context`` (a :class:`~lipforcing.models.text.Context`) for text-conditioned teachers."""
    from torch.utils.data import Subset

    from lipforcing.distill.latents import encode_dataset, make_batch

    item = dataset[index]
    cache = encode_dataset(Subset(dataset, [index]), codec, keep_video=True, batch=1)
    batch = make_batch(cache, torch.tensor([0]), pack, context=context, mask_style=mask_style)
    gt = cache["video"][0].permute(1, 2, 3, 0).numpy()  # (T, S, S, 3) uint8
    return Clip(
        id=f"{item['shard']}@{item['start']}",
        index=index,
        x0=batch["x0"],
        cond=batch["cond"],
        gt=gt,
        mask=item["mask"].numpy(),
        features=item["audio"].float(),
        waveform=window_waveform(dataset, item),
    )


def mouth_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) bounds of the mask's support."""
    rows, cols = np.nonzero(mask > 0.5)
    if len(rows) == 0:
        raise UserError("the shard's mouth mask is empty")
    return int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1


def to_uint8(video: Tensor) -> np.ndarray:
    """(K, 3, T, S, S) in [-1, 1] -> (K, T, S, S, 3) uint8."""
    x = ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 4, 1).cpu().numpy()


class MouthScorer:
    """Decode x0 predictions and score them on the mouth region of one clip at a time.

    Args:
        codec: ``decode(z (K, 16, F, h, w)) -> (K, 3, T, S, S)`` in [-1, 1].
        lpips: an :class:`~lipforcing.evaluation.lpips.LPIPS` module.
        syncnet: LipSyncNet / SyncNetV2, or None to skip the sync metrics.
        decode_batch: latents decoded per codec call.
        max_shift: offsets searched each side for Sync-C / Sync-D (capped at windows - 1).
    """

    def __init__(
        self, codec, lpips, syncnet=None, decode_batch: int = 8, max_shift: int = 6
    ) -> None:
        self.codec, self.lpips, self.syncnet = codec, lpips, syncnet
        self.decode_batch, self.max_shift = decode_batch, max_shift
        self._gt_key: str | None = None  # clip whose ground-truth LPIPS features are cached
        self._gt_feats: list[Tensor] = []

    @property
    def metrics(self) -> tuple[str, ...]:
        return FIDELITY + (SYNC if self.syncnet is not None else ())

    def sync_audio(self, clip: Clip) -> Any:
        """What the sync network reads for ``clip``: per-frame features or the waveform."""
        cfg = getattr(self.syncnet, "cfg", None)
        if cfg is not None and clip.features.shape[-1] == cfg.audio_dim:
            return clip.features
        if clip.waveform is None:
            raise UserError(f"{clip.id}: the sync network needs the shard's audio.npy")
        return clip.waveform

    @torch.no_grad()
    def score(self, latents: Tensor, clip: Clip) -> list[dict[str, float]]:
        """Scores of K latents (K, C, F, h, w) of ``clip``: one dict per latent."""
        out: list[dict[str, float]] = []
        for start in range(0, len(latents), self.decode_batch):
            video = self.codec.decode(latents[start : start + self.decode_batch])
            out += self.score_frames(to_uint8(video[:, :, : clip.gt.shape[0]]), clip)
        return out

    @torch.no_grad()
    def score_frames(self, frames: np.ndarray, clip: Clip) -> list[dict[str, float]]:
        """Scores of decoded crops (K, T, S, S, 3) uint8 against ``clip``, one dict per clip."""
        from lipforcing.evaluation.image_metrics import ssim

        keep = (clip.mask > 0.5)[None, None, :, :, None]
        frames = np.where(keep, frames, clip.gt[None])  # the model owns the mouth region only
        top, bottom, left, right = mouth_box(clip.mask)
        pred, gt = frames[:, :, top:bottom, left:right], clip.gt[:, top:bottom, left:right]
        k, t = pred.shape[:2]
        lp = self.mouth_lpips(pred.reshape(k * t, *pred.shape[2:]), gt, clip.id).view(k, t)
        out = []
        for i in range(k):
            scores = {"lpips": float(lp[i].mean()), "ssim": float(ssim(pred[i], gt).mean())}
            if self.syncnet is not None:
                scores.update(self.sync(frames[i], clip))
            out.append(scores)
        return out

    @torch.no_grad()
    def sync(self, frames: np.ndarray, clip: Clip) -> dict[str, float]:
        """Sync-C / Sync-D of (T, S, S, 3) crops over shifts -k..k using valid pairs only."""
        from lipforcing.evaluation.sync import as_video, valid_shift_distances

        video = as_video(frames).to(next(self.syncnet.parameters()))
        v = self.syncnet.video_windows(video)
        a = self.syncnet.audio_windows(self.sync_audio(clip), video.shape[1])
        n = min(len(v), len(a))
        k = min(self.max_shift, n - 1)
        dist = valid_shift_distances(v[None, :n].float(), a[None, :n].float(), k)[0]
        d_min = float(dist.min())
        return {"sync_c": float(dist.median()) - d_min, "sync_d": d_min}

    @torch.no_grad()
    def mouth_lpips(self, pred: np.ndarray, gt: np.ndarray, key: str) -> Tensor:
        """LPIPS of (N, h, w, 3) uint8 mouth boxes against the clip's T ground-truth boxes
        (N = K T, frame n against gt n mod T); the ground-truth features are computed once."""
        if self._gt_key != key:
            self._gt_feats = [unit(f) for f in self.lpips.features(lpips_input(gt))]
            self._gt_key = key
        reps = pred.shape[0] // gt.shape[0]
        total = torch.zeros(pred.shape[0])
        feats = self.lpips.features(lpips_input(pred))
        for f, g, w in zip(feats, self._gt_feats, self.lpips.heads, strict=True):
            d = (unit(f) - g.repeat(reps, 1, 1, 1)) ** 2  # (N, c, h, w)
            total += torch.einsum("nchw,c->nhw", d, w).mean(dim=(1, 2))
        return total


def unit(f: Tensor) -> Tensor:
    """LPIPS's channel-wise unit normalisation of a feature map."""
    return f / (f.norm(dim=1, keepdim=True) + 1e-10)


def lpips_input(frames: np.ndarray) -> Tensor:
    """(N, h, w, 3) uint8 -> (N, 3, h', w') in [-1, 1], upsampled so the short side is at least
    :data:`LPIPS_MIN_SIDE` (every AlexNet tap keeps a spatial extent)."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1
    h, w = x.shape[-2:]
    if min(h, w) < LPIPS_MIN_SIDE:
        k = LPIPS_MIN_SIDE / min(h, w)
        x = F.interpolate(x, size=(round(h * k), round(w * k)), mode="bilinear")
    return x


__all__ = [
    "FIDELITY",
    "SYNC",
    "Clip",
    "MouthScorer",
    "mouth_box",
    "prepare_clip",
    "select_windows",
    "lpips_input",
    "to_uint8",
    "window_waveform",
]
