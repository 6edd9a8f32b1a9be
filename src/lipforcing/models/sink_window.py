"""The one sink + rolling-window policy: which past latent frames a causal chunk attends to.

Spec section 6: a chunk attends to the first ``sink_frames`` frames of the stream (the
attention sink), to the most recent frames and to itself; the window of ``window_frames``
counts the chunk being generated, so ``window - chunk`` past frames besides the sink remain
between chunks. Every entry is rotated by its *slot*: its index in that list (sink first, then
the window in order, then the chunk), so positions stay in [0, sink + window) however long a
stream runs.

Three parts read this one object: the KV cache (what to evict, which positions to rotate by),
the windowed whole-sequence training pass (``LipSyncDiT`` with ``ModelConfig.mask_window``)
and the block-causal mask (``models.attention.BlockCausal``), so training and cached
generation cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class SinkWindow:
    """Sink + rolling-window visibility of a chunk-wise causal model (frames are latent)."""

    sink_frames: int  # first frames of the stream, visible to every later chunk
    window_frames: int  # most recent frames visible, the query's own chunk included
    chunk_frames: int  # frames generated together

    def __post_init__(self) -> None:
        if self.sink_frames < 0 or self.chunk_frames < 1:
            raise ValueError(f"invalid sink/chunk: {self}")
        if self.window_frames < self.chunk_frames:
            raise ValueError("the rolling window must hold at least one chunk")

    @property
    def keep_frames(self) -> int:
        """Past frames besides the sink that stay between chunks."""
        return self.window_frames - self.chunk_frames

    @property
    def held_frames(self) -> int:
        """Frames a cache holds between chunks once the stream is past the window."""
        return self.sink_frames + self.keep_frames

    def held(self, start: int) -> list[int]:
        """Past frames (of [0, start)) visible to a chunk starting at ``start``, in slot order."""
        sink = min(self.sink_frames, start)
        return [*range(sink), *range(max(sink, start - self.keep_frames), start)]

    def evict_count(self, held: int) -> int:
        """Oldest non-sink frames to drop after a cache holding ``held`` frames commits."""
        return max(0, held - min(self.sink_frames, held) - self.keep_frames)

    def positions(self, held: int, new: int, device=None) -> tuple[Tensor, Tensor]:
        """Slot positions: queries (new,), keys (held + new,) for ``new`` frames after ``held``."""
        k_pos = torch.arange(held + new, device=device)
        return k_pos[held:], k_pos

    def frame_mask(self, num_frames: int, device: torch.device | str = "cpu") -> Tensor:
        """(F, F) bool over a whole sequence: True where query frame i may see key frame j."""
        f = torch.arange(num_frames, device=device)
        start = f // self.chunk_frames * self.chunk_frames  # first frame of each query's chunk
        causal = f[None, :] < start[:, None] + self.chunk_frames
        recent = f[None, :] >= start[:, None] - self.keep_frames
        return causal & ((f[None, :] < self.sink_frames) | recent)
