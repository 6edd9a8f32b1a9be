"""Frozen configuration dataclasses, one per component, and the named presets.

Design choices:
- Defaults are the paper's reference setting (Wan 2.1 1.3B student, 512x512 crops, 25 fps,
  16 kHz audio, J_LF = (0, 30), sink 1 + window 6 latent frames). See
  ``shared/spec/lip-forcing.md`` for where each number comes from.
- A preset is a function returning a :class:`PresetConfig`; variants are derived with
  ``dataclasses.replace``. Nothing is read from YAML or from global arguments.
- Derived quantities (tokens per latent frame, cache length, audio feature size) are
  properties, never separate fields, so they cannot drift from the values they derive from.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

DropMode = Literal["all", "audio"]  # CFG's unconditional branch: drop audio+reference, or audio


@dataclass(frozen=True, kw_only=True)
class AudioConfig:
    """Audio features, one window per video frame."""

    kind: Literal["mel", "wav2vec2"] = "wav2vec2"  # mel: weight-free; wav2vec2: OmniAvatar
    sample_rate: int = 16_000  # Hz, features are always computed at this rate
    fps: float = 25.0  # video frames per second the features are aligned to
    n_mels: int = 80  # mel bins (mel only)
    mel_hop: int = 160  # samples between mel frames (100 Hz at 16 kHz)
    context_frames: int = 2  # video frames of context on each side of a frame (mel only)
    wav2vec2_dim: int = 768  # hidden size of the wav2vec2 model (wav2vec2 only)
    wav2vec2_states: int = 14  # last hidden state + the 13 hidden states, concatenated

    def __post_init__(self) -> None:
        if self.sample_rate != 16_000:
            raise ValueError("features are defined at 16 kHz; resample the input instead")
        if self.fps <= 0 or self.n_mels <= 0 or self.context_frames < 0:
            raise ValueError(f"invalid audio config: {self}")

    @property
    def mel_frames_per_video_frame(self) -> int:
        return round(self.sample_rate / self.mel_hop / self.fps)

    @property
    def feature_dim(self) -> int:
        """Size of the per-video-frame feature vector."""
        if self.kind == "wav2vec2":
            return self.wav2vec2_dim * self.wav2vec2_states
        window = (2 * self.context_frames + 1) * self.mel_frames_per_video_frame
        return self.n_mels * window


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Wan 2.1 DiT with the lip-sync input channels and OmniAvatar audio conditioning."""

    dim: int = 1536  # hidden size
    ffn_dim: int = 8960  # feed-forward hidden size
    num_heads: int = 12  # attention heads (head dim = dim / num_heads)
    num_layers: int = 30  # DiT blocks
    patch_size: tuple[int, int, int] = (1, 2, 2)  # (frames, height, width) latent patch
    latent_channels: int = 16  # VAE latent channels = output channels
    freq_dim: int = 256  # sinusoidal timestep embedding size
    text_dim: int = 4096  # umT5 embedding size of the cross-attention context
    text_len: int = 512  # context tokens at Wan scale
    use_text_context: bool = True  # False: a learned null context of `null_context_len` tokens
    null_context_len: int = 4  # tokens of the learned null context (tiny preset)
    qk_norm: bool = True  # RMSNorm on queries and keys
    cross_attn_norm: bool = True  # LayerNorm (norm3) before cross-attention
    eps: float = 1e-6  # norm epsilon
    rope_theta: float = 10_000.0  # RoPE base
    audio_feature_dim: int = 10_752  # per-video-frame audio feature size (AudioConfig)
    audio_pack_dim: int = 32  # audio vector per latent frame after `audio_proj`
    audio_pack_frames: int = 4  # video frames packed into one latent frame (temporal stride)
    audio_layers: int | None = None  # blocks with audio; None = OmniAvatar's num_layers // 2 - 1
    audio_first_layer: int = 2  # first block receiving audio (OmniAvatar: blocks 2..num_layers//2)
    timestep_scale: float = 1000.0  # Wan embeds 1000 * t (its timesteps run 0..1000)
    attention: Literal["bidirectional", "block_causal"] = "bidirectional"  # teacher / student
    chunk_frames: int = 3  # latent frames per causal block (block_causal only)
    mask_window: tuple[int, int] | None = None  # (sink, window): train on the KV cache's view

    def __post_init__(self) -> None:
        if self.dim % self.num_heads:
            raise ValueError(f"dim {self.dim} not divisible by num_heads {self.num_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head dim {self.head_dim} must be even for RoPE")
        if (
            self.num_audio_layers
            and self.audio_first_layer + self.num_audio_layers > self.num_layers
        ):
            raise ValueError("audio blocks (audio_first_layer + audio layers) exceed num_layers")
        if self.mask_window is not None and self.mask_window[1] < self.chunk_frames:
            raise ValueError("mask_window's window must hold at least one chunk")
        if self.audio_first_layer < 0 or self.num_audio_layers < 0:
            raise ValueError("audio_first_layer and audio_layers must be >= 0")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def in_channels(self) -> int:
        """65 at Wan scale: noisy 16 | reference 16 | mask 1 | masked source 16 | ref seq 16."""
        return 4 * self.latent_channels + 1

    @property
    def num_audio_layers(self) -> int:
        if self.audio_layers is None:
            return max(self.num_layers // 2 - 1, 0)
        return self.audio_layers

    def tokens_per_frame(self, latent_hw: tuple[int, int]) -> int:
        """Tokens in one latent frame of spatial size ``latent_hw`` after patchify."""
        h, w = latent_hw
        return (h // self.patch_size[1]) * (w // self.patch_size[2])


@dataclass(frozen=True, kw_only=True)
class CodecConfig:
    """The latent codec a preset uses. Latents are always mean/std normalised."""

    kind: Literal["wan_vae", "taehv", "tiny"] = "wan_vae"  # encoder family
    decoder: Literal["same", "taehv"] = "taehv"  # fast decoder for streaming / reward
    latent_channels: int = 16  # channels of the latent
    spatial_stride: int = 8  # pixels per latent cell per side
    temporal_stride: int = 4  # video frames per latent frame after the first
    image_size: int = 512  # side of the square aligned crop the codec sees
    width: int = 64  # base channel width (tiny codec only)

    def __post_init__(self) -> None:
        if self.image_size % self.spatial_stride:
            raise ValueError("image_size must be a multiple of spatial_stride")

    @property
    def latent_hw(self) -> tuple[int, int]:
        s = self.image_size // self.spatial_stride
        return (s, s)

    def latent_frames(self, video_frames: int) -> int:
        """Wan's causal layout: first frame alone, then groups of ``temporal_stride``."""
        if video_frames < 1 or (video_frames - 1) % self.temporal_stride:
            raise ValueError(f"{video_frames} frames: need 1 + {self.temporal_stride} * k frames")
        return 1 + (video_frames - 1) // self.temporal_stride

    def video_frames(self, latent_frames: int) -> int:
        return 1 + self.temporal_stride * (latent_frames - 1)


@dataclass(frozen=True, kw_only=True)
class MediaConfig:
    """Face alignment, mouth mask and compositing."""

    crop_size: int = 512  # side of the canonical aligned face crop, pixels
    fps: float = 25.0  # video is conformed to this rate
    detector: Literal["dlib", "synthtalk"] = "dlib"  # dlib HOG + 68 points; synthtalk: npz
    smoothing: float = 0.6  # crop-transform smoothing, Gaussian sigma of 3*smoothing frames
    mouth_top: float = 0.55  # top of the mouth mask as a fraction of the crop height
    mouth_side: float = 0.15  # left/right margin of the mouth mask, fraction of crop width
    feather: float = 0.04  # feather width of the blending mask, fraction of crop size
    color_match: bool = False  # match the generated crop's colour statistics before pasting


@dataclass(frozen=True, kw_only=True)
class ScheduleConfig:
    """Flow-matching grid, teacher guidance and the Sync-Window CFG (spec sections 3-4, 7)."""

    num_steps: int = 50  # N of the shifted-ODE grid
    shift: float = 5.0  # grid shift
    teacher_cfg: float = 4.5  # teacher CFG scale at every step
    drop_mode: DropMode = "all"  # what the unconditional branch drops
    window_lo: float = 0.556  # Sync-Window lower bound on t (j = 40)
    window_hi: float = 0.882  # Sync-Window upper bound on t (j = 20)
    window_scale: float = 4.5  # CFG scale inside the window, 1.0 outside


@dataclass(frozen=True, kw_only=True)
class CausalConfig:
    """Chunk-wise causal student with a sink + rolling-window KV cache (spec section 6)."""

    chunk_frames: int = 3  # latent frames per chunk, denoised in parallel
    sink_frames: int = 1  # first latent frames kept forever as an attention sink
    window_frames: int = 6  # most recent latent frames kept besides the sink
    student_steps: tuple[int, ...] = (0, 30)  # grid indices J_LF of the denoising calls

    def __post_init__(self) -> None:
        if self.window_frames < self.chunk_frames:
            raise ValueError("the rolling window must hold at least one chunk")
        if list(self.student_steps) != sorted(set(self.student_steps)):
            raise ValueError("student_steps must be strictly increasing")

    @property
    def cache_frames(self) -> int:
        return self.sink_frames + self.window_frames


@dataclass(frozen=True, kw_only=True)
class PresetConfig:
    """Everything that fixes a model's shape and behaviour; stored beside every checkpoint."""

    name: str
    model: ModelConfig = field(default_factory=ModelConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    codec: CodecConfig = field(default_factory=CodecConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    causal: CausalConfig = field(default_factory=CausalConfig)

    def __post_init__(self) -> None:
        if self.model.audio_feature_dim != self.audio.feature_dim:
            raise ValueError(
                f"model.audio_feature_dim {self.model.audio_feature_dim} != "
                f"audio.feature_dim {self.audio.feature_dim}"
            )
        if self.model.latent_channels != self.codec.latent_channels:
            raise ValueError("model and codec disagree on latent channels")
        if self.model.audio_pack_frames != self.codec.temporal_stride:
            raise ValueError("audio packing must match the codec's temporal stride")
        if self.codec.image_size != self.media.crop_size:
            raise ValueError("the codec must see crops of media.crop_size")
        if self.model.chunk_frames != self.causal.chunk_frames:
            raise ValueError("model.chunk_frames must equal causal.chunk_frames")

    @property
    def latent_hw(self) -> tuple[int, int]:
        return self.codec.latent_hw

    @property
    def tokens_per_frame(self) -> int:
        return self.model.tokens_per_frame(self.latent_hw)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PresetConfig:
        """Rebuild from :meth:`to_dict` output; unknown keys are an error, not ignored."""
        parts = {
            "model": ModelConfig,
            "audio": AudioConfig,
            "codec": CodecConfig,
            "media": MediaConfig,
            "schedule": ScheduleConfig,
            "causal": CausalConfig,
        }
        kwargs: dict[str, Any] = {"name": d["name"]}
        for key, klass in parts.items():
            if key in d:
                kwargs[key] = _build(klass, d[key])
        unknown = set(d) - set(parts) - {"name"}
        if unknown:
            raise ValueError(f"unknown config sections: {sorted(unknown)}")
        return cls(**kwargs)

    def with_attention(self, attention: Literal["bidirectional", "block_causal"]) -> PresetConfig:
        """The same preset as a teacher (bidirectional) or a student (block_causal)."""
        return dataclasses.replace(self, model=dataclasses.replace(self.model, attention=attention))


def _build(klass: type, values: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(klass)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"unknown {klass.__name__} fields: {sorted(unknown)}")
    fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return klass(**fixed)


# ----------------------------------------------------------------------------- presets


def wan_1_3b() -> PresetConfig:
    """Wan 2.1 1.3B (dim 1536, ffn 8960, 12 heads, 30 layers) with OmniAvatar audio."""
    return PresetConfig(name="wan-1.3b")


def wan_14b() -> PresetConfig:
    """Wan 2.1 14B (dim 5120, ffn 13824, 40 heads, 40 layers) with OmniAvatar audio."""
    model = ModelConfig(dim=5120, ffn_dim=13_824, num_heads=40, num_layers=40)
    return PresetConfig(name="wan-14b", model=model)


def tiny() -> PresetConfig:
    """CPU scale: 128x128 crops, tiny codec (16x16x16 latents), mel audio, ~3M-param DiT."""
    audio = AudioConfig(kind="mel", n_mels=32, context_frames=2)
    model = ModelConfig(
        dim=192,
        ffn_dim=768,
        num_heads=2,
        num_layers=6,
        text_dim=64,
        text_len=4,
        use_text_context=False,
        null_context_len=4,
        audio_feature_dim=audio.feature_dim,
    )
    codec = CodecConfig(kind="tiny", decoder="same", image_size=128, width=32)
    media = MediaConfig(crop_size=128)
    # Audio-only CFG: at this scale dropping the reference too wrecks the mouth region (LPIPS
    # 0.08 -> 0.25 at s = 4.5) without raising sync; dropping audio only keeps fidelity
    # (docs/analysis/tiny/summary.md).
    schedule = ScheduleConfig(drop_mode="audio")
    return PresetConfig(
        name="tiny", model=model, audio=audio, codec=codec, media=media, schedule=schedule
    )


PRESETS = {"tiny": tiny, "wan-1.3b": wan_1_3b, "wan-14b": wan_14b}


def get_preset(name: str) -> PresetConfig:
    """Look up a preset by name, with a clear error listing the choices."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}") from None


# ----------------------------------------------------------------------------- training


@dataclass(frozen=True, kw_only=True)
class OptimConfig:
    """AdamW with linear warm-up, gradient clipping and accumulation (spec section 7)."""

    lr: float = 1e-5  # peak learning rate
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW betas
    weight_decay: float = 0.01  # AdamW decoupled weight decay
    warmup_steps: int = 1000  # optimiser steps of linear warm-up from 0 to lr
    grad_clip: float = 10.0  # max global grad norm
    batch_size: int = 64  # effective (global) batch per optimiser step
    micro_batch: int = 1  # samples per process per forward; accumulation fills the rest
    steps: int = 5000  # optimiser steps

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.steps < 0 or self.micro_batch < 1 or self.batch_size < 1:
            raise ValueError(f"invalid optimiser config: {self}")


@dataclass(frozen=True, kw_only=True)
class TeacherTrainConfig:
    """Bidirectional teacher: flow matching on masked-mouth inpainting (ours where silent)."""

    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-5, steps=5000))
    latent_frames: int = 21  # latent frames per training clip (81 video frames)
    audio_drop: float = 0.1  # probability of dropping the audio only (CFG "audio" mode)
    all_drop: float = 0.1  # probability of dropping audio + references (CFG "all" mode)
    mouth_weight: float = 1.0  # extra loss weight inside the latent mouth mask (1 = uniform)
    shift: float = 5.0  # t = shift(u), u ~ U(0, 1): Wan's shifted training-time distribution


@dataclass(frozen=True, kw_only=True)
class DiffusionForcingConfig:
    """Stage 1: per-chunk timesteps drawn from the student grid {tau_0, tau_30}."""

    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-5, steps=5000))
    latent_frames: int = 21  # latent frames per training clip (7 chunks of 3)


@dataclass(frozen=True, kw_only=True)
class DMDConfig:
    """Stage 2: Self Forcing DMD with Sync-Window CFG and the SyncNet reward (spec section 7)."""

    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(lr=2e-6, betas=(0.0, 0.999), warmup_steps=0, steps=600)
    )
    critic_lr: float = 2e-6  # fake-score critic learning rate
    critic_steps: int = 5  # critic updates per student update
    num_chunks: int = 7  # chunks per rollout (21 latent frames)
    t_min: float = 0.001  # DMD time u ~ U[t_min, t_max], t = shift(u)
    t_max: float = 0.999
    guidance: Literal["static", "window", "none"] = "window"  # teacher CFG schedule
    reward_beta: float = 2.0  # w = exp(beta * R); 0 disables the reward
    reward: bool = True  # weight the generator loss by the SyncNet reward
    drop_mode: DropMode | None = None  # teacher CFG's unconditional branch; None: the preset's


@dataclass(frozen=True, kw_only=True)
class RecipeConfig:
    """The whole chain on one preset: teacher -> Stage 1 -> Stage 2."""

    preset: str = "wan-1.3b"  # model preset name
    teacher: TeacherTrainConfig = field(default_factory=TeacherTrainConfig)
    stage1: DiffusionForcingConfig = field(default_factory=DiffusionForcingConfig)
    stage2: DMDConfig = field(default_factory=DMDConfig)


def paper_recipe() -> RecipeConfig:
    """The paper's numbers at Wan 1.3B scale."""
    return RecipeConfig()


def tiny_recipe(quick: bool = False) -> RecipeConfig:
    """CPU scale (2 shared cores): from-scratch lrs, short warm-up, batch 8, 2-chunk clips.

    Tiny models start from scratch (no Wan weights), so lrs are 10x-100x the paper's fine-tune
    values; clips of 6 latent frames (21 video frames, 2 chunks). The default schedule is sized
    for ~30-40 min on 2 cores (teacher 600, Stage 1 200, Stage 2 60 steps); ``quick`` is ~15%.
    """
    k = 0.15 if quick else 1.0
    opt = OptimConfig(lr=1e-3, warmup_steps=40, batch_size=8, micro_batch=8, steps=1)
    return RecipeConfig(
        preset="tiny",
        teacher=TeacherTrainConfig(
            optim=dataclasses.replace(opt, steps=int(600 * k)), latent_frames=6
        ),
        stage1=DiffusionForcingConfig(
            optim=dataclasses.replace(opt, lr=3e-4, warmup_steps=10, steps=int(200 * k)),
            latent_frames=6,
        ),
        stage2=DMDConfig(
            optim=dataclasses.replace(
                opt,
                lr=5e-5,
                betas=(0.0, 0.999),
                warmup_steps=0,
                batch_size=4,
                micro_batch=4,
                steps=max(int(60 * k), 3),
            ),
            critic_lr=5e-5,
            critic_steps=5,
            num_chunks=2,
            drop_mode="audio",  # see tiny(): reference-dropping CFG ruins fidelity at this scale
        ),
    )
