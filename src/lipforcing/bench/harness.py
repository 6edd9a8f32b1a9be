"""Throughput / TTFF benchmark of the teacher and of the streaming student's product engine.

The paper times one H100 "from the first VAE encode to the end of the first chunk's last VAE
decode", excluding audio preprocessing, face detection and compositing (spec section 2).

- Teacher: one clip of ``teacher_frames`` (81) video frames, encoded whole, 50 Euler steps with
  CFG 4.5 (both branches in one batched call, 50 calls of batch 2), decoded whole. Its first
  frame exists only after the whole decode, so TTFF = the clip's time; FPS = frames / time.
- Student: the product runtime itself, :class:`~lipforcing.streaming.engine.ChunkEngine` on a
  :class:`~lipforcing.streaming.pipeline.Pipeline` with the run's execution options, streaming
  ``chunks`` chunks (9 then 12 video frames) of a synthetic source (random crops inside larger
  random frames) and audio. The engine's tracer times every stage: ``features``, ``encode``,
  ``denoise_k``, ``kv_write``, ``decode``, ``paste``. Two sets of figures: ``engine_*`` are
  what a user gets (every stage), ``fps`` / ``ttff_s`` follow the paper's protocol: the
  features and paste stages, which run on the host while the device waits, are subtracted.
- Warm-up runs first (the teacher's warm-up uses one Euler step: same shapes, 1/50 of the
  time), then ``runs`` timed runs; figures are medians over runs.

Weights are random (speed does not depend on their values); presets with wav2vec2 audio get
random features of the right size (the wav2vec2 forward is not timed: the JSON says so).
"""

from __future__ import annotations

import dataclasses
import gc
import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from lipforcing.bench.timing import Clock, MemoryMeter, Stages, merge_stage_runs, summarize
from lipforcing.config import PresetConfig, get_preset
from lipforcing.streaming.options import SDPA_BACKENDS, ExecutionOptions

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
    kv_after_decode: bool = True  # decode a chunk before writing its KV entries (lower TTFF)
    kv_shortcut: bool = True  # KV write skips the last block's unused tail and the head
    paired_encode: bool = True  # masked and reference-sequence crops as one batch-2 encode
    compile: bool = False  # torch.compile the blocks' cache-free halves
    cuda_graphs: bool = False  # CUDA only: replay the steady-state chunk calls as graphs
    two_streams: bool = False  # CUDA only: codec and DiT on two CUDA streams
    interleave: bool = False  # both: build both, alternate their runs (fair on a shared CPU)
    fp8: bool = False  # CUDA sm89+ only: FP8 (e4m3) block Linears with per-tensor scales
    sdpa: str = "auto"  # SDPA backend: auto, flash, cudnn, efficient, math
    stream_threads: int | str = 1  # CPU: a step's streams split across threads ("auto": all)
    seed: int = 0
    checkpoint: str | None = None  # DiT weights (any accepted layout) instead of random ones
    adapters: tuple[str, ...] = ()  # adapters over ``checkpoint`` (OmniAvatar LoRA, deltas)

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
        if self.sdpa not in SDPA_BACKENDS:
            raise ValueError(f"unknown SDPA backend {self.sdpa!r}; {list(SDPA_BACKENDS)}")
        ExecutionOptions(stream_threads=self.stream_threads)  # >= 1 or "auto"
        if self.checkpoint is not None and self.layers is not None:
            raise ValueError("--layers: the depth of --checkpoint weights is read from the file")

    @property
    def execution(self) -> ExecutionOptions:
        """The chunk runtime's execution options asked for by this run."""
        return ExecutionOptions(
            kv_after_decode=self.kv_after_decode,
            kv_shortcut=self.kv_shortcut,
            paired_encode=self.paired_encode,
            compile=self.compile,
            cuda_graphs=self.cuda_graphs,
            two_streams=self.two_streams,
            fp8=self.fp8,
            sdpa=self.sdpa,
            stream_threads=self.stream_threads,
        )


# ----------------------------------------------------------------------------- set-up


def bench_preset(opts: BenchOptions) -> tuple[PresetConfig, str]:
    """The preset with the depth / resolution overrides, and how it relates to the paper."""
    preset = get_preset(opts.preset)
    if opts.checkpoint is not None:  # the architecture of the weights (checked, not loaded)
        from lipforcing.models.weights import resolve

        preset = dataclasses.replace(preset, model=resolve(weights_spec(opts))[1].model)
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
    causal = preset.causal
    if opts.student_steps is not None:
        causal = dataclasses.replace(causal, student_steps=tuple(opts.student_steps))
    preset = dataclasses.replace(preset, model=model, codec=codec, media=media, causal=causal)
    if changed:
        note = "reduced, NOT the paper's methodology: " + ", ".join(changed)
    elif opts.preset == "tiny":
        note = f"paper's protocol at tiny scale ({codec.image_size}x{codec.image_size} crops)"
    else:
        note = "paper's methodology (512x512, 25 fps, 81-frame teacher clip, random weights)"
    if opts.checkpoint is not None:
        note += f"; DiT weights from {opts.checkpoint}"
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
    """The preset's codec with random weights, and what it is."""
    from lipforcing.codecs import build_codec

    torch.manual_seed(opts.seed + 1)
    codec = build_codec(preset.codec).to(device=device, dtype=dtype).eval().requires_grad_(False)
    return codec, f"{preset.codec.kind} encoder + {preset.codec.decoder} decoder"


class TimedModel:
    """Calls the teacher and records each call as a ``denoise`` stage."""

    def __init__(self, model, stages: Stages) -> None:
        self.model, self.stages = model, stages
        self.cfg = getattr(model, "cfg", None)

    def __call__(self, x_t, t, cond) -> Tensor:
        with self.stages.stage("denoise"):
            return self.model(x_t, t, cond)


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
    if opts.checkpoint is not None:
        model = load_bench_dit(opts, attention, device, dtype)
    else:
        model = build_dit(preset, attention, device, dtype, opts.seed)
    codec, note = build_bench_codec(preset, opts, device, dtype)
    mask = torch.as_tensor(mouth_mask(preset.media)).to(device)
    return Setup(opts, preset, device, dtype, model, codec, note, Clock(device), mask)


def weights_spec(opts: BenchOptions):
    from pathlib import Path

    from lipforcing.models.weights import WeightsSpec

    return WeightsSpec(Path(opts.checkpoint), tuple(map(Path, opts.adapters)), family=opts.preset)


def load_bench_dit(opts: BenchOptions, attention: str, device, dtype):
    """The DiT of ``opts.checkpoint`` (+ adapters), streamed onto ``device`` in ``dtype``."""
    from lipforcing.models.weights import load_model

    loaded = load_model(weights_spec(opts), attention=attention, device=device, dtype=dtype)
    return loaded.model.eval().requires_grad_(False)


def release(setup: Setup | None) -> None:
    """Free a phase's networks before the next phase builds its own."""
    if setup is None:
        return
    setup.model = setup.codec = None
    gc.collect()
    if setup.device.type == "cuda":
        torch.cuda.empty_cache()


def check_finite(x: Tensor, what: str) -> None:
    if not bool(torch.isfinite(x.float()).all()):
        raise RuntimeError(f"{what} produced non-finite values")


def phase_summary(runs: list[dict], meter: MemoryMeter, setup: Setup) -> dict:
    """Medians over runs of FPS, TTFF (and the student's engine figures), the per-stage times,
    plus memory."""
    fps = [r["frames"] / r["total_s"] for r in runs]
    ttff = [r["ttff_s"] for r in runs]
    engine = {}
    if "engine_total_s" in runs[0]:
        engine_fps = [r["frames"] / r["engine_total_s"] for r in runs]
        engine_ttff = [r["engine_ttff_s"] for r in runs]
        engine = {
            "engine_fps": summarize(engine_fps)["median"],
            "engine_ttff_s": summarize(engine_ttff)["median"],
            "engine_fps_runs": engine_fps,
            "engine_ttff_runs": engine_ttff,
        }
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
        **engine,
    }
    assert all(math.isfinite(v) for v in fps + ttff)
    return out
