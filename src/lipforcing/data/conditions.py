"""Assemble :class:`LipSyncCond` from latents: one place for training, analysis and streaming.

Choices (ours where the paper is silent):
- The mouth mask is given in crop pixels (1 = generate) and reduced to the latent grid by
  max-pooling, so every latent cell that touches the mouth is generated (``"rectangle"``, ours);
  with the release's ``"latentsync"`` style (``MediaConfig.mask_style``) it is resized
  bilinearly (align_corners=False) and thresholded at 0.5 on the keep side, as the release
  reduces LatentSync's mask.
- ``ref`` is one reference frame's latent repeated over all frames; ``ref_seq`` is a latent
  sequence of the same identity taken from another time of the source (never the frames being
  generated, so the mouth cannot leak from it).
"""

from __future__ import annotations

import torch.nn.functional as F
from einops import repeat
from torch import Tensor

from lipforcing.models.conditioning import LipSyncCond, pack_audio_frames


def latent_mask(
    mask: Tensor, latent_hw: tuple[int, int], num_frames: int, style: str = "rectangle"
) -> Tensor:
    """Crop-pixel mask (S, S) or (B, S, S) -> latent mask (B, 1, F, h, w).

    ``style`` ``"rectangle"``: max-pooling; ``"latentsync"``: the release's bilinear resize of
    the keep mask, kept where > 0.5.
    """
    if mask.dim() == 2:
        mask = mask[None]
    if style == "latentsync":
        keep = F.interpolate(1 - mask[:, None].float(), latent_hw, mode="bilinear")
        pooled = (keep <= 0.5).float()  # (B, 1, h, w)
    else:
        pooled = F.adaptive_max_pool2d(mask[:, None].float(), latent_hw)  # (B, 1, h, w)
    return repeat(pooled, "b c h w -> b c f h w", f=num_frames)


def assemble_cond(
    *,
    masked: Tensor,
    ref_frame: Tensor,
    ref_seq: Tensor,
    mask: Tensor,
    audio: Tensor,
    pack: int,
    context: Tensor | None = None,
    audio_packed: bool = False,
    mask_style: str = "rectangle",
    negative: Tensor | None = None,
) -> LipSyncCond:
    """Build the conditions of F latent frames.

    Args:
        masked: latent of the mouth-masked source, (B, C, F, h, w).
        ref_frame: latent of one reference frame, (B, C, 1, h, w); repeated over F.
        ref_seq: latent of the reference sequence, (B, C, F, h, w).
        mask: crop-pixel mouth mask, (S, S) or (B, S, S), 1 = generate.
        audio: per-video-frame features (B, 1 + pack*(F-1), A), or already packed
            (B, pack*F, A) when ``audio_packed``.
        pack: video frames per latent frame.
        context: cross-attention context (B, L, D) or None.
        mask_style: how the pixel mask reaches the latent grid (``MediaConfig.mask_style``).
        negative: the negative-prompt context (B, L, D) for the release's full-drop CFG.
    """
    b, _, f, h, w = masked.shape
    m = latent_mask(mask.to(masked.device), (h, w), f, mask_style).to(masked.dtype)
    if m.shape[0] == 1 and b > 1:
        m = m.expand(b, -1, -1, -1, -1)
    audio = audio if audio_packed else pack_audio_frames(audio, pack)
    if audio.shape[1] != pack * f:
        raise ValueError(f"audio has {audio.shape[1]} rows for {f} latent frames (need {pack * f})")
    return LipSyncCond(
        ref=ref_frame.expand(-1, -1, f, -1, -1),
        mask=m,
        masked=masked,
        ref_seq=ref_seq,
        audio=audio.to(masked.dtype),
        context=context,
        negative=negative,
    )


def mask_pixels(video: Tensor, mask: Tensor) -> Tensor:
    """Blank the mouth: video (B, 3, T, S, S) in [-1, 1] with mask (S, S) -> masked video."""
    keep = (1 - mask.to(video)).view(1, 1, 1, *mask.shape[-2:])
    return video * keep


__all__ = ["assemble_cond", "latent_mask", "mask_pixels"]
