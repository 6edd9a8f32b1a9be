"""The student's KV cache: an attention sink plus a rolling window, over preallocated tensors.

Layout: one key and one value tensor for all layers, (layers, B, slots * tokens, H, d), where a
slot holds one latent frame. Which frames stay, and which position each slot is rotated by,
is the one :class:`~lipforcing.models.sink_window.SinkWindow` policy (``cache.policy``) that
the windowed training pass and the block-causal mask follow too: slots [0, sink) hold the
first latent frames of the stream forever (the attention sink, spec section 6), the slots after
them the most recent frames in order.

Design choices:
- Keys are stored *without* RoPE. At attention time every entry is rotated by its slot index:
  sink at 0, window after it, the chunk being generated in the slots that follow. While nothing
  has been evicted, slot indices equal absolute frame indices, so cached generation equals one
  block-causal forward over the whole sequence; afterwards positions stay in [0, sink + window),
  the range seen in training, however long the stream runs. (After eviction the sink sits
  closer to the window than in an absolute-position block-causal pass; the cache path is the
  one that generalises to any stream length.)
- The window counts the chunk being generated: with window 6 and chunks of 3, a chunk attends
  to the sink, the 3 frames before it and itself. After each write the oldest non-sink frames
  are evicted so that ``window - chunk`` of them remain, leaving room for the next chunk.
- Denoising calls *read*: :meth:`view` places the chunk's keys in the free slots (scratch) or,
  when they carry autograd history, concatenates instead, so the committed state is unchanged
  and no graph tensor is modified in place. Only :meth:`append` commits frames.
- Nothing outside reads or writes the bookkeeping: :meth:`snapshot` / :meth:`restore` save and
  put back the whole state (CUDA-graph recording runs calls that must leave no trace).
- :class:`CacheBatch` presents the caches of several streams in the same state as one batch
  (the streaming engine's batched step); each stream keeps its own :class:`KVCache`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lipforcing.config import CausalConfig, ModelConfig
from lipforcing.models.sink_window import SinkWindow


@dataclass(frozen=True)
class KVState:
    """A cache's state: bookkeeping, and (optionally) copies of its key/value tensors."""

    frames: int  # committed frames held
    total_frames: int  # frames ever committed
    staged: int  # frames the last read placed in the free slots
    k: Tensor | None = None
    v: Tensor | None = None


class KVCache:
    """Sink + rolling-window key/value store for every layer of a causal DiT."""

    def __init__(self, k: Tensor, v: Tensor, tokens_per_frame: int, policy: SinkWindow) -> None:
        self.k, self.v = k, v  # (layers, B, slots * tokens, H, d)
        self.tokens_per_frame = tokens_per_frame
        self.policy = policy
        self.reset()

    @classmethod
    def allocate(
        cls,
        cfg: ModelConfig,
        batch: int,
        latent_hw: tuple[int, int],
        causal_cfg: CausalConfig,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> KVCache:
        """Preallocate (sink + window) frames of keys and values for every layer."""
        tokens = cfg.tokens_per_frame(latent_hw)
        shape = (cfg.num_layers, batch, causal_cfg.cache_frames * tokens, cfg.num_heads)
        with torch.inference_mode(False):  # normal tensors: usable in and out of inference mode
            k = torch.zeros(*shape, cfg.head_dim, device=device, dtype=dtype)
            v = torch.zeros_like(k)
        policy = SinkWindow(
            causal_cfg.sink_frames, causal_cfg.window_frames, causal_cfg.chunk_frames
        )
        return cls(k, v, tokens, policy)

    # ------------------------------------------------------------------ state

    @property
    def capacity_frames(self) -> int:
        return self.k.shape[2] // self.tokens_per_frame

    @property
    def chunk_frames(self) -> int:
        return self.policy.chunk_frames

    @property
    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes

    @property
    def steady(self) -> bool:
        """Past the window: every later chunk reads and writes the same slots (fixed shapes)."""
        return self.frames == self.policy.held_frames

    def reset(self) -> None:
        """Empty the cache for a new stream (the tensors are kept)."""
        self.frames = 0  # committed frames held
        self.total_frames = 0  # frames ever appended
        self._staged = 0  # frames of the last chunk placed in the free slots

    def snapshot(self, tensors: bool = True) -> KVState:
        """The cache's state; with ``tensors`` also copies of its keys and values."""
        k = self.k.clone() if tensors else None
        v = self.v.clone() if tensors else None
        return KVState(self.frames, self.total_frames, self._staged, k, v)

    def restore(self, state: KVState) -> None:
        """Put back a :meth:`snapshot` (tensors too when it holds them)."""
        self.frames, self.total_frames, self._staged = (
            state.frames,
            state.total_frames,
            state.staged,
        )
        if state.k is not None:
            self.k.copy_(state.k)
            self.v.copy_(state.v)

    def positions(self, num_new: int) -> tuple[Tensor, Tensor]:
        """Slot positions (query (n,), key (frames + n,)) for a chunk of ``num_new`` frames."""
        return self.policy.positions(self.frames, num_new, self.k.device)

    # ------------------------------------------------------------------ per layer

    def view(self, layer: int, k_new: Tensor, v_new: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values of the committed frames followed by the new chunk's.

        Args:
            layer: block index.
            k_new, v_new: the chunk's keys (without RoPE) and values, (B, n * tokens, H, d).

        Returns:
            (B, (frames + n) * tokens, H, d) keys and values.
        """
        n_tok = k_new.shape[1]
        if n_tok % self.tokens_per_frame or n_tok // self.tokens_per_frame > self.chunk_frames:
            raise ValueError(f"{n_tok} tokens is not a chunk of <= {self.chunk_frames} frames")
        start = self.frames * self.tokens_per_frame
        if k_new.requires_grad or v_new.requires_grad:  # keep the graph out of the buffer
            k = torch.cat([self.k[layer, :, :start], k_new.to(self.k.dtype)], dim=1)
            v = torch.cat([self.v[layer, :, :start], v_new.to(self.v.dtype)], dim=1)
            return k, v
        self.k[layer, :, start : start + n_tok] = k_new
        self.v[layer, :, start : start + n_tok] = v_new
        if layer == 0:
            self._staged = 0
        self._staged = max(self._staged, n_tok // self.tokens_per_frame)
        return self.k[layer, :, : start + n_tok], self.v[layer, :, : start + n_tok]

    # ------------------------------------------------------------------ commit

    def append(self, num_frames: int) -> None:
        """Commit the ``num_frames`` frames the last :meth:`view` calls placed in free slots."""
        if num_frames != self._staged:
            raise RuntimeError("append() must follow a no-grad forward over the same chunk")
        self.frames += num_frames
        self.total_frames += num_frames
        self._staged = 0

    def evict(self) -> None:
        """Drop the oldest non-sink frames the policy no longer keeps (shift the rest left)."""
        extra = self.policy.evict_count(self.frames)
        if extra <= 0:
            return
        sink = min(self.policy.sink_frames, self.frames)
        keep = self.policy.keep_frames
        s = self.tokens_per_frame
        dst, src, n = sink * s, (sink + extra) * s, keep * s
        self.k[:, :, dst : dst + n] = self.k[:, :, src : src + n].clone()
        self.v[:, :, dst : dst + n] = self.v[:, :, src : src + n].clone()
        self.frames = sink + keep


class CacheBatch:
    """Several streams' caches, all holding the same number of frames, read as one batch.

    The model sees the :class:`KVCache` interface: :meth:`view` writes each stream's rows of
    the new chunk into that stream's own cache and returns the concatenation (one copy per
    layer and call), :meth:`append` / :meth:`evict` commit in every cache. Rows follow
    ``caches``' order.
    """

    def __init__(self, caches: list[KVCache]) -> None:
        first = caches[0]
        if any(c.frames != first.frames or c.policy != first.policy for c in caches):
            raise ValueError("a cache batch needs caches in the same state")
        self.caches = caches
        self.policy, self.tokens_per_frame = first.policy, first.tokens_per_frame
        self.rows = [c.k.shape[1] for c in caches]

    @property
    def frames(self) -> int:
        return self.caches[0].frames

    @property
    def chunk_frames(self) -> int:
        return self.policy.chunk_frames

    def positions(self, num_new: int) -> tuple[Tensor, Tensor]:
        return self.caches[0].positions(num_new)

    def view(self, layer: int, k_new: Tensor, v_new: Tensor) -> tuple[Tensor, Tensor]:
        parts = [
            c.view(layer, k, v)
            for c, k, v in zip(self.caches, k_new.split(self.rows), v_new.split(self.rows))
        ]
        return torch.cat([k for k, _ in parts]), torch.cat([v for _, v in parts])

    def append(self, num_frames: int) -> None:
        for c in self.caches:
            c.append(num_frames)

    def evict(self) -> None:
        for c in self.caches:
            c.evict()
