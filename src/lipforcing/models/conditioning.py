"""The lip-sync conditions the DiT sees, as one small dataclass.

All latent-space tensors share the latent layout (B, C, F, H, W) of the noisy input, so a causal
chunk is a frame slice of every field. Audio is kept per *video* frame in the packed layout the
audio module expects: 4 rows per latent frame (``audio_pack_frames``), with the first latent
frame's row group being the first video frame repeated (Wan's first frame stands alone).

Dropping conditions for classifier-free guidance (:meth:`LipSyncCond.drop`), one named switch:

- ``"all"`` (the paper's full drop, default): audio and both reference inputs zeroed, the text
  context kept;
- ``"audio"``: only the audio zeroed (the paper's audio-only drop; the release's too);
- ``"release"`` (the official release's full drop): the text context replaced by the
  negative-prompt embedding and the audio zeroed, keeping reference, mask, masked video and
  reference sequence. Without a ``negative`` the negative embedding is zeros of the context's
  shape, as the release's training does when no negative embedding file is given (its data
  loader's default, ``NEG_TEXT_EMB_PATH`` unset); ``lipforcing encode-prompt
  --negative-prompt`` stores an encoded one instead.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class LipSyncCond:
    """Conditions for one batch of latent frames.

    Attributes:
        ref: reference latent repeated over frames, (B, C, F, H, W).
        mask: 1 where the model generates (the mouth), (B, 1, F, H, W).
        masked: source latent with the mouth region masked out, (B, C, F, H, W).
        ref_seq: reference sequence latent, (B, C, F, H, W).
        audio: per-video-frame audio features, packed layout, (B, pack * F, A).
        context: cross-attention context, (B, L, text_dim), or None for a learned null context.
        negative: the negative-prompt context (B, L, text_dim) for the release's full drop.
        context_kv: per DiT block, the cross-attention (keys, values) of ``context``, each
            (B, L, H, d), precomputed once per stream (``LipSyncDiT.context_kv``); the model
            then skips the context projections. Dropped whenever the context changes.
        negative_kv: the same for ``negative``; the release's full drop then keeps it.
    """

    ref: Tensor
    mask: Tensor
    masked: Tensor
    ref_seq: Tensor
    audio: Tensor
    context: Tensor | None = None
    negative: Tensor | None = None
    context_kv: tuple[tuple[Tensor, Tensor], ...] | None = None
    negative_kv: tuple[tuple[Tensor, Tensor], ...] | None = None

    @property
    def num_frames(self) -> int:
        return self.ref.shape[2]

    def model_inputs(self, x_t: Tensor) -> Tensor:
        """Channel-concatenate the noisy latent with the conditions: (B, 4C + 1, F, H, W)."""
        return torch.cat([x_t, self.ref, self.mask, self.masked, self.ref_seq], dim=1)

    def frames(self, start: int, stop: int) -> LipSyncCond:
        """Conditions of latent frames [start, stop) (audio rows follow)."""
        pack = self.audio.shape[1] // self.num_frames
        return dataclasses.replace(
            self,
            ref=self.ref[:, :, start:stop],
            mask=self.mask[:, :, start:stop],
            masked=self.masked[:, :, start:stop],
            ref_seq=self.ref_seq[:, :, start:stop],
            audio=self.audio[:, pack * start : pack * stop],
        )

    def drop(self, mode: str) -> LipSyncCond:
        """The unconditional branch for CFG: ``"all"``, ``"audio"`` or ``"release"``."""
        if mode == "audio":
            return dataclasses.replace(self, audio=torch.zeros_like(self.audio))
        if mode == "release":
            if self.context is None:
                raise ValueError(
                    "the release's full drop swaps the text context: a text-conditioned model "
                    "with --context is needed"
                )
            if self.negative is None:  # the release's default negative: a zero embedding
                negative, negative_kv = torch.zeros_like(self.context), None
            else:
                negative, negative_kv = self.negative, self.negative_kv
            return dataclasses.replace(
                self,
                audio=torch.zeros_like(self.audio),
                context=negative,
                context_kv=negative_kv,
            )
        if mode == "all":
            return dataclasses.replace(
                self,
                audio=torch.zeros_like(self.audio),
                ref=torch.zeros_like(self.ref),
                ref_seq=torch.zeros_like(self.ref_seq),
            )
        raise ValueError(f"unknown drop mode {mode!r}; use 'all', 'audio' or 'release'")

    def to(self, *args, **kwargs) -> LipSyncCond:
        moved = {
            f.name: getattr(self, f.name).to(*args, **kwargs)
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), Tensor)
        }
        for name in ("context_kv", "negative_kv"):
            kv = getattr(self, name)
            if kv is not None:
                moved[name] = tuple((k.to(*args, **kwargs), v.to(*args, **kwargs)) for k, v in kv)
        return dataclasses.replace(self, **moved)

    def cat(self, other: LipSyncCond) -> LipSyncCond:
        """Stack two condition sets along the batch axis (batched CFG branches)."""
        both = {}
        for f in dataclasses.fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if f.name in ("context_kv", "negative_kv"):
                both[f.name] = (
                    None
                    if a is None or b is None
                    else tuple(
                        (torch.cat([ka, kb]), torch.cat([va, vb]))
                        for (ka, va), (kb, vb) in zip(a, b)
                    )
                )
            else:
                both[f.name] = None if a is None else torch.cat([a, b], dim=0)
        return LipSyncCond(**both)


def pack_audio_frames(audio: Tensor, pack: int = 4) -> Tensor:
    """Pad per-video-frame features (B, 1 + pack*(F-1), A) to the packed layout (B, pack*F, A).

    Wan's first latent frame encodes one video frame; repeating that frame ``pack - 1`` times
    gives every latent frame exactly ``pack`` audio rows.
    """
    if (audio.shape[1] - 1) % pack:
        raise ValueError(f"{audio.shape[1]} audio rows: need 1 + {pack} * k (one per frame)")
    first = audio[:, :1].expand(-1, pack - 1, -1)
    return torch.cat([first, audio], dim=1)
