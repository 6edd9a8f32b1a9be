"""The causal generation core shared by the streaming engine and the Self-Forcing rollout.

Per chunk (spec section 6, J_LF = (0, 30), no CFG):

1. x ~ N(0, I) at tau_{j_0}; x0_hat = x_t - t * G(x, tau_{j_0}, cache, c) (reads the cache).
2. Re-noise with fresh noise to the next grid index and predict x0 again (reads the cache).
3. Run G once on the clean x0_hat at t = 0 with ``update_cache=True``: this writes the chunk's
   keys/values into the cache, after which the oldest window frames are evicted.

The maths of steps 1-2 is :func:`lipforcing.diffusion.samplers.few_step_sample`'s: x0
prediction, then ``add_noise`` with CPU-generated noise, so results match across devices.
The grid is a :class:`~lipforcing.diffusion.schedules.ShiftedGrid` passed as data.

Step 3 as a whole forward, or (``kv_only=True``) as the model's ``write_kv`` method, which
stops at the last block's keys/values and leaves bitwise the same cache. The streaming engine
(:mod:`lipforcing.streaming.engine`) is the only caller outside training; it may run step 3
after decoding the chunk (same outputs, lower time to first frame).

Self Forcing (``grad_call``): only the call with that index runs with autograd, and the chunk's
output is *that* call's x0 prediction (later calls could not carry its gradient, so they are
skipped, as in Self-Forcing's exit step); every other call and the cache write run under
``no_grad``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lipforcing.config import CausalConfig
from lipforcing.diffusion.samplers import Generators, cpu_noise
from lipforcing.diffusion.schedules import ShiftedGrid, add_noise, x0_from_velocity
from lipforcing.models.conditioning import LipSyncCond
from lipforcing.models.kv_cache import KVCache


def _time(t: float, x: Tensor) -> Tensor:
    return torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device)


def generate_chunk(
    model: nn.Module,
    cache: KVCache,
    noise: Tensor,
    cond_chunk: LipSyncCond,
    steps: Sequence[int],
    grid: ShiftedGrid,
    generator: Generators = None,
    grad_call: int | None = None,
    *,
    kv_only: bool = False,
) -> Tensor:
    """Denoise one chunk against the cache, then write its clean keys/values.

    Args:
        model: causal DiT, ``model(x_t, t, cond, cache, update_cache=...) -> velocity`` (and
            ``model.write_kv(x, t, cond, cache)`` when ``kv_only``).
        cache: the stream's KV cache (read by the denoising calls, written by the last call).
        noise: initial state at tau_{steps[0]}, (B, C, chunk, h, w).
        cond_chunk: conditions of the chunk's frames.
        steps: grid indices of the denoising calls (the preset's ``causal.student_steps``).
        grid: the shifted grid (``ShiftedGrid.from_config(preset.schedule)``).
        generator: CPU generator of the re-noising noise (or one per batch row).
        grad_call: index into ``steps`` of the one call run with autograd (None: none).
        kv_only: write through ``model.write_kv`` (see :func:`write_chunk`).

    Returns:
        x0 prediction of the chunk, (B, C, chunk, h, w).
    """
    x0 = denoise_chunk(model, cache, noise, cond_chunk, steps, grid, generator, grad_call)
    write_chunk(model, cache, x0, cond_chunk, kv_only=kv_only)
    return x0


def denoise_chunk(
    model: nn.Module,
    cache: KVCache,
    noise: Tensor,
    cond_chunk: LipSyncCond,
    steps: Sequence[int],
    grid: ShiftedGrid,
    generator: Generators = None,
    grad_call: int | None = None,
) -> Tensor:
    """Steps 1-2 of :func:`generate_chunk`: the denoising calls, which only read the cache.

    The chunk's frames can be decoded and shown as soon as this returns; :func:`write_chunk`
    only has to run before the next chunk's first call.
    """
    taus = grid.taus
    last = len(steps) - 1 if grad_call is None else grad_call
    x, x0 = noise, noise
    for k, j in enumerate(steps[: last + 1]):
        with torch.set_grad_enabled(k == grad_call and torch.is_grad_enabled()):
            v = model(x, _time(taus[j], x), cond_chunk, cache)
            x0 = x0_from_velocity(x, v, taus[j])
        if k < last:
            eps = cpu_noise(x.shape, generator, x)
            x = add_noise(x0.detach(), eps, taus[steps[k + 1]])
    return x0


def write_chunk(
    model: nn.Module, cache: KVCache, x0: Tensor, cond_chunk: LipSyncCond, *, kv_only: bool = False
) -> None:
    """Step 3 of :func:`generate_chunk`: one no-grad call at t = 0 on the clean chunk that
    commits its keys/values to ``cache`` (then evicts).

    ``kv_only`` runs ``model.write_kv`` instead of a whole forward whose output is discarded
    (same cache entries, bitwise). The write cannot be fused with the last denoising call:
    that call sees the re-noised latent at t = tau_{j_last} > 0, so its keys/values differ.
    """
    with torch.no_grad():
        x, t = x0.detach(), _time(0.0, x0)
        if kv_only:
            model.write_kv(x, t, cond_chunk, cache)
        else:
            model(x, t, cond_chunk, cache, update_cache=True)


def rollout(
    model: nn.Module,
    cond: LipSyncCond,
    num_chunks: int,
    causal_cfg: CausalConfig,
    grid: ShiftedGrid,
    generator: torch.Generator | None = None,
    *,
    noise: Tensor | None = None,
    grad_call: int | None = None,
) -> Tensor:
    """Generate ``num_chunks`` chunks in order with a fresh cache (training and evaluation).

    Args:
        model: causal DiT with a ``cfg`` (:class:`ModelConfig`) attribute.
        cond: conditions of all ``num_chunks * chunk_frames`` latent frames.
        num_chunks: chunks to generate.
        causal_cfg: chunk size, sink, window and the student's grid indices.
        grid: the shifted grid.
        generator: CPU generator for the initial and the re-noising noise.
        noise: optional initial noise for all frames (B, C, F, h, w) instead of ``generator``.
        grad_call: see :func:`generate_chunk`; applies to every chunk.

    Returns:
        The generated clean latents, (B, C, num_chunks * chunk_frames, h, w).
    """
    n = causal_cfg.chunk_frames
    if cond.num_frames < num_chunks * n:
        raise ValueError(
            f"cond has {cond.num_frames} frames; {num_chunks} chunks need {num_chunks * n}"
        )
    like = cond.masked
    param = next(model.parameters())
    b, h, w = like.shape[0], like.shape[-2], like.shape[-1]
    cache = KVCache.allocate(
        model.cfg, b, (h, w), causal_cfg, device=param.device, dtype=param.dtype
    )
    shape = (b, model.cfg.latent_channels, n, h, w)
    out = []
    for c in range(num_chunks):
        frames = slice(c * n, (c + 1) * n)
        eps = noise[:, :, frames] if noise is not None else cpu_noise(shape, generator, like)
        chunk = cond.frames(frames.start, frames.stop)
        steps = causal_cfg.student_steps
        out.append(generate_chunk(model, cache, eps, chunk, steps, grid, generator, grad_call))
    return torch.cat(out, dim=2)
