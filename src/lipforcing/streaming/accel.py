"""The execution options' machinery: SDPA pinning, compile, FP8, CUDA graphs, two CUDA streams.

Each piece changes how the student runs, never what it computes; ``streaming/options.py``
says which are exact and ``tests/streaming/test_engine_options.py`` checks each against the
plain path. The chunk runtime (``streaming/engine.py``) applies them; nothing else does.

- :func:`sdpa_backend`: pin SDPA to flash / cuDNN / memory-efficient / math kernels.
- :func:`compile_blocks`: ``torch.compile`` of each block's cache-free parts (modulated norms,
  q/k/v projections, RoPE + attention + output projection, cross-attention and FFN). The
  KV-cache bookkeeping stays eager, so there is one graph per shape, not per layer and cache
  state. Returns an undo function (a compile that fails at warm-up is taken back).
- :func:`fp8_linears`: block Linears with e4m3 weights and per-tensor scales through
  ``torch._scaled_mm`` (FP8 tensor cores on sm89+; the CPU runs the same maths slowly, which
  is what makes :class:`FP8Linear` testable here).
- :class:`CudaGraphRunner`: replays steady-state chunk calls (cache full: fixed shapes and
  slots) as CUDA graphs. UNTESTED ON A GPU in this repository (none was available): the
  capture logic (static buffers, cache snapshot while recording, bookkeeping after replay) is
  tested on the CPU through an emulated graph that replays the same calls eagerly.
- :class:`Lanes`: a codec lane and a DiT lane (two CUDA streams on CUDA, inline elsewhere).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lipforcing.models.kv_cache import CacheBatch, KVCache, KVState

log = logging.getLogger(__name__)


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


COMPILED = {"": ("attn_input", "attn_output"), "self_attn": ("qkv", "kv", "attend")}


def compile_blocks(model: nn.Module, **compile_kwargs) -> Callable[[], None]:
    """``torch.compile`` the cache-free parts of every block, in place; returns the undo."""
    kwargs = {"dynamic": False, **compile_kwargs}
    undo = []
    for block in model.blocks:
        for path, names in COMPILED.items():
            owner = block.get_submodule(path) if path else block
            for name in names:
                undo.append((owner, name))
                setattr(owner, name, torch.compile(getattr(owner, name), **kwargs))

    def restore() -> None:
        for owner, name in undo:
            owner.__dict__.pop(name, None)  # the instance attribute hid the class's method

    return restore


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

FIELDS = ("ref", "mask", "masked", "ref_seq", "audio", "context")


def _static_fields(cond) -> list[Tensor]:
    """The tensors a recorded call reads from ``cond``: the present FIELDS, then every block's
    precomputed cross-attention keys and values (``cond.context_kv``), so a replay reads the
    values of the call being replayed, not those of the recorded one."""
    fields = [f for f in (getattr(cond, n) for n in FIELDS) if f is not None]
    kv = [] if cond.context_kv is None else [a for pair in cond.context_kv for a in pair]
    return fields + kv


def _with_static_fields(cond, tensors: list[Tensor]):
    """``cond`` reading ``tensors`` (laid out as :func:`_static_fields` returns them)."""
    present = [n for n in FIELDS if getattr(cond, n) is not None]
    fields, kv = tensors[: len(present)], tensors[len(present) :]
    pairs = tuple(zip(kv[0::2], kv[1::2])) if cond.context_kv is not None else None
    return dataclasses.replace(cond, **dict(zip(present, fields)), context_kv=pairs)


def _members(cache) -> list[KVCache]:
    return cache.caches if isinstance(cache, CacheBatch) else [cache]


@dataclasses.dataclass
class _Recording:
    """A recorded call: static inputs, the static output, the replay and the cache's
    bookkeeping after the call (``advance``: frames committed)."""

    inputs: list[Tensor]
    output: Tensor | None
    replay: Callable[[], None]
    after: KVState
    advance: int


class CudaGraphRunner:
    """The student as a callable that replays steady-state chunk calls as CUDA graphs.

    UNTESTED ON A GPU (none was available when this was written). A call is graphed only when
    its cache is steady (``KVCache.steady``): then a denoising read and a KV write have fixed
    shapes and touch fixed slots, and the write's append + evict returns the cache to the same
    state. Recordings are keyed by the call kind, the input shapes and the identity of the
    cache(s) read (a graph reads fixed addresses), at most ``max_recordings`` kept. Warm-up
    calls would commit to the cache, so it is snapshotted before and restored after.
    ``emulate=True`` replays eagerly instead of through ``torch.cuda.graph`` (the CPU tests).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        emulate: bool = False,
        warmup_calls: int = 2,
        max_recordings: int = 16,
    ) -> None:
        self.model, self.cfg, self.emulate = model, model.cfg, emulate
        self.warmup_calls, self.max_recordings = warmup_calls, max_recordings
        self.recordings: OrderedDict[tuple, _Recording] = OrderedDict()
        self.pool = None

    def __call__(self, x_t, t, cond, kv_cache=None, *, update_cache: bool = False):
        kind = "write" if update_cache else "read"
        return self._run(kind, x_t, t, cond, kv_cache)

    def write_kv(self, x, t, cond, kv_cache) -> None:
        self._run("write_kv", x, t, cond, kv_cache)

    # ------------------------------------------------------------------

    def _call(self, kind: str, x_t, t, cond, cache):
        if kind == "write_kv":
            return self.model.write_kv(x_t, t, cond, cache)
        return self.model(x_t, t, cond, cache, update_cache=kind == "write")

    def _run(self, kind: str, x_t, t, cond, cache):
        members = [] if cache is None else _members(cache)
        if not members or not all(c.steady for c in members):
            return self._call(kind, x_t, t, cond, cache)
        flat = [x_t, t, *_static_fields(cond)]
        key = (kind, *(id(c) for c in members), *((tuple(a.shape), a.dtype) for a in flat))
        rec = self.recordings.get(key)
        if rec is None:
            rec = self.recordings[key] = self._record(kind, flat, cond, cache, members)
            while len(self.recordings) > self.max_recordings:
                self.recordings.popitem(last=False)
        self.recordings.move_to_end(key)
        for dst, src in zip(rec.inputs, flat):
            dst.copy_(src)
        before = [c.snapshot(tensors=False) for c in members]
        rec.replay()
        for c, b in zip(members, before):  # the kernels ran; Python's bookkeeping follows
            c.restore(dataclasses.replace(rec.after, total_frames=b.total_frames + rec.advance))
        return None if rec.output is None else rec.output.clone()

    def _call_static(self, kind: str, inputs: list[Tensor], cond, cache):
        x_t, t, *rest = inputs
        return self._call(kind, x_t, t, _with_static_fields(cond, rest), cache)

    def _record(self, kind: str, flat, cond, cache, members) -> _Recording:
        inputs = [a.clone() for a in flat]
        states = [c.snapshot() for c in members]

        def rewind() -> None:
            for c, s in zip(members, states):
                c.restore(s)

        if self.emulate:
            output = self._call_static(kind, inputs, cond, cache)
            output = None if output is None else output.clone()
            after = members[0].snapshot(tensors=False)
            rewind()

            def replay() -> None:  # eager, bookkeeping rolled back like a graph's would be
                result = self._call_static(kind, inputs, cond, cache)
                if output is not None:
                    output.copy_(result)

            return _Recording(
                inputs, output, replay, after, after.total_frames - states[0].total_frames
            )
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.warmup_calls):
                rewind()
                self._call_static(kind, inputs, cond, cache)
        torch.cuda.current_stream().wait_stream(side)
        rewind()
        graph = torch.cuda.CUDAGraph()
        # thread_local: other threads (sessions opening streams) may launch work meanwhile
        with torch.cuda.graph(graph, pool=self.pool, capture_error_mode="thread_local"):
            output = self._call_static(kind, inputs, cond, cache)
        self.pool = graph.pool()
        after = members[0].snapshot(tensors=False)
        rewind()  # capture ran the bookkeeping in Python; the kernels did not run
        log.info("cuda graph recorded (%s, %d stream(s))", kind, len(members))
        advance = after.total_frames - states[0].total_frames
        return _Recording(inputs, output, graph.replay, after, advance)


# ----------------------------------------------------------------------------- two streams


class Lanes:
    """A codec lane and a DiT lane: two CUDA streams on CUDA, inline on other devices."""

    def __init__(self, device: torch.device | None) -> None:
        self.cuda = device is not None and torch.device(device).type == "cuda"
        if self.cuda:
            self.streams = {"codec": torch.cuda.Stream(device), "dit": torch.cuda.Stream(device)}

    def on(self, lane: str):
        """Run the block's work on ``lane``, after everything queued before on the others."""
        if not self.cuda:
            return contextlib.nullcontext()
        return torch.cuda.stream(self.streams[lane])

    def signal(self, lane: str):
        if not self.cuda:
            return None
        event = torch.cuda.Event()
        event.record(self.streams[lane])
        return event

    def wait(self, lane: str, event) -> None:
        if self.cuda and event is not None:
            self.streams[lane].wait_event(event)

    def hand_over(self, tensors, lane: str) -> None:
        """Tensors made on one lane and read on ``lane``: keep their memory until it is done."""
        if self.cuda:
            for t in tensors:
                if t is not None:
                    t.record_stream(self.streams[lane])

    def start(self) -> None:
        """Both lanes start after the work queued on the current stream."""
        if self.cuda:
            for stream in self.streams.values():
                stream.wait_stream(torch.cuda.current_stream())

    def join(self) -> None:
        """The current stream waits for both lanes."""
        if self.cuda:
            for stream in self.streams.values():
                torch.cuda.current_stream().wait_stream(stream)
