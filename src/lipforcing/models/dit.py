"""The lip-sync DiT: Wan 2.1's transformer with 65 input channels and OmniAvatar audio.

``LipSyncDiT.forward(x_t, t, cond, kv_cache=None) -> velocity`` (rectified flow, see
``diffusion/schedules.py``). The input is ``cond.model_inputs(x_t)``: noisy latent, reference,
mouth mask, masked source and reference sequence concatenated on channels (4C + 1 = 65).

Design choices:
- Names and shapes of every Wan 2.1 parameter are kept (``patch_embedding``,
  ``text_embedding.{0,2}``, ``time_embedding.{0,2}``, ``time_projection.1``, ``blocks.N.*``,
  ``head.head``, ``head.modulation``) so Wan / OmniAvatar checkpoints load by name; the audio
  modules use OmniAvatar's names (``audio_proj``, ``audio_cond_projs``).
- ``t`` is (B,) or per latent frame (B, F); every frame's tokens get their own modulation.
  Wan embeds ``1000 * t`` (``ModelConfig.timestep_scale``).
- Attention: ``"bidirectional"`` (teacher) is full attention; ``"block_causal"`` (student) is
  chunk-wise causal over a whole sequence, or, with a :class:`KVCache`, one chunk attending to
  the cache. ``update_cache=True`` commits the chunk's keys/values (the t = 0 call of
  ``diffusion/causal.py``); :meth:`LipSyncDiT.write_kv` does that commit alone, sharing the
  embedding prefix (:meth:`LipSyncDiT._embed`) with ``forward`` and stopping at the last
  block's keys/values.
- Batch invariance (``models/blocks.py``): the few-row embeddings run sample by sample, so a
  stream's output is the same alone and batched with others.
- Built on the meta device, materialised with ``to_empty`` and initialised by one
  :meth:`LipSyncDiT.init_weights`. New lip-sync paths (audio projections) and the adaLN gates
  and output head start at zero, so a fresh model predicts zero velocity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from lipforcing.config import ModelConfig
from lipforcing.models.attention import BlockCausal
from lipforcing.models.audio import add_audio, audio_layer_index, build_audio_modules
from lipforcing.models.blocks import AttentionPlan, ChunkWindow, DiTBlock, Head, per_sample
from lipforcing.models.conditioning import LipSyncCond
from lipforcing.models.kv_cache import KVCache
from lipforcing.models.rope import rope_tables
from lipforcing.models.sink_window import SinkWindow

BASE_IN_CHANNELS = 16  # Wan 2.1 T2V's patch embedding input (one latent)


def sinusoidal_embedding(dim: int, position: Tensor) -> Tensor:
    """Wan's timestep embedding [cos, sin] with frequencies 10000^(-i / (dim/2)): (N, dim)."""
    half = dim // 2
    pos = position.to(torch.float64)
    freqs = torch.pow(10_000.0, -torch.arange(half, device=pos.device, dtype=torch.float64) / half)
    args = pos[:, None] * freqs
    return torch.cat([args.cos(), args.sin()], dim=1).float()


def linear_fp32(layer: nn.Linear, x: Tensor) -> Tensor:
    """A Linear evaluated in float32 whatever the weights' dtype (time embedding path)."""
    bias = None if layer.bias is None else layer.bias.float()
    return F.linear(x.float(), layer.weight.float(), bias)


@dataclass
class Embedded:
    """The embedding prefix of a forward pass: what every block reads."""

    x: Tensor  # (B, F * S, dim) float32 tokens
    grid: tuple[int, int, int]  # (F, h', w') token grid
    e: Tensor  # (B, F, dim) float32 time embedding (the head's modulation)
    e0: Tensor  # (B, F, 6, dim) float32 block modulation
    context: Tensor | tuple  # (B, Lc, dim) projected context, or per block its (k, v)
    audio: Tensor  # (B, F, pack_dim) float32 packed audio
    plan: AttentionPlan


class LipSyncDiT(nn.Module):
    """Wan 2.1 DiT for mouth inpainting conditioned on audio (teacher or causal student)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.patch_embedding = nn.Conv3d(
            cfg.in_channels, d, kernel_size=cfg.patch_size, stride=cfg.patch_size
        )
        self.text_embedding = nn.Sequential(
            nn.Linear(cfg.text_dim, d), nn.GELU(approximate="tanh"), nn.Linear(d, d)
        )
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
        self.blocks = nn.ModuleList(
            DiTBlock(d, cfg.ffn_dim, cfg.num_heads, cfg.qk_norm, cfg.cross_attn_norm, cfg.eps)
            for _ in range(cfg.num_layers)
        )
        self.head = Head(d, cfg.latent_channels, cfg.patch_size, cfg.eps)
        self.audio_proj, self.audio_cond_projs = build_audio_modules(cfg)
        if not cfg.use_text_context:  # learned stand-in for the umT5 context
            self.null_context = nn.Parameter(torch.empty(1, cfg.null_context_len, cfg.text_dim))

    # ------------------------------------------------------------------ init

    @torch.no_grad()
    def init_weights(self) -> None:
        """Every initialisation in one place (Wan 2.1's scheme plus zero-initialised paths)."""
        d = self.cfg.dim
        # 1. Linears: Xavier-uniform weights, zero biases (Wan's basic init).
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        # 2. Patch embedding: Xavier over the flattened kernel, zero bias.
        nn.init.xavier_uniform_(self.patch_embedding.weight.view(d, -1))
        nn.init.zeros_(self.patch_embedding.bias)
        # 3. Text and time embeddings: N(0, 0.02) weights (Wan).
        for m in [*self.text_embedding, *self.time_embedding]:
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
        # 4. Norm gains 1 and biases 0.
        for name, p in self.named_parameters():
            if "norm" in name:
                nn.init.ones_(p) if name.endswith("weight") else nn.init.zeros_(p)
        # 5. Modulation tables N(0, 1/dim) (Wan), then the adaLN gates zeroed (3 and 6 of 6).
        for block in self.blocks:
            nn.init.normal_(block.modulation, std=d**-0.5)
            block.modulation[:, 2::3].zero_()
        nn.init.normal_(self.head.modulation, std=d**-0.5)
        proj = self.time_projection[1]
        gates = proj.weight.view(6, d, d)[2::3]
        gates.zero_()
        proj.bias.view(6, d)[2::3].zero_()
        # 6. Output head zero: a fresh model predicts zero velocity.
        nn.init.zeros_(self.head.head.weight)
        # 7. Audio: packing Xavier (step 1), per-layer projections zero (no-op until trained).
        for m in self.audio_cond_projs:
            nn.init.zeros_(m.weight)
        # 8. Null context: N(0, 1), the scale of the umT5 features it stands in for.
        if hasattr(self, "null_context"):
            nn.init.normal_(self.null_context)

    # ------------------------------------------------------------------ forward

    def forward(
        self,
        x_t: Tensor,
        t: Tensor,
        cond: LipSyncCond,
        kv_cache: KVCache | None = None,
        *,
        update_cache: bool = False,
    ) -> Tensor:
        """Predict the velocity ``noise - x_0``.

        Args:
            x_t: noisy latent (B, C, F, h, w).
            t: times in [0, 1], (B,) or per latent frame (B, F).
            cond: conditions for the same F frames (``cond.audio`` (B, 4F, A)).
            kv_cache: the student's cache; the call then attends to the cached frames.
            update_cache: commit this chunk's keys/values to ``kv_cache`` (then evict).

        Returns:
            velocity (B, C, F, h, w) in ``x_t``'s dtype.
        """
        s = self._embed(x_t, t, cond, kv_cache)
        x = s.x
        for i in range(len(self.blocks)):
            x = self._block(i, x, s)
        out = self.head(x, s.e)  # (B, L, prod(patch) * C)
        if kv_cache is not None and update_cache:
            kv_cache.append(s.grid[0])
            kv_cache.evict()
        return self.unpatchify(out, s.grid).to(x_t.dtype)

    def write_kv(self, x: Tensor, t: Tensor, cond: LipSyncCond, kv_cache: KVCache) -> None:
        """``forward(x, t, cond, kv_cache, update_cache=True)`` without the work whose result a
        cache write discards: the last block's attention output, cross-attention and FFN, and
        the head. The cache ends up holding bitwise the same entries (tests/models)."""
        s = self._embed(x, t, cond, kv_cache)
        last = len(self.blocks) - 1
        h = s.x
        for i in range(last):
            h = self._block(i, h, s)
        h = self._audio(last, h, s)
        block = self.blocks[last]
        h, _ = block.attn_input(h, s.e0)
        kv_cache.view(last, *block.self_attn.kv(h))
        kv_cache.append(s.grid[0])
        kv_cache.evict()

    def _embed(self, x_t: Tensor, t: Tensor, cond: LipSyncCond, cache: KVCache | None) -> Embedded:
        """What every block reads, shared by :meth:`forward` and :meth:`write_kv`."""
        cfg, dtype = self.cfg, self.patch_embedding.weight.dtype
        b, f = x_t.shape[0], x_t.shape[2]
        self._check(x_t, t, cond, cache)
        inputs = cond.model_inputs(x_t).to(dtype)
        x = per_sample(self.patch_embedding, inputs)  # (B, dim, F, h', w')
        grid = tuple(x.shape[2:])
        x = rearrange(x, "b c f h w -> b (f h w) c").float()  # residual stream in fp32
        # 1. Per-frame time embedding e (B, F, dim) and modulation e0 (B, F, 6, dim), fp32.
        t_frames = t[:, None].expand(b, f) if t.dim() == 1 else t
        e, e0 = per_sample(self._time, t_frames).split([cfg.dim, 6 * cfg.dim], dim=-1)
        # 2. Context (or its precomputed cross-attention keys/values), audio, attention plan.
        if cond.context_kv is not None:
            context = cond.context_kv  # one (k, v) per block, computed once per stream
        else:
            context = per_sample(self.text_embedding, self._raw_context(cond, b).to(dtype))
        audio = per_sample(self.audio_proj, cond.audio)  # (B, F, pack_dim) fp32
        plan = self._plan(grid, cache, x.device)
        return Embedded(x, grid, e, e0.unflatten(-1, (6, cfg.dim)), context, audio, plan)

    def _time(self, t_frames: Tensor) -> Tensor:
        """(B, F) times -> (B, F, dim + 6 * dim): the embedding e and the modulation e0."""
        cfg = self.cfg
        sin = sinusoidal_embedding(cfg.freq_dim, cfg.timestep_scale * t_frames.reshape(-1))
        e = linear_fp32(self.time_embedding[2], F.silu(linear_fp32(self.time_embedding[0], sin)))
        e0 = linear_fp32(self.time_projection[1], F.silu(e))
        return torch.cat([e, e0], dim=-1).view(*t_frames.shape, -1)

    def _audio(self, i: int, x: Tensor, s: Embedded) -> Tensor:
        """The audio added before block ``i`` (OmniAvatar's audio blocks), else ``x``."""
        k = audio_layer_index(self.cfg, i)
        if k is None:
            return x
        return add_audio(x, s.audio, self.audio_cond_projs[k])

    def _block(self, i: int, x: Tensor, s: Embedded) -> Tensor:
        context = s.context[i] if isinstance(s.context, tuple) else s.context
        return self.blocks[i](self._audio(i, x, s), s.e0, context, s.plan, i)

    @torch.no_grad()
    def context_kv(
        self, context: Tensor | None, batch: int = 1
    ) -> tuple[tuple[Tensor, Tensor], ...]:
        """Every block's cross-attention keys and values of a context (B, L, text_dim) (None:
        the learned null context): computed once per stream, passed as ``cond.context_kv``."""
        dtype = self.patch_embedding.weight.dtype
        raw = self._context_tokens(context, batch).to(dtype)
        context = per_sample(self.text_embedding, raw)
        return tuple(block.cross_attn.kv(context) for block in self.blocks)

    def unpatchify(self, x: Tensor, grid: tuple[int, int, int]) -> Tensor:
        """(B, f*h*w, p*q*r*C) -> (B, C, f*p, h*q, w*r), Wan's patch layout."""
        p, q, r = self.cfg.patch_size
        f, h, w = grid
        return rearrange(
            x, "b (f h w) (p q r c) -> b c (f p) (h q) (w r)", f=f, h=h, w=w, p=p, q=q, r=r
        )

    def _raw_context(self, cond: LipSyncCond, batch: int) -> Tensor:
        """(B, text_len or null_context_len, text_dim) before ``text_embedding``."""
        return self._context_tokens(cond.context, batch)

    def _context_tokens(self, ctx: Tensor | None, batch: int) -> Tensor:
        cfg = self.cfg
        if not cfg.use_text_context:
            if ctx is not None:
                raise ValueError(
                    "this model uses a learned null context; cond.context must be None"
                )
            return self.null_context.expand(batch, -1, -1)
        if ctx is None:
            raise ValueError(f"this model needs cond.context (B, L<={cfg.text_len}, text_dim)")
        if ctx.shape[1] > cfg.text_len or ctx.shape[2] != cfg.text_dim:
            raise ValueError(f"context {tuple(ctx.shape)}: need (B, <={cfg.text_len}, text_dim)")
        return F.pad(ctx, (0, 0, 0, cfg.text_len - ctx.shape[1]))  # Wan zero-pads to text_len

    def _plan(
        self, grid: tuple[int, int, int], cache: KVCache | None, device: torch.device
    ) -> AttentionPlan:
        cfg = self.cfg
        f, h, w = grid
        if cache is not None:
            q_pos, k_pos = cache.positions(f)
            rope_q = rope_tables(q_pos, (h, w), cfg.head_dim, cfg.rope_theta)
            rope_k = rope_tables(k_pos, (h, w), cfg.head_dim, cfg.rope_theta)
            return AttentionPlan(rope_q, rope_k, None, cache)
        rope = rope_tables(torch.arange(f, device=device), (h, w), cfg.head_dim, cfg.rope_theta)
        if cfg.attention == "block_causal" and cfg.mask_window is not None:
            return AttentionPlan(rope, rope, None, None, self._windows(grid, device))
        mask = None
        if cfg.attention == "block_causal" and f > cfg.chunk_frames:
            mask = BlockCausal(f, h * w, cfg.chunk_frames)
        return AttentionPlan(rope, rope, mask, None)

    def _windows(self, grid: tuple[int, int, int], device: torch.device) -> list[ChunkWindow]:
        """Per query chunk, the frames and slot positions the KV cache would give it.

        Chunk [start, end) sees the frames the cache holds when it starts
        (``SinkWindow.held``) and itself, rotated by their index in that list - the cache's
        slots - so a windowed training pass equals cached generation at any stream length.
        """
        cfg = self.cfg
        f, h, w = grid
        policy = SinkWindow(*cfg.mask_window, cfg.chunk_frames)
        s, out = h * w, []
        for start in range(0, f, cfg.chunk_frames):
            end = min(start + cfg.chunk_frames, f)
            held = policy.held(start)
            q_pos, k_pos = policy.positions(len(held), end - start, device)
            idx = torch.tensor([*held, *range(start, end)], device=device)
            rope_k = rope_tables(k_pos, (h, w), cfg.head_dim, cfg.rope_theta)
            rope_q = rope_tables(q_pos, (h, w), cfg.head_dim, cfg.rope_theta)
            k_index = (idx[:, None] * s + torch.arange(s, device=device)).flatten()
            out.append(ChunkWindow(slice(start * s, end * s), k_index, rope_q, rope_k))
        return out

    def _check(self, x_t: Tensor, t: Tensor, cond: LipSyncCond, cache: KVCache | None) -> None:
        cfg = self.cfg
        b, c, f = x_t.shape[:3]
        if c != cfg.latent_channels:
            raise ValueError(f"x_t has {c} channels, the model expects {cfg.latent_channels}")
        if tuple(t.shape) not in {(b,), (b, f)}:
            raise ValueError(f"t of shape {tuple(t.shape)}: need ({b},) or ({b}, {f})")
        if cond.audio.shape[1] != cfg.audio_pack_frames * f:
            raise ValueError(f"cond.audio has {cond.audio.shape[1]} rows for {f} latent frames")
        if cache is not None and cfg.attention != "block_causal":
            raise ValueError("a KV cache needs a block_causal model (this one is bidirectional)")


def build_model(
    cfg: ModelConfig, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> LipSyncDiT:
    """Build on the meta device, materialise on ``device``, initialise, cast to ``dtype``.

    ``device="meta"`` returns the unmaterialised model (shapes and parameter counts only).
    """
    with torch.device("meta"):
        model = LipSyncDiT(cfg)
    if torch.device(device).type == "meta":
        return model.to(dtype)
    model = model.to_empty(device=device)
    model.init_weights()
    return model.to(dtype)


def is_lipsync_param(name: str) -> bool:
    """Parameters added to Wan 2.1: audio modules and the null context (not patch channels)."""
    return name.startswith(("audio_proj.", "audio_cond_projs.", "null_context"))


def count_params(cfg: ModelConfig) -> dict[str, int]:
    """Exact parameter counts: ``base`` (Wan 2.1 DiT with 16 input channels), ``lipsync``
    (extra patch-embedding input channels, audio modules, null context) and ``total``."""
    model = build_model(cfg, device="meta")
    total = sum(p.numel() for p in model.parameters())
    added = sum(p.numel() for n, p in model.named_parameters() if is_lipsync_param(n))
    extra_channels = cfg.in_channels - BASE_IN_CHANNELS
    added += extra_channels * cfg.dim * math.prod(cfg.patch_size)
    return {"base": total - added, "lipsync": added, "total": total}
