"""The networks a streaming session runs: a causal student, its codec and their preset.

A :class:`Pipeline` is loaded once and shared by every session (the weights are read-only at
inference); each session owns its own KV cache, codec stream state and random generator.

The execution options (:class:`~lipforcing.streaming.options.ExecutionOptions`) are chosen
here, once, when the pipeline loads: :func:`~lipforcing.streaming.options.resolve` fits them to
the device (``pipeline.notes`` says what could not run as asked, and why), FP8 and compile are
applied to the model in place, and every :class:`~lipforcing.streaming.engine.ChunkEngine`
built on the pipeline runs them.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from lipforcing.config import PresetConfig
from lipforcing.errors import CheckpointError
from lipforcing.streaming.options import ExecutionOptions, resolve

log = logging.getLogger(__name__)

PASTE_MODES = ("mouth", "crop")  # MediaConfig.paste
TRAIN_HINT = "train one with `lipforcing train recipe tiny --out DIR` or pass --checkpoint PATH"


@dataclass
class Pipeline:
    """A block-causal student, the codec its latents belong to, and the preset of both."""

    model: torch.nn.Module
    codec: torch.nn.Module
    preset: PresetConfig
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float32
    checkpoint: str = "random"  # where the student came from, for reports
    wav2vec2: object | None = None  # media.audio.Wav2Vec2Features for presets with wav2vec2 audio
    options: ExecutionOptions = dataclasses.field(default_factory=ExecutionOptions)  # as run
    requested: ExecutionOptions = dataclasses.field(default_factory=ExecutionOptions)  # as asked
    notes: list[str] = dataclasses.field(default_factory=list)  # options that run otherwise
    warm: bool = False  # an engine ran its warm-up on these networks
    _undo_compile: Callable[[], None] | None = dataclasses.field(default=None, repr=False)
    context: object | None = None  # models.text.Context: the fixed text context (Wan presets)

    @classmethod
    def load(
        cls,
        checkpoint,
        codec: str | Path | None = None,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        wav2vec2: str | Path | None = None,
        decoder: str | Path | None = None,
        options: ExecutionOptions | None = None,
        context: str | Path | None = None,
        mask: str | Path | None = None,
        resolution: int | None = None,
        paste: str | None = None,
    ) -> Pipeline:
        """Load a student and its codec (default: ``codec.safetensors`` beside it).

        ``checkpoint`` is a path or a :class:`~lipforcing.models.weights.WeightsSpec` (any
        layout, adapters); ``decoder`` (e.g. ``taew2_1.pth``) decodes instead of the codec's own
        decoder; ``wav2vec2`` is a local wav2vec2 model directory, needed by presets with
        wav2vec2 audio; ``options`` the execution options (default: the exact ones);
        ``context`` a text context file (``lipforcing encode-prompt``), needed by
        text-conditioned models; ``mask`` a mouth mask image (white = keep) replacing the
        preset's drawn mask; ``resolution`` runs on crops of that side instead of the preset's;
        ``paste`` ("mouth" | "crop", ``MediaConfig.paste``) replaces the preset's paste-back.
        """
        from lipforcing.models.weights import WeightsSpec, load_model

        spec = WeightsSpec.of(checkpoint)
        if not spec.path.exists():
            raise CheckpointError(f"no student checkpoint at {spec.path}; {TRAIN_HINT}")
        codec = Path(codec) if codec is not None else spec.path.with_name("codec.safetensors")
        if not codec.exists():
            raise CheckpointError(f"no codec checkpoint at {codec}; pass --codec PATH")
        from lipforcing.codecs import load_codec

        loaded = load_model(spec, device=device, dtype=dtype, default_attention="block_causal")
        model, preset = loaded.model, loaded.preset
        preset = _adjusted(preset, mask, resolution, paste)
        if preset.model.attention != "block_causal":
            raise CheckpointError(
                f"{spec.path.name} is a bidirectional (teacher) model; streaming needs a causal "
                "student checkpoint"
            )
        text = _context(preset, context, spec.path.name)  # checked before the codec loads
        codec_cfg = preset.codec if preset.codec.kind == "wan_vae" else None
        codec_net = load_codec(codec, codec_cfg, decoder=decoder)
        pipe = cls.build(model, codec_net, preset, device=device, dtype=dtype, options=options)
        pipe.checkpoint = str(spec.path)
        if preset.audio.kind == "wav2vec2":
            if wav2vec2 is None:
                raise CheckpointError(f"{spec.path.name} uses wav2vec2 audio: pass --wav2vec2 DIR")
            from lipforcing.media.audio import Wav2Vec2Features

            pipe.wav2vec2 = Wav2Vec2Features(wav2vec2, device=device)
        pipe.context = text
        return pipe

    @classmethod
    def random(
        cls,
        preset: PresetConfig,
        *,
        seed: int = 0,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        perturb: float = 0.02,
        options: ExecutionOptions | None = None,
    ) -> Pipeline:
        """Randomly initialised student + codec of ``preset`` (tests, benchmarks of speed).

        A freshly initialised DiT predicts exactly 0 (zero-initialised gates and head), which
        would make its output ignore every condition; ``perturb`` adds seeded N(0, perturb^2)
        noise to every weight so that the output depends on the audio, the source and the
        cache, and equivalence tests can fail.
        """
        from lipforcing.codecs import build_codec
        from lipforcing.models import build_model

        preset = preset.with_attention("block_causal")
        torch.manual_seed(seed)
        model = build_model(preset.model)
        if perturb:
            with torch.no_grad():
                for param in model.parameters():
                    param.add_(perturb * torch.randn_like(param))
        torch.manual_seed(seed + 1)
        codec = build_codec(preset.codec)
        pipe = cls.build(model, codec, preset, device=device, dtype=dtype, options=options)
        pipe.checkpoint = f"random(seed={seed})"
        return pipe

    @classmethod
    def build(
        cls,
        model: torch.nn.Module,
        codec: torch.nn.Module,
        preset: PresetConfig,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        options: ExecutionOptions | None = None,
    ) -> Pipeline:
        """Move the networks to ``device`` / ``dtype`` and apply the execution options once."""
        device = torch.device(device)
        model = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
        # The codec runs in fp32 whatever ``dtype`` is: the engine hands it float32 pixels and
        # casts its latents to ``dtype`` (a bf16 codec given here is converted, as the bench's is).
        codec = codec.to(device=device, dtype=torch.float32).eval().requires_grad_(False)
        requested = options if options is not None else ExecutionOptions()
        resolved = resolve(requested, device)
        pipe = cls(model, codec, preset, device, dtype, options=resolved.options)
        pipe.requested, pipe.notes = requested, list(resolved.notes)
        for note in pipe.notes:
            log.warning("%s", note)
        pipe._apply()
        return pipe

    def _apply(self) -> None:
        from lipforcing.streaming import accel

        if self.options.fp8:
            accel.fp8_linears(self.model)
        if self.options.compile:
            self._undo_compile = accel.compile_blocks(self.model)
        if self.options.stream_threads > 1:  # the engine's threads take a core each
            from lipforcing.streaming.options import single_threaded_torch

            single_threaded_torch()
            log.info(
                "stream_threads=%d: torch runs one intra-op thread", self.options.stream_threads
            )

    def compile_failed(self, error: BaseException) -> None:
        """Take back ``compile`` after it failed (at warm-up): eager from here, with a note."""
        if self._undo_compile is not None:
            self._undo_compile()
            self._undo_compile = None
        self.options = dataclasses.replace(self.options, compile=False)
        first = str(error).splitlines()[0][:160] if str(error) else ""
        note = f"compile=on runs as compile=off: torch.compile failed ({type(error).__name__}: "
        self.notes.append(note + f"{first})")
        log.warning("%s", self.notes[-1])


def _adjusted(
    preset: PresetConfig, mask, resolution: int | None, paste: str | None = None
) -> PresetConfig:
    """The preset with a mask image, another crop size and another paste-back, when given."""
    from lipforcing.errors import UserError

    if paste is not None:
        if paste not in PASTE_MODES:
            raise UserError(f"--paste {paste}: choose from {', '.join(PASTE_MODES)}")
        preset = dataclasses.replace(preset, media=dataclasses.replace(preset.media, paste=paste))

    if mask is not None:
        from lipforcing.media.mask import mouth_mask

        media = dataclasses.replace(preset.media, mask_image=str(mask))
        mouth_mask(media)  # a missing or unreadable image fails here, before any work
        preset = dataclasses.replace(preset, media=media)
    if resolution is not None:
        try:
            preset = preset.at_resolution(resolution)
        except ValueError as e:
            raise UserError(f"--resolution: {e}") from None
    return preset


def _context(preset: PresetConfig, path, name: str):
    from lipforcing.errors import UserError

    if path is None:
        if preset.model.use_text_context:
            raise UserError(
                f"{name} is text-conditioned: pass --context FILE (lipforcing encode-prompt)"
            )
        return None
    from lipforcing.models.text import load_context

    return load_context(path, preset.model)


def shipped_checkpoint() -> Path:
    """The tiny student shipped in ``lipforcing/assets/tiny`` (CheckpointError if absent)."""
    path = Path(str(resources.files("lipforcing") / "assets" / "tiny" / "student.safetensors"))
    if not path.is_file():
        raise CheckpointError(f"the built-in checkpoint {path} is missing; {TRAIN_HINT}")
    return path


def shipped_asset(name: str) -> Path | None:
    """Path of ``lipforcing/assets/tiny/<name>`` if it is shipped, else None."""
    path = Path(str(resources.files("lipforcing") / "assets" / "tiny" / name))
    return path if path.is_file() else None
