"""The networks a streaming session runs: a causal student, its codec and their preset.

A :class:`Pipeline` is loaded once and shared by every session (the weights are read-only at
inference); each session owns its own KV cache, codec stream state and random generator.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from lipforcing.config import PresetConfig
from lipforcing.errors import CheckpointError

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
    ) -> Pipeline:
        """Load a student and its codec (default: ``codec.safetensors`` beside it).

        ``checkpoint`` is a path or a :class:`~lipforcing.models.weights.WeightsSpec` (any
        layout, adapters); ``decoder`` (e.g. ``taew2_1.pth``) decodes instead of the codec's own
        decoder; ``wav2vec2`` is a local wav2vec2 model directory, needed by presets with
        wav2vec2 audio.
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
        if preset.model.attention != "block_causal":
            raise CheckpointError(
                f"{spec.path.name} is a bidirectional (teacher) model; streaming needs a causal "
                "student checkpoint"
            )
        codec_cfg = preset.codec if preset.codec.kind == "wan_vae" else None
        codec_net = load_codec(codec, codec_cfg, decoder=decoder)
        pipe = cls._ready(model, codec_net, preset, device, dtype, str(spec.path))
        if preset.audio.kind == "wav2vec2":
            if wav2vec2 is None:
                raise CheckpointError(f"{spec.path.name} uses wav2vec2 audio: pass --wav2vec2 DIR")
            from lipforcing.media.audio import Wav2Vec2Features

            pipe.wav2vec2 = Wav2Vec2Features(wav2vec2, device=device)
        return pipe

    @classmethod
    def random(
        cls, preset: PresetConfig, *, seed: int = 0, device: str = "cpu", perturb: float = 0.02
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
        return cls._ready(model, codec, preset, device, torch.float32, f"random(seed={seed})")

    @classmethod
    def _ready(cls, model, codec, preset, device, dtype, name) -> Pipeline:
        device = torch.device(device)
        model = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
        codec = codec.to(device=device).eval().requires_grad_(False)
        return cls(model, codec, preset, device, dtype, name)


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
