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

# CFG's unconditional branch: "all" (paper: audio + references), "audio", or "release" (the
# official release's full drop: negative prompt + zero audio; see models/conditioning.py)
DropMode = Literal["all", "audio", "release"]


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
    # Offline wav2vec2 features: "window" (each chunk's window with `stream_margin` frames of
    # context, as live streaming must) or "whole" (the release: the whole clip at once).
    offline_features: Literal["window", "whole"] = "window"
    stream_margin: int = 25  # video frames of audio context each side of a streamed chunk

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
    # Mouth mask geometry: "rectangle" (ours) or "latentsync" (the release's LatentSync shape,
    # reduced to the latent grid bilinearly at 0.5 as the release does); see media/mask.py.
    mask_style: Literal["rectangle", "latentsync"] = "rectangle"
    mask_image: str | None = None  # a mask image (white = keep) instead of the drawn shape
    # Alignment: "arcface5" (5-point ArcFace template scaled 0.65, ours) or "latentsync3" (the
    # release's 3-point eyebrows + nose fit onto LatentSync's template); see media/align.py.
    align: Literal["arcface5", "latentsync3"] = "arcface5"
    # Reference sequence of a generated chunk: "half_period" (ours: source crops half a
    # ping-pong period away, so the replaced mouth never leaks) or "same_frames" (the release:
    # the unmasked latents of the very source frames being re-mouthed).
    reference: Literal["half_period", "same_frames"] = "half_period"
    # Paste-back: "mouth" (the feathered mouth region, the rest of the frame bit for bit; ours
    # and the release's default) or "crop" (the whole generated crop with LatentSync's
    # AlignRestore soft edge: the release's --composite_full_face); see media/composite.py.
    paste: Literal["mouth", "crop"] = "mouth"


@dataclass(frozen=True, kw_only=True)
class ScheduleConfig:
    """Flow-matching grid, teacher guidance and the Sync-Window CFG (spec sections 3-4, 7)."""

    num_steps: int = 50  # N of the shifted-ODE grid
    shift: float = 5.0  # grid shift
    teacher_cfg: float = 4.5  # teacher CFG scale at every step
    drop_mode: DropMode = "all"  # what the unconditional branch drops
    window_steps: tuple[int, int] = (20, 40)  # Sync-Window: grid steps j in [20, 40]
    window_scale: float = 4.5  # CFG scale inside the window, 1.0 outside

    def __post_init__(self) -> None:
        if not 0 <= self.window_steps[0] <= self.window_steps[1]:
            raise ValueError(f"window_steps {self.window_steps}: need 0 <= first <= last")

    def tau(self, j: int) -> float:
        """Grid time tau_j of the shifted grid (``diffusion.schedules.shifted_timesteps``)."""
        from lipforcing.diffusion.schedules import shifted_timesteps

        if not 0 <= j <= self.num_steps:
            raise ValueError(f"grid step {j} is outside the {self.num_steps}-step grid")
        return float(shifted_timesteps(self.num_steps, self.shift)[j])

    @property
    def window_lo(self) -> float:
        """Lower bound on t of the Sync-Window: tau at its last step (tau_40 = 0.5556)."""
        return self.tau(self.window_steps[1])

    @property
    def window_hi(self) -> float:
        """Upper bound on t of the Sync-Window: tau at its first step (tau_20 = 0.8824)."""
        return self.tau(self.window_steps[0])


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
        # The model's input sizes are derived from the sections that define them (audio
        # features, codec latents and stride, causal chunks), never set twice.
        derived = dataclasses.replace(
            self.model,
            audio_feature_dim=self.audio.feature_dim,
            latent_channels=self.codec.latent_channels,
            audio_pack_frames=self.codec.temporal_stride,
            chunk_frames=self.causal.chunk_frames,
        )
        object.__setattr__(self, "model", derived)
        if self.codec.image_size != self.media.crop_size:
            raise ValueError("the codec must see crops of media.crop_size")

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

    def at_resolution(self, size: int) -> PresetConfig:
        """The same preset on aligned crops of ``size`` pixels (the DiT and codecs are
        resolution-agnostic; the models were trained at ``media.crop_size``)."""
        step = self.codec.spatial_stride * self.model.patch_size[1]
        if size < step or size % step:
            raise ValueError(f"resolution {size}: need a positive multiple of {step} pixels")
        return dataclasses.replace(
            self,
            media=dataclasses.replace(self.media, crop_size=size),
            codec=dataclasses.replace(self.codec, image_size=size),
        )

    def with_attention(self, attention: Literal["bidirectional", "block_causal"]) -> PresetConfig:
        """The same preset as a teacher (bidirectional) or a student (block_causal)."""
        return dataclasses.replace(self, model=dataclasses.replace(self.model, attention=attention))


# Fields older checkpoints stored that are now derived (ignored when reading them).
DERIVED_FIELDS = {"ScheduleConfig": {"window_lo", "window_hi"}}


def _build(klass: type, values: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(klass)}
    values = {k: v for k, v in values.items() if k not in DERIVED_FIELDS.get(klass.__name__, ())}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"unknown {klass.__name__} fields: {sorted(unknown)}")
    fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return klass(**fixed)


# ----------------------------------------------------------------------------- presets


# The released model's input distribution (mask, alignment), used by both Wan-scale presets.
RELEASE_MEDIA = MediaConfig(mask_style="latentsync", align="latentsync3", reference="same_frames")
RELEASE_AUDIO = AudioConfig(offline_features="whole")  # wav2vec2 of the whole clip offline


def wan_1_3b() -> PresetConfig:
    """Wan 2.1 1.3B (dim 1536, ffn 8960, 12 heads, 30 layers) with OmniAvatar audio."""
    return PresetConfig(name="wan-1.3b", media=RELEASE_MEDIA, audio=RELEASE_AUDIO)


def wan_14b() -> PresetConfig:
    """Wan 2.1 14B (dim 5120, ffn 13824, 40 heads, 40 layers) with OmniAvatar audio."""
    model = ModelConfig(dim=5120, ffn_dim=13_824, num_heads=40, num_layers=40)
    return PresetConfig(name="wan-14b", model=model, media=RELEASE_MEDIA, audio=RELEASE_AUDIO)


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

# Training references (issue: paper vs release). "random" (ours): the reference frame and the
# reference sequence come from other, non-overlapping times of the clip (drawn once per window
# when the latent cache is built). "window_first" (release): the reference frame is the first
# latent frame of the ground-truth window itself; the reference sequence is the cache's fixed
# other segment.
References = Literal["random", "window_first"]


@dataclass(frozen=True, kw_only=True)
class OptimConfig:
    """AdamW with linear warm-up and gradient accumulation (spec section 7)."""

    lr: float = 1e-5  # peak learning rate
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW betas
    weight_decay: float = 0.01  # AdamW decoupled weight decay
    warmup_steps: int = 1000  # optimiser steps of linear warm-up from 0 to lr
    grad_clip: float = 10.0  # max global grad norm
    batch_size: int = 64  # effective (global) batch per optimiser step
    micro_batch: int = 1  # samples per process per forward; accumulation fills the rest
    steps: int = 5000  # optimiser steps (Stage 2: see DMDConfig.steps_unit)

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.steps < 0 or self.micro_batch < 1 or self.batch_size < 1:
            raise ValueError(f"invalid optimiser config: {self}")
        if self.batch_size % self.micro_batch:
            raise ValueError(
                f"batch size {self.batch_size} is not a multiple of micro-batch {self.micro_batch}"
            )


@dataclass(frozen=True, kw_only=True)
class LoraConfig:
    """PEFT LoRA on every block's attention q, k, v, o (self and cross) and ffn.0 / ffn.2; the
    audio projections and the patch embedding train in full, every other weight is frozen
    (paper section 6; the release's 14B student and critic)."""

    rank: int = 128  # LoRA rank r
    alpha: float = 64.0  # LoRA alpha: the update is (alpha / r) B A

    def __post_init__(self) -> None:
        if self.rank < 1 or self.alpha <= 0:
            raise ValueError(f"invalid LoRA config: {self}")


@dataclass(frozen=True, kw_only=True)
class RewardConfig:
    """The SyncNet reward weighting the Stage-2 generator loss: w = exp(beta * R)."""

    beta: float = 2.0  # w = exp(beta * R)
    score: Literal["sync_c", "at_zero"] = "sync_c"  # R: raw Sync-C = median - min of the
    # per-shift mean distances (paper, release); at_zero: median - distance at shift 0 (ours:
    # rewards sync at offset 0, not merely a confident mouth)
    vshift: int = 15  # audio shifts searched each side, video frames (release: 15)
    centre: bool = False  # subtract a running mean of R (release switch, off by default)
    centre_momentum: float = 0.9  # running mean m <- momentum * m + (1 - momentum) * mean R
    clamp: tuple[float, float] | None = None  # clamp R (after centring) to [lo, hi]
    normalise: Literal["per_sample", "self_normalised"] = "per_sample"  # loss mean_i w_i L_i,
    # or sum_i w_i L_i / sum_j w_j over the micro-batch (the release's two modes)

    def __post_init__(self) -> None:
        if self.vshift < 0 or not 0.0 <= self.centre_momentum < 1.0:
            raise ValueError(f"invalid reward config: {self}")
        if self.clamp is not None and self.clamp[0] > self.clamp[1]:
            raise ValueError(f"reward clamp {self.clamp}: need lo <= hi")


@dataclass(frozen=True, kw_only=True)
class TeacherTrainConfig:
    """Bidirectional teacher: flow matching on masked-mouth inpainting (ours where silent)."""

    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-5, steps=5000))
    latent_frames: int = 21  # latent frames per training clip (81 video frames)
    audio_drop: float = 0.1  # probability of dropping the audio only (CFG "audio" mode)
    all_drop: float = 0.1  # probability of dropping audio + references (CFG "all" mode)
    mouth_weight: float = 1.0  # extra loss weight inside the latent mouth mask (1 = uniform)
    shift: float = 5.0  # t = shift(u), u ~ U(0, 1): Wan's shifted training-time distribution
    references: References = "random"  # see References
    recompute: bool = False  # recompute block activations in the backward (memory for time)


@dataclass(frozen=True, kw_only=True)
class DiffusionForcingConfig:
    """Stage 1: per-chunk timesteps, the block-causal student regresses the clean signal."""

    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-5, steps=5000))
    latent_frames: int = 21  # latent frames per training clip (7 chunks of 3)
    references: References = "random"  # see References
    times: Literal["grid", "grid_and_clean"] = "grid"  # per-chunk t: from {tau_j : j in
    # student_steps} (paper); grid_and_clean: the release's t-list, the grid capped at
    # DMDConfig.t_max plus t = 0, so a third of the chunks are clean context
    loss: Literal["velocity", "x0"] = "velocity"  # paper: flow-matching velocity MSE;
    # release: 0.5 MSE of the x0 prediction
    attention_windows: tuple[tuple[int, int], ...] = ()  # (sink, window) latent frames, one
    # drawn uniformly per step, applied through the block-causal mask; () = full block-causal
    # (paper). Release: (1, 6), (1, 9), (1, 12), (3, 6), (3, 9)
    lora: LoraConfig | None = None  # None: full fine-tune
    ema: float | None = None  # EMA decay of the student (release: none in Stage 1)
    recompute: bool = False  # recompute block activations in the backward (memory for time)

    def __post_init__(self) -> None:
        for sink, window in self.attention_windows:
            if sink < 0 or window < 1:
                raise ValueError(f"attention window {(sink, window)}: need sink >= 0, window >= 1")


@dataclass(frozen=True, kw_only=True)
class DMDConfig:
    """Stage 2: Self Forcing DMD with Sync-Window CFG and the SyncNet reward (spec section 7)."""

    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(lr=2e-6, betas=(0.0, 0.999), warmup_steps=0, steps=600)
    )
    steps_unit: Literal["student", "iteration"] = "student"  # what optim.steps counts. student
    # (paper): 600 student updates, each after critic_steps critic updates; iteration
    # (release): 600 loop iterations, the student updated on every (critic_steps + 1)-th
    # starting with the first (release: 120 student, 480 critic updates)
    critic_lr: float = 2e-6  # fake-score critic learning rate
    critic_steps: int = 5  # critic updates per student update
    critic_loss: Literal["velocity", "x0_exit"] = "velocity"  # paper (as we read it):
    # flow-matching velocity loss on a full two-call rollout; x0_exit (release): MSE of the
    # critic's x0 prediction (= velocity loss weighted by t^2) on a rollout exiting at a
    # random call j*, as the generator's does
    critic_scale: Literal["student", "teacher"] = "student"  # the width the critic's init
    # weights must have (paper: the critic starts from student-scale base weights)
    num_chunks: int = 7  # chunks per rollout (21 latent frames)
    t_min: float = 0.001  # DMD time u ~ U[t_min, t_max], t = shift(u)
    t_max: float = 0.999
    guidance: Literal["static", "window", "none"] = "window"  # teacher CFG schedule
    reward: RewardConfig | None = field(default_factory=RewardConfig)  # None: no reward
    drop_mode: DropMode | None = None  # teacher CFG's unconditional branch; None: the preset's
    references: References = "random"  # see References
    lora: LoraConfig | None = None  # LoRA on student and critic; None: full fine-tune
    ema: float | None = 0.9999  # EMA decay of the student, saved beside it (release 0.9999)
    recompute: bool = False  # recompute the critic's block activations in the backward (the
    # student's calls read a KV cache that later chunks change: never recomputed)

    def __post_init__(self) -> None:
        if self.critic_steps < 0 or self.num_chunks < 1:
            raise ValueError(f"invalid DMD config: critic_steps {self.critic_steps}")

    @property
    def roles(self) -> tuple[str, ...]:
        """The trainee of each iteration, repeating (see ``steps_unit``)."""
        critic = ("critic",) * self.critic_steps
        return ("student", *critic) if self.steps_unit == "iteration" else (*critic, "student")

    @property
    def iterations(self) -> int:
        """Loop iterations of the stage (student and critic updates together)."""
        if self.steps_unit == "iteration":
            return self.optim.steps
        return self.optim.steps * len(self.roles)


@dataclass(frozen=True, kw_only=True)
class RecipeConfig:
    """The whole chain on one preset: teacher -> Stage 1 -> Stage 2."""

    preset: str = "wan-1.3b"  # preset of the student (and of the teacher `train teacher` builds)
    teacher: TeacherTrainConfig = field(default_factory=TeacherTrainConfig)
    stage1: DiffusionForcingConfig = field(default_factory=DiffusionForcingConfig)
    stage2: DMDConfig = field(default_factory=DMDConfig)


# ----------------------------------------------------------------------------- recipes


def paper_recipe() -> RecipeConfig:
    """The paper's numbers, 1.3B student (fully fine-tuned), effective batch 64 both stages."""
    return RecipeConfig(
        teacher=TeacherTrainConfig(recompute=True),
        stage1=DiffusionForcingConfig(recompute=True),
        stage2=DMDConfig(recompute=True),
    )


def paper_14b_recipe() -> RecipeConfig:
    """The paper's numbers with the 14B student and critic under LoRA 128 / 64."""
    rc = paper_recipe()
    lora = LoraConfig()
    return dataclasses.replace(
        rc,
        preset="wan-14b",
        stage1=dataclasses.replace(rc.stage1, lora=lora),
        stage2=dataclasses.replace(rc.stage2, lora=lora),
    )


RELEASE_WINDOWS = ((1, 6), (1, 9), (1, 12), (3, 6), (3, 9))  # config_df stochastic_attn_configs


def _release_stage1(batch: int, micro: int, lora: LoraConfig | None) -> DiffusionForcingConfig:
    """Stage 1 of the release (config_df.py): lr 1e-5, no warm-up, 5000 iterations."""
    optim = OptimConfig(lr=1e-5, warmup_steps=0, batch_size=batch, micro_batch=micro, steps=5000)
    return DiffusionForcingConfig(
        optim=optim,
        references="window_first",
        times="grid_and_clean",
        loss="x0",
        attention_windows=RELEASE_WINDOWS,
        lora=lora,
        recompute=True,
    )


def _release_stage2(batch: int, micro: int, lora: LoraConfig | None) -> DMDConfig:
    """Stage 2 of the release (config_sf.py): 600 iterations, student every 5th, lr 2e-6 for
    both, betas (0, 0.999), EMA 0.9999, x0 critic, SyncNet-v2 Sync-C reward, beta 2, the
    teacher's CFG with the release's full drop (negative prompt, zero audio)."""
    optim = OptimConfig(
        lr=2e-6, betas=(0.0, 0.999), warmup_steps=0, batch_size=batch, micro_batch=micro, steps=600
    )
    return DMDConfig(
        optim=optim,
        steps_unit="iteration",
        critic_steps=4,
        critic_loss="x0_exit",
        references="window_first",
        drop_mode="release",  # the teacher's CFG drops as the release does (negative prompt)
        lora=lora,
        ema=0.9999,
        recompute=True,
    )


def release_1_3b_recipe() -> RecipeConfig:
    """The release's 1.3B settings: Stage 1 batch 8 (2 per GPU x 4 GPUs), Stage 2 batch 64
    (8 per GPU x 4 GPUs x 2 accumulation rounds), full fine-tune, 14B teacher."""
    return RecipeConfig(
        preset="wan-1.3b", stage1=_release_stage1(8, 2, None), stage2=_release_stage2(64, 8, None)
    )


def release_14b_recipe() -> RecipeConfig:
    """The release's 14B settings (scripts/train_stage{1_df,2_sf}.sh): Stage 1 batch 16
    (2 x 4 GPUs x 2 rounds), Stage 2 batch 16 (1 x 4 GPUs x 4 rounds), LoRA 128 / 64 on
    student and critic."""
    lora = LoraConfig()
    return RecipeConfig(
        preset="wan-14b", stage1=_release_stage1(16, 2, lora), stage2=_release_stage2(16, 1, lora)
    )


def tiny_recipe(quick: bool = False) -> RecipeConfig:
    """CPU scale (2 shared cores): from-scratch lrs, short warm-up, batch 8, 2-chunk clips.

    Tiny models start from scratch (no Wan weights), so lrs are 10x-100x the paper's fine-tune
    values; clips of 6 latent frames (21 video frames, 2 chunks). The default schedule is sized
    for ~30-40 min on 2 cores (teacher 600, Stage 1 200, Stage 2 60 steps); ``quick`` is ~15%.
    The reward is our confidence at shift 0 over +-6 shifts (21-frame windows).
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
            reward=RewardConfig(score="at_zero", vshift=6),
        ),
    )


RECIPES = {
    "paper": paper_recipe,
    "paper-14b": paper_14b_recipe,
    "release-1.3b": release_1_3b_recipe,
    "release-14b": release_14b_recipe,
    "tiny": tiny_recipe,
    "tiny-quick": lambda: tiny_recipe(quick=True),
}


def get_recipe(name: str) -> RecipeConfig:
    """Look up a recipe by name, with a clear error listing the choices."""
    try:
        return RECIPES[name]()
    except KeyError:
        raise ValueError(f"unknown recipe {name!r}; choose from {sorted(RECIPES)}") from None


def with_overrides(
    cfg, steps: int | None = None, batch_size: int | None = None, micro_batch: int | None = None
):
    """A stage config with its optimiser's steps / batch size / micro-batch replaced (CLI)."""
    changes = {"steps": steps, "batch_size": batch_size, "micro_batch": micro_batch}
    changes = {k: v for k, v in changes.items() if v is not None}
    return dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, **changes))
