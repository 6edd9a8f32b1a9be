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
  ``diffusion/causal.py``).
- Built on the meta device, materialised with ``to_empty`` and initialised by one
  :meth:`LipSyncDiT.init_weights`. New lip-sync paths (audio projections) and the adaLN gates
  and output head start at zero, so a fresh model predicts zero velocity.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from lipforcing.config import ModelConfig
from lipforcing.models.attention import BlockCausal
from lipforcing.models.audio import add_audio, audio_layer_index, build_audio_modules
from lipforcing.models.blocks import AttentionPlan, ChunkWindow, DiTBlock, Head
from lipforcing.models.conditioning import LipSyncCond
from lipforcing.models.kv_cache import KVCache
from lipforcing.models.rope import rope_tables

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
        cfg, dtype = self.cfg, self.patch_embedding.weight.dtype
        b, f = x_t.shape[0], x_t.shape[2]
        self._check(x_t, t, cond, kv_cache)
        x = self.patch_embedding(cond.model_inputs(x_t).to(dtype))  # (B, dim, F, h', w')
        grid = tuple(x.shape[2:])
        x = rearrange(x, "b c f h w -> b (f h w) c").float()  # residual stream in fp32
        # 1. Per-frame time embedding e (B, F, dim) and modulation e0 (B, F, 6, dim), fp32.
        t_frames = t[:, None].expand(b, f) if t.dim() == 1 else t
        sin = sinusoidal_embedding(cfg.freq_dim, cfg.timestep_scale * t_frames.reshape(-1))
        e = linear_fp32(self.time_embedding[2], F.silu(linear_fp32(self.time_embedding[0], sin)))
        e0 = linear_fp32(self.time_projection[1], F.silu(e)).view(b, f, 6, cfg.dim)
        e = e.view(b, f, cfg.dim)
        # 2. Context, audio and the attention plan shared by all blocks.
        context = self.text_embedding(self._raw_context(cond, b).to(dtype))
        audio_emb = self.audio_proj(cond.audio)  # (B, F, pack_dim) fp32
        plan = self._plan(grid, kv_cache, x.device)
        # 3. Blocks, audio added before the OmniAvatar audio blocks.
        for i, block in enumerate(self.blocks):
            k = audio_layer_index(cfg, i)
            if k is not None:
                x = add_audio(x, audio_emb, self.audio_cond_projs[k])
            x = block(x, e0, context, plan, i)
        out = self.head(x, e)  # (B, L, prod(patch) * C)
        if kv_cache is not None and update_cache:
            kv_cache.append(f)
            kv_cache.evict()
        return self.unpatchify(out, grid).to(x_t.dtype)

    def unpatchify(self, x: Tensor, grid: tuple[int, int, int]) -> Tensor:
        """(B, f*h*w, p*q*r*C) -> (B, C, f*p, h*q, w*r), Wan's patch layout."""
        p, q, r = self.cfg.patch_size
        f, h, w = grid
        return rearrange(
            x, "b (f h w) (p q r c) -> b c (f p) (h q) (w r)", f=f, h=h, w=w, p=p, q=q, r=r
        )

    def _raw_context(self, cond: LipSyncCond, batch: int) -> Tensor:
        """(B, text_len or null_context_len, text_dim) before ``text_embedding``."""
        cfg = self.cfg
        if not cfg.use_text_context:
            if cond.context is not None:
                raise ValueError(
                    "this model uses a learned null context; cond.context must be None"
                )
            return self.null_context.expand(batch, -1, -1)
        if cond.context is None:
            raise ValueError(f"this model needs cond.context (B, L<={cfg.text_len}, text_dim)")
        ctx = cond.context
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

        Chunk [start, end) sees the sink frames [0, sink) and the frames [end - window, end),
        rotated by their index in that list - the cache's slots - so a windowed training pass
        equals cached generation at any stream length.
        """
        cfg = self.cfg
        f, h, w = grid
        sink, window = cfg.mask_window
        s, out = h * w, []
        for start in range(0, f, cfg.chunk_frames):
            end = min(start + cfg.chunk_frames, f)
            frames = [*range(min(sink, end)), *range(max(sink, end - window), end)]
            idx = torch.tensor(frames, device=device)
            slots = torch.arange(len(frames), device=device)
            rope_k = rope_tables(slots, (h, w), cfg.head_dim, cfg.rope_theta)
            rope_q = rope_tables(slots[start - end :], (h, w), cfg.head_dim, cfg.rope_theta)
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
