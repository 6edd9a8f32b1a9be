"""Inference speed-ups of the student (and teacher), each verified against the plain path.

Every function here changes how the DiT is executed, never what it computes; the tests in
``tests/bench`` compare each against the eager float32 path on the CPU.

- :func:`sdpa_backend`: pin SDPA to flash / cuDNN / memory-efficient / math kernels (the
  default lets PyTorch choose; on CPU only math and the CPU flash kernel exist).
- :func:`compile_blocks`: ``torch.compile`` of each block's cache-free parts (modulated
  norms, q/k/v projections, RoPE + attention + output projection, cross-attention and FFN). The
  KV-cache bookkeeping stays eager, so there is one graph per shape instead of one per layer
  and cache state.
- :func:`fp8_linears`: block Linears with e4m3 weights and per-tensor scales through
  ``torch._scaled_mm`` (an H100 runs it on FP8 tensor cores; the CPU runs the same maths
  slowly, which is what makes it testable here).
- :class:`CudaGraphStudent`: replays the steady-state chunk calls (cache full, fixed shapes)
  as CUDA graphs. UNTESTED ON A GPU in this repository (no GPU was available): the capture
  logic (static buffers, cache snapshot during warm-up, bookkeeping after replay) is tested on
  the CPU through an emulated graph that replays the same calls eagerly.

Not possible: fusing the KV write with the last denoising call. The write is a forward at
t = 0 on the clean x0_hat, the last denoising call a forward at t = tau_30 on the re-noised
latent; their keys/values differ (the input and the adaLN modulation both differ), so sharing
one forward would change every later chunk. What is exact, and done in
:func:`lipforcing.bench.runs.student_run`: running the write after the decode, out of the time
to first frame (``diffusion.causal.denoise_chunk`` / ``write_chunk``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

log = logging.getLogger(__name__)

SDPA_BACKENDS = {"auto", "flash", "cudnn", "efficient", "math"}


@contextlib.contextmanager
def sdpa_backend(name: str) -> Iterator[None]:
    """Restrict ``scaled_dot_product_attention`` to one backend (``auto``: no restriction)."""
    if name == "auto":
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backend = {
        "flash": SDPBackend.FLASH_ATTENTION,
        "cudnn": SDPBackend.CUDNN_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
        "math": SDPBackend.MATH,
    }[name]
    with sdpa_kernel([backend]):
        yield


def compile_blocks(model: nn.Module, **compile_kwargs) -> nn.Module:
    """``torch.compile`` the cache-free parts of every block, in place; returns ``model``."""
    kwargs = {"dynamic": False, **compile_kwargs}
    for block in model.blocks:
        block.attn_input = torch.compile(block.attn_input, **kwargs)
        block.attn_output = torch.compile(block.attn_output, **kwargs)
        block.self_attn.qkv = torch.compile(block.self_attn.qkv, **kwargs)
        block.self_attn.attend = torch.compile(block.self_attn.attend, **kwargs)
    return model


# ----------------------------------------------------------------------------- KV write


def write_kv_only(model: nn.Module, x0: Tensor, t: Tensor, cond, cache) -> None:
    """``model(x0, t, cond, cache, update_cache=True)`` without the work whose result the
    write discards: the last block's attention output, cross-attention and FFN, and the head.

    Mirrors ``LipSyncDiT.forward`` step for step up to the last block's keys and values (the
    tests check that the cache holds bitwise the same entries afterwards).
    """
    from einops import rearrange

    from lipforcing.models.audio import add_audio, audio_layer_index
    from lipforcing.models.dit import linear_fp32, sinusoidal_embedding

    cfg, dtype = model.cfg, model.patch_embedding.weight.dtype
    b, f = x0.shape[0], x0.shape[2]
    model._check(x0, t, cond, cache)
    x = model.patch_embedding(cond.model_inputs(x0).to(dtype))  # (B, dim, F, h', w')
    grid = tuple(x.shape[2:])
    x = rearrange(x, "b c f h w -> b (f h w) c").float()
    t_frames = t[:, None].expand(b, f) if t.dim() == 1 else t
    sin = sinusoidal_embedding(cfg.freq_dim, cfg.timestep_scale * t_frames.reshape(-1))
    e = linear_fp32(model.time_embedding[2], F.silu(linear_fp32(model.time_embedding[0], sin)))
    e0 = linear_fp32(model.time_projection[1], F.silu(e)).view(b, f, 6, cfg.dim)
    context = model.text_embedding(model._raw_context(cond, b).to(dtype))
    audio_emb = model.audio_proj(cond.audio)
    plan = model._plan(grid, cache, x.device)
    last = len(model.blocks) - 1
    for i, block in enumerate(model.blocks):
        k = audio_layer_index(cfg, i)
        if k is not None:
            x = add_audio(x, audio_emb, model.audio_cond_projs[k])
        if i < last:
            x = block(x, e0, context, plan, i)
            continue
        h, _ = block.attn_input(x, e0)
        attn = block.self_attn
        key = attn.norm_k(attn.k(h)).unflatten(2, (attn.num_heads, -1))
        value = attn.v(h).unflatten(2, (attn.num_heads, -1))
        cache.view(i, key, value)
    cache.append(f)
    cache.evict()


class KVWriteShortcut:
    """The student as a callable whose cache writes use :func:`write_kv_only` (returns None
    for them: ``diffusion.causal.write_chunk`` discards the write's output)."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.cfg = model, model.cfg

    def __call__(self, x_t, t, cond, kv_cache=None, *, update_cache: bool = False):
        if update_cache and kv_cache is not None:
            with torch.no_grad():
                write_kv_only(self.model, x_t, t, cond, kv_cache)
            return None
        return self.model(x_t, t, cond, kv_cache, update_cache=update_cache)


# ----------------------------------------------------------------------------- FP8


E4M3_MAX = 448.0  # largest finite float8_e4m3fn


def quantize_e4m3(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-tensor scaled e4m3: (x / scale).to(e4m3), scale = amax / 448 (float32 scalar)."""
    scale = (x.detach().abs().amax().float() / E4M3_MAX).clamp(min=1e-12)
    q = (x.float() / scale).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)
    return q, scale


class FP8Linear(nn.Module):
    """A Linear whose weight is stored in e4m3 and whose input is quantised per call."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight, scale = quantize_e4m3(linear.weight)
        self.register_buffer("weight_fp8", weight)  # (out, in) e4m3
        self.register_buffer("weight_scale", scale)
        bias = None if linear.bias is None else linear.bias.detach().clone()
        self.register_buffer("bias", bias)
        self.out_dtype = linear.weight.dtype
        # Blocks read ``ffn[0].weight.dtype`` as their activation dtype: an empty stand-in.
        self.register_buffer("weight", linear.weight.new_empty(0), persistent=False)
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        xq, xs = quantize_e4m3(x.reshape(-1, self.in_features))
        bias = None if self.bias is None else self.bias.to(self.out_dtype)
        y = torch._scaled_mm(
            xq,
            self.weight_fp8.t(),
            scale_a=xs,
            scale_b=self.weight_scale,
            bias=bias,
            out_dtype=self.out_dtype,
        )
        return y.reshape(*lead, self.out_features)

    def reference(self, x: Tensor) -> Tensor:
        """The same maths dequantised in float32 (the oracle of the tests)."""
        xq, xs = quantize_e4m3(x.reshape(-1, self.in_features))
        w = self.weight_fp8.float() * self.weight_scale
        bias = None if self.bias is None else self.bias.float()
        y = F.linear(xq.float() * xs, w, bias).to(self.out_dtype)
        return y.reshape(*x.shape[:-1], self.out_features)


def fp8_linears(model: nn.Module, min_features: int = 16) -> int:
    """Swap every Linear inside the DiT blocks for :class:`FP8Linear`; returns how many.

    ``_scaled_mm`` needs both dimensions divisible by 16; smaller or odd layers stay as they are.
    Embeddings, the head and the audio projections stay in the model's dtype.
    """
    swapped = 0
    for block in model.blocks:
        for child in list(block.modules()):
            for attr, sub in list(child.named_children()):
                if not isinstance(sub, nn.Linear):
                    continue
                if sub.in_features % min_features or sub.out_features % min_features:
                    continue
                setattr(child, attr, FP8Linear(sub))
                swapped += 1
    log.info("fp8: %d block Linears in e4m3", swapped)
    return swapped


# ----------------------------------------------------------------------------- CUDA graphs


class _Recording:
    """A recorded call: static inputs, the static output and how to replay it."""

    def __init__(self, inputs: list[Tensor], output: Tensor, replay: Callable[[], None]):
        self.inputs, self.output, self.replay = inputs, output, replay


def _cache_state(cache) -> tuple:
    return (cache.k.clone(), cache.v.clone(), cache.frames, cache.total_frames, cache._staged)


def _restore(cache, state: tuple) -> None:
    k, v, cache.frames, cache.total_frames, cache._staged = state
    cache.k.copy_(k)
    cache.v.copy_(v)


class CudaGraphStudent:
    """The student as a callable that replays steady-state chunk calls as CUDA graphs.

    UNTESTED ON A GPU (none was available when this was written). Calls are graphed only when
    the cache is full and in its repeating state (``frames == sink + window - chunk``): then a
    denoising call and a cache write have fixed shapes and write fixed slots, and the write's
    append + evict returns the cache to the same state. Two graphs are recorded (read, write);
    every other call runs eagerly. Recording runs warm-up calls that would commit to the cache,
    so the cache is snapshotted before and restored after. ``emulate=True`` replays eagerly
    instead of through ``torch.cuda.graph`` (the CPU tests of this logic).
    """

    def __init__(self, model: nn.Module, *, emulate: bool = False, warmup_calls: int = 2):
        self.model, self.cfg, self.emulate = model, model.cfg, emulate
        self.warmup_calls = warmup_calls
        self.recordings: dict[tuple, _Recording] = {}
        self.pool = None

    @staticmethod
    def _flat(x_t: Tensor, t: Tensor, cond) -> list[Tensor]:
        fields = [cond.ref, cond.mask, cond.masked, cond.ref_seq, cond.audio, cond.context]
        return [x_t, t, *(f for f in fields if f is not None)]

    def _steady(self, cache) -> bool:
        return cache is not None and cache.frames == cache.sink_frames + (
            cache.window_frames - cache.chunk_frames
        )

    def __call__(self, x_t, t, cond, kv_cache=None, *, update_cache: bool = False) -> Tensor:
        if not self._steady(kv_cache):
            return self.model(x_t, t, cond, kv_cache, update_cache=update_cache)
        flat = self._flat(x_t, t, cond)
        key = (update_cache, *(tuple(a.shape) for a in flat), *(a.dtype for a in flat))
        rec = self.recordings.get(key)
        if rec is None:
            rec = self.recordings[key] = self._record(x_t, t, cond, kv_cache, update_cache)
        for dst, src in zip(rec.inputs, flat):
            dst.copy_(src)
        rec.replay()
        f = x_t.shape[2]
        output = None if rec.output is None else rec.output.clone()
        if update_cache:  # the graph appended and evicted: same layout, more frames seen
            kv_cache.total_frames += f
            kv_cache._staged = 0
        else:
            kv_cache._staged = f
        return output

    def _call_static(self, inputs: list[Tensor], cond, cache, update: bool) -> Tensor:
        import dataclasses

        x_t, t, *rest = inputs
        names = [n for n in ("ref", "mask", "masked", "ref_seq", "audio", "context")]
        present = [n for n in names if getattr(cond, n) is not None]
        static_cond = dataclasses.replace(cond, **dict(zip(present, rest)))
        return self.model(x_t, t, static_cond, cache, update_cache=update)

    def _record(self, x_t, t, cond, cache, update: bool) -> _Recording:
        inputs = [a.clone() for a in self._flat(x_t, t, cond)]
        state = _cache_state(cache)
        if self.emulate:
            output = self._call_static(inputs, cond, cache, update)
            output = None if output is None else output.clone()
            _restore(cache, state)

            def replay() -> None:  # eager; Python-side cache state rolled back like a graph
                py = (cache.frames, cache.total_frames, cache._staged)
                result = self._call_static(inputs, cond, cache, update)
                if output is not None:
                    output.copy_(result)
                cache.frames, cache.total_frames, cache._staged = py

            return _Recording(inputs, output, replay)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.warmup_calls):
                _restore(cache, state)
                self._call_static(inputs, cond, cache, update)
        torch.cuda.current_stream().wait_stream(side)
        _restore(cache, state)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            output = self._call_static(inputs, cond, cache, update)
        self.pool = graph.pool()
        _restore(cache, state)  # capture ran append/evict in Python; kernels did not run
        log.info("cuda graph recorded (update_cache=%s)", update)
        return _Recording(inputs, output, graph.replay)
