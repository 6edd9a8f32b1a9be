"""Pre-encoded training latents: codec-encode every training window once, train on the cache.

A cache is one ``.pt`` file with stacked tensors (N items):
``x0`` (N, C, F, h, w) clean latents of the window, ``masked`` (N, C, F, h, w) latents of the
mouth-blanked window, ``ref`` (N, C, 1, h, w) one reference frame, ``ref_seq`` (N, C, F, h, w),
``audio`` (N, T, A) per-video-frame features, ``mask`` (S, S) crop-pixel mouth mask,
``wave`` (N, L) the window's raw soundtrack (the reward's own audio input) with
``samples_per_frame`` (int), and optionally ``video`` (N, 3, T, S, S) uint8 ground-truth crops
(evaluation sets). Batches are drawn by index, so the data position of a run is just its step.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor
from tqdm import tqdm

from lipforcing.config import References
from lipforcing.data.conditions import assemble_cond, mask_pixels
from lipforcing.distill.draws import Draws
from lipforcing.models.text import Context

CACHE_KEYS = ("x0", "masked", "ref", "ref_seq", "audio", "mask")


@torch.no_grad()
def encode_dataset(dataset, codec, *, keep_video: bool = False, batch: int = 4) -> dict:
    """Encode every item of a :class:`ShardDataset` into the cache layout above (no autograd:
    a cache is data, and a graph over a Wan VAE encode would hold every activation)."""
    parts: dict[str, list[Tensor]] = {k: [] for k in ("x0", "masked", "ref", "ref_seq", "audio")}
    videos, waves = [], []
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
        if all("wave" in it for it in items):
            waves.append(torch.stack([it["wave"] for it in items]))
        if keep_video:
            videos.append(((video + 1) * 127.5).round().clamp(0, 255).to(torch.uint8))
    cache = {k: torch.cat(v) for k, v in parts.items()}
    cache["mask"] = mask
    if waves and sum(len(w) for w in waves) == len(dataset):
        cache["wave"] = torch.cat(waves)
        cache["samples_per_frame"] = cache["wave"].shape[1] // cache["audio"].shape[1]
    if keep_video:
        cache["video"] = torch.cat(videos)
    return cache


def save_cache(cache: dict, path: str | Path) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(cache, tmp)
    tmp.replace(path)


def load_cache(path: str | Path) -> dict:
    """A latent cache (tensors and ints only: ``torch.load(weights_only=True)``)."""
    from lipforcing.errors import UserError

    try:
        cache = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"{path}: not a readable latent cache ({str(e).splitlines()[0]})") from None
    missing = [k for k in CACHE_KEYS if not isinstance(cache, dict) or k not in cache]
    if missing:
        raise UserError(f"{path}: not a latent cache (missing {', '.join(missing)})")
    return cache


def make_batch(
    cache: dict,
    index: Tensor,
    pack: int,
    latent_frames: int | None = None,
    references: References = "random",
    context: Context | None = None,
    *,
    mask_style: str = "rectangle",
) -> dict:
    """Batch {x0, cond, audio, index[, wave]} of the cache items ``index`` (first F frames).

    ``references="window_first"`` (release) conditions on the window's own first latent frame
    instead of the cache's reference frame. ``context``: the fixed text context every sample
    shares (Wan presets; the release trains on one common prompt embedding), with its negative
    prompt (the release's full-drop CFG); ``mask_style``: the preset's ``media.mask_style``
    (how the mask reaches the latent grid).
    """
    f = latent_frames or cache["x0"].shape[2]
    t = 1 + pack * (f - 1)
    x0 = cache["x0"][index][:, :, :f]
    audio = cache["audio"][index][:, :t]
    ref = x0[:, :, :1] if references == "window_first" else cache["ref"][index]
    cond = assemble_cond(
        masked=cache["masked"][index][:, :, :f],
        ref_frame=ref,
        ref_seq=cache["ref_seq"][index][:, :, :f],
        mask=cache["mask"],
        audio=audio,
        pack=pack,
        mask_style=mask_style,
        context=None if context is None else context.context.expand(len(index), -1, -1),
        negative=None
        if context is None or context.negative is None
        else context.negative.expand(len(index), -1, -1),
    )
    batch = {"x0": x0, "cond": cond, "audio": audio, "index": index}
    if "wave" in cache:
        batch["wave"] = cache["wave"][index][:, : t * int(cache["samples_per_frame"])]
    return batch


def draw_batch(
    cache: dict,
    draws: Draws,
    pack: int,
    latent_frames: int,
    references: References = "random",
    context: Context | None = None,
    *,
    mask_style: str = "rectangle",
) -> dict:
    """The micro-batch of ``draws``: one uniformly drawn cache item per sample generator."""
    index = draws.randint(cache["x0"].shape[0])
    return make_batch(cache, index, pack, latent_frames, references, context, mask_style=mask_style)
