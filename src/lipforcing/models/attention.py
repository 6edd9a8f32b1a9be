"""One attention function over three backends: SDPA, flex attention (block-causal), CPU mask.

``attention(q, k, v, mask)`` takes (B, L, H, d) tensors and an optional :class:`BlockCausal`
mask description. The backend is chosen once per (device type, mask kind) and logged with the
reason:

- no mask (bidirectional teacher, cached student chunks): ``torch.nn.functional.
  scaled_dot_product_attention``, which dispatches to flash / cuDNN / memory-efficient kernels
  on GPU and to the math kernel on CPU;
- block-causal on CUDA with flex attention available: ``flex_attention`` with a ``BlockMask``
  built once per shape (sparse blocks are skipped, no L x L mask in memory);
- block-causal elsewhere (CPU, or no flex): SDPA with a boolean (L, L) mask.

Block-causal (spec section 6): latent frames are grouped into chunks of ``chunk_frames``; a
query in chunk k sees every key in chunks <= k. Optionally the keys are restricted the way the
inference KV cache restricts them, by the one :class:`~lipforcing.models.sink_window.SinkWindow`
policy the cache itself follows.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from lipforcing.models.sink_window import SinkWindow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BlockCausal:
    """Chunk-wise causal visibility over ``num_frames`` latent frames of equal token count."""

    num_frames: int
    tokens_per_frame: int
    chunk_frames: int
    window: SinkWindow | None = None  # restrict keys like the KV cache (None: all the past)

    def __post_init__(self) -> None:
        if self.window is not None and self.window.chunk_frames != self.chunk_frames:
            raise ValueError("the sink/window policy must use the mask's chunk size")

    def frame_mask(self, device: torch.device | str = "cpu") -> Tensor:
        """(F, F) bool, True where query frame i may attend to key frame j."""
        if self.window is not None:
            return self.window.frame_mask(self.num_frames, device)
        f = torch.arange(self.num_frames, device=device)
        q_end = (f // self.chunk_frames + 1) * self.chunk_frames  # end of each query's chunk
        return f[None, :] < q_end[:, None]

    def token_mask(self, device: torch.device | str = "cpu") -> Tensor:
        """(L, L) bool over tokens laid out frame-major."""
        s = self.tokens_per_frame
        return self.frame_mask(device).repeat_interleave(s, 0).repeat_interleave(s, 1)


def _flex_available() -> bool:
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
def choose_backend(device_type: str, block_causal: bool) -> str:
    """Pick and log the backend for a device type and mask kind (once per pair)."""
    if not block_causal:
        name = "sdpa"
        reason = "no mask: SDPA picks flash/cuDNN/efficient kernels (math on CPU)"
    elif device_type == "cuda" and _flex_available():
        name, reason = "flex", "block-causal on CUDA: flex attention with a sparse BlockMask"
    else:
        name = "sdpa_mask"
        reason = f"block-causal on {device_type}: SDPA with a boolean mask (flex needs CUDA)"
    log.info("attention backend %s (%s)", name, reason)
    return name


@functools.lru_cache(maxsize=16)
def _bool_mask(mask: BlockCausal, device: str) -> Tensor:
    return mask.token_mask(device)


@functools.lru_cache(maxsize=16)
def _block_mask(mask: BlockCausal, device: str):
    from torch.nn.attention.flex_attention import create_block_mask

    frames = mask.frame_mask(device)
    s = mask.tokens_per_frame

    def mask_mod(b, h, q_idx, kv_idx):
        return frames[q_idx // s, kv_idx // s]

    length = mask.num_frames * s
    return create_block_mask(mask_mod, None, None, length, length, device=device)


@functools.cache
def _compiled_flex():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def attention(q: Tensor, k: Tensor, v: Tensor, mask: BlockCausal | None = None) -> Tensor:
    """Multi-head attention with softmax scale 1/sqrt(d).

    Args:
        q: queries (B, Lq, H, d).
        k, v: keys and values (B, Lk, H, d).
        mask: None for full attention, or a block-causal description with Lq = Lk.

    Returns:
        (B, Lq, H, d) in ``q``'s dtype.
    """
    qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))  # (B, H, L, d)
    backend = choose_backend(q.device.type, mask is not None)
    if mask is None:
        out = F.scaled_dot_product_attention(qt, kt, vt)
    elif backend == "flex":
        out = _compiled_flex()(qt, kt, vt, block_mask=_block_mask(mask, str(q.device)))
    else:
        out = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=_bool_mask(mask, str(q.device)))
    return out.transpose(1, 2)
