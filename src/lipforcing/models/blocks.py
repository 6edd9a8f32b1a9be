"""Wan 2.1 DiT blocks: self-attention, text cross-attention, FFN, adaLN modulation, output head.

Parameter names and shapes follow Wan 2.1 (``wan/modules/model.py``) so official checkpoints
load by name: ``norm1``/``norm2`` are LayerNorms without affine, ``norm3`` is an affine
LayerNorm before cross-attention (``cross_attn_norm``), attention has ``q, k, v, o`` Linears and
RMSNorms ``norm_q, norm_k`` over the full width, ``ffn.0``/``ffn.2`` with a tanh-GELU between,
``modulation`` (1, 6, dim) added to the projected time embedding and split into
(shift, scale, gate) for attention and (shift, scale, gate) for the FFN.

Design choices:
- Modulation is per latent frame, ``e`` of shape (B, F, 6, dim), so Diffusion Forcing can give
  each frame its own timestep (as Self-Forcing's causal Wan does). A per-sample ``t`` is the
  special case of equal rows.
- The residual stream is float32 (as in Wan, whose residual additions run in fp32); norms,
  modulation and gates are computed in float32 and cast to the weights' dtype before Linears.
- Batch invariance: a sample's output does not depend on what it is batched with (the
  streaming engine batches several streams and promises each the frames it would get alone).
  CPU BLAS picks another kernel for a GEMM of a few rows than for many, so the Linears that
  see few rows per sample (the text context's keys/values here, the time, text and audio
  embeddings in ``dit.py``) run sample by sample through :func:`per_sample`; token-wide GEMMs,
  attention and norms are row-independent already.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lipforcing.models.attention import BlockCausal, attention
from lipforcing.models.kv_cache import KVCache
from lipforcing.models.rope import Rotary, apply_rope


@dataclass
class ChunkWindow:
    """One query chunk of a windowed whole-sequence pass: the keys the KV cache would hold."""

    q: slice  # the chunk's tokens
    k_index: Tensor  # (Lk,) token indices of sink + window frames, in cache-slot order
    rope_q: Rotary  # queries rotated by their cache slots
    rope_k: Rotary  # keys rotated by their cache slots


@dataclass
class AttentionPlan:
    """What every block's self-attention needs for one forward pass."""

    rope_q: Rotary  # rotation of the queries (the input tokens)
    rope_k: Rotary  # rotation of the keys (cached entries, then the input tokens)
    mask: BlockCausal | None  # None: full attention over the keys
    cache: KVCache | None  # the student's cache, or None for a whole-sequence pass
    windows: list[ChunkWindow] | None = None  # sink + window training pass, per query chunk


def per_sample(fn: Callable[..., Tensor], *xs: Tensor) -> Tensor:
    """``fn`` applied to each batch row of ``xs`` apart, results concatenated (see the module
    docstring: batch invariance of few-row GEMMs). One row: a single call."""
    if xs[0].shape[0] == 1:
        return fn(*xs)
    return torch.cat([fn(*(x[i : i + 1] for x in xs)) for i in range(xs[0].shape[0])])


class RMSNorm(nn.Module):
    """RMS normalisation in float32 with a learned gain (Wan's ``WanRMSNorm``)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(dim))

    def forward(self, x: Tensor) -> Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (xf * self.weight.float()).to(x.dtype)


def layer_norm(x: Tensor, eps: float, norm: nn.Module | None = None) -> Tensor:
    """float32 LayerNorm; affine when ``norm`` is an ``nn.LayerNorm`` with weights."""
    w = b = None
    if isinstance(norm, nn.LayerNorm) and norm.weight is not None:
        w, b = norm.weight.float(), norm.bias.float()
    return F.layer_norm(x.float(), (x.shape[-1],), w, b, eps)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """x * (1 + scale) + shift with per-frame (B, F, dim) shift/scale over (B, F * S, dim)."""
    b, f = shift.shape[:2]
    xv = x.view(b, f, -1, x.shape[-1])
    return (xv * (1 + scale[:, :, None]) + shift[:, :, None]).view_as(x)


def gated_residual(x: Tensor, y: Tensor, gate: Tensor) -> Tensor:
    """x + gate * y in float32, gate per frame (B, F, dim)."""
    b, f = gate.shape[:2]
    yv = y.float().view(b, f, -1, y.shape[-1])
    return x + (yv * gate[:, :, None]).view_as(x)


class SelfAttention(nn.Module):
    """Self-attention with QK RMSNorm and 3-D RoPE; reads/writes the KV cache when given."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool = True, eps: float = 1e-6):
        super().__init__()
        self.num_heads = num_heads
        self.q, self.k = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.v, self.o = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.norm_q = RMSNorm(dim, eps) if qk_norm else nn.Identity()
        self.norm_k = RMSNorm(dim, eps) if qk_norm else nn.Identity()

    def forward(self, x: Tensor, plan: AttentionPlan, layer: int) -> Tensor:
        """(B, L, dim) -> (B, L, dim)."""
        q, k, v = self.qkv(x)
        if plan.windows is not None:
            out = torch.cat([self._window(q, k, v, w) for w in plan.windows], dim=1)
            return self.o(out.flatten(2))
        if plan.cache is not None:  # prepend the cached (unrotated) keys and values
            k, v = plan.cache.view(layer, k, v)
        return self.attend(q, k, v, plan.rope_q, plan.rope_k, plan.mask)

    def attend(
        self, q: Tensor, k: Tensor, v: Tensor, rope_q: Rotary, rope_k: Rotary, mask=None
    ) -> Tensor:
        """RoPE, attention and the output projection: (B, Lq, H, d) queries -> (B, Lq, dim)."""
        out = attention(apply_rope(q, rope_q), apply_rope(k, rope_k), v, mask)
        return self.o(out.flatten(2))

    def qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Normalised queries and keys and the values, each (B, L, H, d), before RoPE.

        A separate method so that ``torch.compile`` can take it without the cache logic.
        """
        q = self.norm_q(self.q(x)).unflatten(2, (self.num_heads, -1))  # (B, L, H, d)
        return (q, *self.kv(x))

    def kv(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Normalised keys and the values, (B, L, H, d) each: what a KV-cache write keeps."""
        k = self.norm_k(self.k(x)).unflatten(2, (self.num_heads, -1))
        v = self.v(x).unflatten(2, (self.num_heads, -1))
        return k, v

    @staticmethod
    def _window(q: Tensor, k: Tensor, v: Tensor, w: ChunkWindow) -> Tensor:
        """One chunk attending to exactly the entries (and slot positions) of the KV cache."""
        k_w, v_w = k[:, w.k_index], v[:, w.k_index]
        return attention(apply_rope(q[:, w.q], w.rope_q), apply_rope(k_w, w.rope_k), v_w)


class CrossAttention(nn.Module):
    """Attention from the video tokens to the (projected) text context."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool = True, eps: float = 1e-6):
        super().__init__()
        self.num_heads = num_heads
        self.q, self.k = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.v, self.o = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.norm_q = RMSNorm(dim, eps) if qk_norm else nn.Identity()
        self.norm_k = RMSNorm(dim, eps) if qk_norm else nn.Identity()

    def forward(self, x: Tensor, context: Tensor | tuple[Tensor, Tensor]) -> Tensor:
        """x (B, L, dim), context (B, Lc, dim) or its precomputed :meth:`kv` -> (B, L, dim)."""
        q = self.norm_q(self.q(x)).unflatten(2, (self.num_heads, -1))
        k, v = context if isinstance(context, tuple) else self.kv(context)
        return self.o(attention(q, k, v).flatten(2))

    def kv(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values of the projected context, each (B, Lc, H, d): fixed for a stream,
        so a stream can compute them once (``LipSyncDiT.context_kv``)."""
        k = per_sample(lambda c: self.norm_k(self.k(c)), context).unflatten(2, (self.num_heads, -1))
        v = per_sample(self.v, context).unflatten(2, (self.num_heads, -1))
        return k, v


class DiTBlock(nn.Module):
    """One Wan 2.1 block: modulated self-attention, cross-attention, modulated FFN."""

    def __init__(
        self,
        dim: int,
        ffn_dim: int,
        num_heads: int,
        qk_norm: bool = True,
        cross_attn_norm: bool = True,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.eps = eps
        self.self_attn = SelfAttention(dim, num_heads, qk_norm, eps)
        self.norm3 = nn.LayerNorm(dim, eps=eps) if cross_attn_norm else nn.Identity()
        self.cross_attn = CrossAttention(dim, num_heads, qk_norm, eps)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(ffn_dim, dim)
        )
        self.modulation = nn.Parameter(torch.empty(1, 6, dim))

    def forward(
        self,
        x: Tensor,
        e: Tensor,
        context: Tensor | tuple[Tensor, Tensor],
        plan: AttentionPlan,
        layer: int,
    ) -> Tensor:
        """x (B, F * S, dim) float32, e (B, F, 6, dim) float32, context (B, Lc, dim) or this
        block's precomputed cross-attention (k, v)."""
        h, mod = self.attn_input(x, e)
        return self.attn_output(x, self.self_attn(h, plan, layer), mod, context)

    # The two halves around the self-attention are separate methods so that ``torch.compile``
    # can take them whole: they hold no cache state and no layer index (one graph per shape).

    def attn_input(self, x: Tensor, e: Tensor) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Modulation (6 x (B, F, dim)) and the modulated, normalised self-attention input."""
        mod = (self.modulation.float()[:, None] + e).unbind(2)  # 6 x (B, F, dim)
        shift_sa, scale_sa = mod[0], mod[1]
        h = modulate(layer_norm(x, self.eps), shift_sa, scale_sa).to(self.ffn[0].weight.dtype)
        return h, mod

    def attn_output(
        self, x: Tensor, y: Tensor, mod: tuple[Tensor, ...], context: Tensor | tuple[Tensor, Tensor]
    ) -> Tensor:
        """Gated self-attention residual, cross-attention and the modulated FFN."""
        dtype = self.ffn[0].weight.dtype
        _, _, gate_sa, shift_ff, scale_ff, gate_ff = mod
        x = gated_residual(x, y, gate_sa)
        if isinstance(self.norm3, nn.LayerNorm):
            h = layer_norm(x, self.eps, self.norm3)
        else:
            h = x
        x = x + self.cross_attn(h.to(dtype), context).float()
        h = modulate(layer_norm(x, self.eps), shift_ff, scale_ff).to(dtype)
        return gated_residual(x, self.ffn(h), gate_ff)


class Head(nn.Module):
    """Output head: modulated LayerNorm (no affine) and a Linear to patch values."""

    def __init__(self, dim: int, out_dim: int, patch_size: tuple[int, int, int], eps: float):
        super().__init__()
        self.eps = eps
        self.head = nn.Linear(dim, out_dim * math.prod(patch_size))
        self.modulation = nn.Parameter(torch.empty(1, 2, dim))

    def forward(self, x: Tensor, e: Tensor) -> Tensor:
        """x (B, F * S, dim) float32, e (B, F, dim) float32 -> (B, F * S, out * prod(patch))."""
        shift, scale = (self.modulation.float()[:, None] + e[:, :, None]).unbind(2)
        h = modulate(layer_norm(x, self.eps), shift, scale)
        return self.head(h.to(self.head.weight.dtype))
