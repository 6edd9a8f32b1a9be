"""Pre-encoded training latents: codec-encode every training window once, train on the cache.

A cache is one ``.pt`` file with stacked tensors (N items):
``x0`` (N, C, F, h, w) clean latents of the window, ``masked`` (N, C, F, h, w) latents of the
mouth-blanked window, ``ref`` (N, C, 1, h, w) one reference frame, ``ref_seq`` (N, C, F, h, w),
``audio`` (N, T, A) per-video-frame features, ``mask`` (S, S) crop-pixel mouth mask, and
optionally ``video`` (N, 3, T, S, S) uint8 ground-truth crops (evaluation sets).
Batches are drawn by index, so the data position of a run is just its step counter.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor
from tqdm import tqdm

from lipforcing.data.conditions import assemble_cond, mask_pixels


@torch.no_grad()
def encode_dataset(dataset, codec, *, keep_video: bool = False, batch: int = 4) -> dict:
    """Encode every item of a :class:`ShardDataset` into the cache layout above."""
    parts: dict[str, list[Tensor]] = {k: [] for k in ("x0", "masked", "ref", "ref_seq", "audio")}
    videos = []
    mask = None
    for start in tqdm(range(0, len(dataset), batch), desc="encode", leave=False):
        items = [dataset[i] for i in range(start, min(start + batch, len(dataset)))]
        video = torch.stack([it["video"] for it in items])  # (B, 3, T, S, S)
        mask = items[0]["mask"]
        parts["x0"].append(codec.encode(video))
        parts["masked"].append(codec.encode(mask_pixels(video, mask)))
        parts["ref"].append(codec.encode(torch.stack([it["ref"] for it in items])[:, :, None]))
        parts["ref_seq"].append(codec.encode(torch.stack([it["ref_seq"] for it in items])))
        parts["audio"].append(torch.stack([it["audio"] for it in items]).float())
        if keep_video:
            videos.append(((video + 1) * 127.5).round().clamp(0, 255).to(torch.uint8))
    cache = {k: torch.cat(v) for k, v in parts.items()}
    cache["mask"] = mask
    if keep_video:
        cache["video"] = torch.cat(videos)
    return cache


def save_cache(cache: dict, path: str | Path) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(cache, tmp)
    tmp.replace(path)


def load_cache(path: str | Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def make_batch(cache: dict, index: Tensor, pack: int, latent_frames: int | None = None) -> dict:
    """Batch {x0, cond, audio, index} of the cache items ``index`` (first ``latent_frames``)."""
    f = latent_frames or cache["x0"].shape[2]
    t = 1 + pack * (f - 1)
    x0 = cache["x0"][index][:, :, :f]
    audio = cache["audio"][index][:, :t]
    cond = assemble_cond(
        masked=cache["masked"][index][:, :, :f],
        ref_frame=cache["ref"][index],
        ref_seq=cache["ref_seq"][index][:, :, :f],
        mask=cache["mask"],
        audio=audio,
        pack=pack,
    )
    return {"x0": x0, "cond": cond, "audio": audio, "index": index}


def micro_generator(seed: int, step: int, micro: int) -> torch.Generator:
    """The generator of global micro-batch ``micro`` of optimiser step ``step``.

    Data indices, noise and times of a micro-batch are a pure function of (seed, step, micro),
    so a resumed run and a run split over processes draw exactly the same samples.
    """
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 10_007 + micro)


def batch_indices(n: int, size: int, generator: torch.Generator) -> Tensor:
    """``size`` item indices in [0, n)."""
    return torch.randint(n, (size,), generator=generator)
