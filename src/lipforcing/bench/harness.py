"""Throughput / TTFF benchmark of the teacher and the streaming student (the paper's method).

The paper times one H100 "from the first VAE encode to the end of the first chunk's last VAE
decode", excluding audio preprocessing, face detection and compositing (spec section 2). So a
run here starts at the first encode and covers, per chunk: codec encode of the mouth-masked
crops and of the reference-sequence crops, the denoising calls, the KV write and the codec
decode. Audio features are precomputed (random features of the preset's size: speed does not
depend on values), crops are random pixels, weights are random (perturbed init).

- Teacher: one clip of ``teacher_frames`` (81) video frames, encoded whole, 50 Euler steps with
  CFG 4.5 (both branches in one batched call, 50 calls of batch 2), decoded whole. Its first
  frame exists only after the whole decode, so TTFF = the clip's time; FPS = frames / time.
- Student: a stream of ``chunks`` chunks (9 then 12 video frames), stream encoders/decoder,
  two denoising calls reading the KV cache and one t = 0 call writing it. FPS = frames / stream
  time; TTFF = first encode -> end of the first chunk's decode. By default the KV write runs
  after the decode (it is only needed by the next chunk; outputs are identical).
- Warm-up runs first (the teacher's warm-up uses one Euler step: same shapes, 1/50 of the
  time), then ``runs`` timed runs; figures are medians over runs.

Without a codec (``lipforcing.codecs.build_codec`` missing or ``codec=False``) the encode and
decode stages are absent and the figures are labelled DiT-only.
"""

from __future__ import annotations

import dataclasses
import gc
import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from lipforcing.bench import optimize
from lipforcing.bench.timing import Clock, MemoryMeter, Stages, merge_stage_runs, summarize
from lipforcing.config import PresetConfig, get_preset

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
PAPER_FIGURES = {  # one H100, spec / issue: FPS, TTFF s
    "wan-1.3b": {"student_fps": 31.58, "student_ttff_s": 0.32, "teacher_fps": 1.79},
    "wan-14b": {"student_fps": 15.11, "student_ttff_s": 0.54, "teacher_fps": 0.38},
}


@dataclass(frozen=True, kw_only=True)
class BenchOptions:
    """What to measure and how; defaults are the paper's protocol on the given preset."""

    preset: str = "tiny"  # tiny, wan-1.3b, wan-14b
    mode: Literal["student", "teacher", "both"] = "both"
    device: str = "cpu"  # cpu or cuda[:i]
    dtype: Literal["fp32", "bf16"] = "fp32"  # weights, activations, KV cache and codec
    runs: int = 5  # timed runs; figures are medians
    warmup: int = 1  # untimed runs before them
    chunks: int = 20  # student stream length in chunks (9 + 12 * (chunks - 1) frames)
    teacher_frames: int = 81  # teacher clip, video frames (1 + 4k)
    teacher_steps: int | None = None  # Euler steps; None: the preset's 50
    teacher_cfg: float | None = None  # CFG scale; None: the preset's 4.5
    student_steps: tuple[int, ...] | None = None  # grid indices J; None: the preset's (0, 30)
    layers: int | None = None  # reduce DiT depth (testing the harness, not the paper's figure)
    resolution: int | None = None  # crop side in pixels instead of the preset's
    codec: bool = True  # include codec encode/decode when lipforcing.codecs provides one
    kv_after_decode: bool = True  # decode a chunk before writing its KV entries (lower TTFF)
    kv_shortcut: bool = True  # KV write skips the last block's unused tail and the head
    paired_encode: bool = True  # masked and reference-sequence crops as one batch-2 encode
    compile: bool = False  # torch.compile the blocks' cache-free halves
    cuda_graphs: bool = False  # CUDA only: replay the steady-state chunk calls as graphs
    overlap: bool = False  # codec and DiT on two CUDA streams (inline reordering on the CPU)
    interleave: bool = False  # both: build both, alternate their runs (fair on a shared CPU)
    fp8: bool = False  # CUDA sm89+ only: FP8 (e4m3) block Linears with per-tensor scales
    sdpa: str = "auto"  # SDPA backend: auto, flash, cudnn, efficient, math
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("student", "teacher", "both"):
            raise ValueError(f"unknown mode {self.mode!r}; choose student, teacher or both")
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; choose from {sorted(DTYPES)}")
        if self.runs < 1 or self.warmup < 0 or self.chunks < 1:
            raise ValueError("need runs >= 1, warmup >= 0 and chunks >= 1")
        if self.teacher_frames < 1 or (self.teacher_frames - 1) % 4:
            raise ValueError(f"teacher_frames {self.teacher_frames}: need 1 + 4k frames")
        if self.layers is not None and self.layers < 1:
            raise ValueError("layers must be >= 1")
        if self.sdpa not in optimize.SDPA_BACKENDS:
            raise ValueError(
                f"unknown SDPA backend {self.sdpa!r}; {sorted(optimize.SDPA_BACKENDS)}"
            )


# ----------------------------------------------------------------------------- set-up


def bench_preset(opts: BenchOptions) -> tuple[PresetConfig, str]:
    """The preset with the depth / resolution overrides, and how it relates to the paper."""
    preset = get_preset(opts.preset)
    model, codec, media = preset.model, preset.codec, preset.media
    changed = []
    if opts.layers is not None and opts.layers != model.num_layers:
        first = min(model.audio_first_layer, opts.layers - 1)
        model = dataclasses.replace(
            model, num_layers=opts.layers, audio_first_layer=first, audio_layers=None
        )
        model = dataclasses.replace(
            model, audio_layers=min(model.num_audio_layers, opts.layers - first)
        )
        changed.append(f"layers={opts.layers}")
    if opts.resolution is not None and opts.resolution != codec.image_size:
        if opts.resolution % (codec.spatial_stride * model.patch_size[1]):
            raise ValueError(
                f"resolution {opts.resolution} must be a multiple of "
                f"{codec.spatial_stride * model.patch_size[1]}"
            )
        codec = dataclasses.replace(codec, image_size=opts.resolution)
        media = dataclasses.replace(media, crop_size=opts.resolution)
        changed.append(f"resolution={opts.resolution}")
    preset = dataclasses.replace(preset, model=model, codec=codec, media=media)
    if changed:
        note = "reduced, NOT the paper's methodology: " + ", ".join(changed)
    elif opts.preset == "tiny":
        note = f"paper's protocol at tiny scale ({codec.image_size}x{codec.image_size} crops)"
    else:
        note = "paper's methodology (512x512, 25 fps, 81-frame teacher clip, random weights)"
    return preset, note


def build_dit(preset: PresetConfig, attention: str, device, dtype, seed: int):
    """Random DiT of the preset (init + seeded N(0, 0.02^2) perturbation so outputs vary)."""
    from lipforcing.models import build_model

    cfg = preset.with_attention(attention).model
    torch.manual_seed(seed)
    model = build_model(cfg, device=device, dtype=dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model.eval().requires_grad_(False)


def build_bench_codec(preset: PresetConfig, opts: BenchOptions, device, dtype):
    """The preset's codec with random weights, or (None, reason) when there is none."""
    if not opts.codec:
        return None, "codec disabled (--no-codec): DiT stages only"
    torch.manual_seed(opts.seed + 1)
    try:
        from lipforcing.codecs import build_codec

        codec = build_codec(preset.codec)
    except ImportError as e:
        return None, f"no {preset.codec.kind} codec available ({e}): DiT stages only"
    if isinstance(codec, torch.nn.Module):
        codec = codec.to(device=device, dtype=dtype).eval().requires_grad_(False)
    kind = f"{preset.codec.kind} encoder + {preset.codec.decoder} decoder"
    return codec, kind


class TimedModel:
    """Calls the DiT and records each call as a stage: ``denoise_k`` or ``kv_write``."""

    def __init__(self, model, stages: Stages, names: str = "chunk") -> None:
        self.model, self.stages, self.names = model, stages, names
        self.cfg = getattr(model, "cfg", None)
        self.calls = 0

    def new_chunk(self) -> None:
        self.calls = 0

    def __call__(self, x_t, t, cond, kv_cache=None, *, update_cache: bool = False) -> Tensor:
        if update_cache:
            name = "kv_write"
        elif self.names == "chunk":
            name = f"denoise_{self.calls}"
        else:
            name = "denoise"
        self.calls += 1
        with self.stages.stage(name):
            return self.model(x_t, t, cond, kv_cache, update_cache=update_cache)


@dataclass
class Setup:
    """Everything a run needs, built once per phase."""

    opts: BenchOptions
    preset: PresetConfig
    device: torch.device
    dtype: torch.dtype
    model: Any
    codec: Any
    codec_note: str
    clock: Clock
    mask: Tensor  # (S, S) crop-pixel mouth mask
    net: Any = None  # what the runs call: the model or a wrapper of it (None: the model)

    def __post_init__(self) -> None:
        if self.net is None:
            self.net = self.model

    def rand(self, *shape: int, generator: torch.Generator) -> Tensor:
        x = torch.rand(*shape, generator=generator) * 2 - 1
        return x.to(self.device, self.dtype)

    def context(self, generator: torch.Generator) -> Tensor | None:
        m = self.preset.model
        if not m.use_text_context:
            return None
        return torch.randn(1, m.text_len, m.text_dim, generator=generator).to(
            self.device, self.dtype
        )

    def encode(self, video: Tensor) -> Tensor:
        return self.codec.encode(video).to(self.dtype)

    def random_latents(self, frames: int, generator: torch.Generator) -> Tensor:
        shape = (1, self.preset.model.latent_channels, frames, *self.preset.latent_hw)
        return torch.randn(*shape, generator=generator).to(self.device, self.dtype)


def make_setup(opts: BenchOptions, attention: str) -> Setup:
    from lipforcing.media.mask import mouth_mask

    preset, _ = bench_preset(opts)
    device, dtype = torch.device(opts.device), DTYPES[opts.dtype]
    model = build_dit(preset, attention, device, dtype, opts.seed)
    if opts.fp8:
        optimize.fp8_linears(model)
    if opts.compile:
        optimize.compile_blocks(model)
    codec, note = build_bench_codec(preset, opts, device, dtype)
    mask = torch.as_tensor(mouth_mask(preset.media)).to(device)
    return Setup(opts, preset, device, dtype, model, codec, note, Clock(device), mask)


def release(setup: Setup | None) -> None:
    """Free a phase's networks before the next phase builds its own."""
    if setup is None:
        return
    setup.model = setup.codec = setup.net = None
    gc.collect()
    if setup.device.type == "cuda":
        torch.cuda.empty_cache()


def check_finite(x: Tensor, what: str) -> None:
    if not bool(torch.isfinite(x.float()).all()):
        raise RuntimeError(f"{what} produced non-finite values")


def phase_summary(runs: list[dict], meter: MemoryMeter, setup: Setup) -> dict:
    """Medians over runs of FPS, TTFF and the per-stage times, plus memory."""
    fps = [r["frames"] / r["total_s"] for r in runs]
    ttff = [r["ttff_s"] for r in runs]
    tensors = [*setup.model.parameters(), *setup.model.buffers()]  # FP8 weights are buffers
    params = sum(t.numel() * t.element_size() for t in tensors)
    out = {
        "fps": summarize(fps)["median"],
        "ttff_s": summarize(ttff)["median"],
        "total_s": summarize([r["total_s"] for r in runs])["median"],
        "frames": runs[0]["frames"],
        "fps_runs": fps,
        "ttff_runs": ttff,
        "stages_ms": merge_stage_runs([r["stages"] for r in runs]),
        "peak_memory_mb": meter.peak_mb(),
        "memory_method": meter.method,
        "weights_mb": params / 2**20,
        "codec": setup.codec_note,
    }
    assert all(math.isfinite(v) for v in fps + ttff)
    return out
