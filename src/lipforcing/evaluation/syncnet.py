"""Audio-visual sync networks: syncnet_python's SyncNetV2 and our own LipSyncNet.

Both expose one small interface used by :mod:`lipforcing.evaluation.sync`:

- ``video_windows(video) -> (N, D)``: one embedding per 5-frame window of a clip,
  ``video`` (3, T, S, S) float in [-1, 1] (aligned face crops), N = T - 4, window i covers
  frames i .. i + 4.
- ``audio_windows(audio, num_frames) -> (N', D)``: one embedding per audio window aligned to
  the same video windows (window i <-> video window i).
- ``normalised``: whether embeddings are L2-normalised (ours) or raw (SyncNetV2).

Design choices:
- SyncNetV2 follows syncnet_python's ``SyncNetModel.S`` layer for layer (names netcnnaud,
  netfcaud, netcnnlip, netfclip) so ``syncnet_v2.model`` loads by name. Its video input is the
  224x224 face crop in BGR pixel values 0..255, its audio input 13 MFCCs at 100 Hz of the
  int16-scale samples, 20 steps (0.2 s) per window starting at MFCC step 4 i (25 fps)
  (:func:`syncnet_v2_audio_input`). Weights only come from a user path.
- LipSyncNet sees the lower half of the aligned crop (the mouth), resized to 48x96, the 5
  frames stacked as 15 channels; its audio input is the per-video-frame log-mel window of
  :func:`lipforcing.media.audio.mel_windows` (n_mels x 20 steps = 0.2 s, centred on the frame),
  so window i pairs with the audio feature of its centre frame i + 2. Embeddings are
  L2-normalised; training is contrastive (``lipforcing train syncnet``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lipforcing.errors import CheckpointError

WINDOW = 5  # video frames per sync window (0.2 s at 25 fps)


def _bn_relu_2d(cin: int, cout: int, k, s=1, p=0) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, s, p), nn.BatchNorm2d(cout), nn.ReLU()]


def _bn_relu_3d(cin: int, cout: int, k, s=1, p=0) -> list[nn.Module]:
    return [nn.Conv3d(cin, cout, k, s, p), nn.BatchNorm3d(cout), nn.ReLU()]


def _head(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, dim))


class SyncNetV2(nn.Module):
    """syncnet_python's SyncNet (``SyncNetModel.S``); load weights with :func:`load_syncnet_v2`."""

    normalised = False
    name = "SyncNetV2 (syncnet_python)"

    def __init__(self, embed_dim: int = 1024) -> None:
        super().__init__()
        self.netcnnaud = nn.Sequential(
            *_bn_relu_2d(1, 64, 3, 1, 1),
            nn.MaxPool2d(1, 1),
            *_bn_relu_2d(64, 192, 3, 1, 1),
            nn.MaxPool2d(3, (1, 2)),
            *_bn_relu_2d(192, 384, 3, 1, 1),
            *_bn_relu_2d(384, 256, 3, 1, 1),
            *_bn_relu_2d(256, 256, 3, 1, 1),
            nn.MaxPool2d(3, 2),
            *_bn_relu_2d(256, 512, (5, 4)),
        )
        self.netfcaud = _head(embed_dim)
        self.netfclip = _head(embed_dim)
        self.netcnnlip = nn.Sequential(
            *_bn_relu_3d(3, 96, (5, 7, 7), (1, 2, 2)),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            *_bn_relu_3d(96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            *_bn_relu_3d(256, 256, (1, 3, 3), 1, (0, 1, 1)),
            *_bn_relu_3d(256, 256, (1, 3, 3), 1, (0, 1, 1)),
            *_bn_relu_3d(256, 256, (1, 3, 3), 1, (0, 1, 1)),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            *_bn_relu_3d(256, 512, (1, 6, 6)),
        )

    def forward_aud(self, mfcc: Tensor) -> Tensor:
        """(N, 1, 13, 20) MFCC windows -> (N, D)."""
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))

    def forward_lip(self, clip: Tensor) -> Tensor:
        """(N, 3, 5, 224, 224) BGR 0..255 -> (N, D)."""
        return self.netfclip(self.netcnnlip(clip).flatten(1))

    def video_windows(self, video: Tensor, batch: int = 20) -> Tensor:
        x = F.interpolate(video.transpose(0, 1), size=(224, 224), mode="bilinear")  # (T,3,..)
        x = ((x.flip(1) + 1) * 127.5).transpose(0, 1)  # RGB [-1, 1] -> BGR 0..255, (3, T, ..)
        n = x.shape[1] - WINDOW + 1
        out = [
            self.forward_lip(
                torch.stack([x[:, i : i + WINDOW] for i in range(s, min(s + batch, n))])
            )
            for s in range(0, n, batch)
        ]
        return torch.cat(out)

    def audio_windows(self, audio: np.ndarray, num_frames: int) -> Tensor:
        """``audio``: mono 16 kHz float waveform in [-1, 1] (see :func:`syncnet_v2_audio_input`)."""
        wins = syncnet_v2_audio_input(audio, num_frames)
        param = next(self.parameters())
        return self.forward_aud(wins.to(param))


INT16_SCALE = 32768.0  # float [-1, 1] -> int16 sample values (ffmpeg's s16, the release's reward)
SAMPLES_PER_FRAME = 640  # 16 kHz / 25 fps


def syncnet_v2_audio_input(audio: np.ndarray, num_frames: int) -> Tensor:
    """SyncNet-v2's audio input exactly as syncnet_python builds it: (N, 1, 13, 20) float32.

    syncnet_python reads int16 samples (``scipy.io.wavfile``) and computes
    ``python_speech_features.mfcc`` on them, so the float waveform is first put back on the
    int16 scale (rounded and clipped as ffmpeg's s16 conversion does). Window i holds MFCC steps
    4 i .. 4 i + 19; there are ``min(num_frames, floor(len / 640)) - 5`` windows (its
    ``lastframe``), one fewer than the video has, so the last video window is unused as there.
    """
    from lipforcing.evaluation.mfcc import mfcc

    x = np.asarray(audio, np.float64).reshape(-1)
    pcm = np.clip(np.round(x * INT16_SCALE), -INT16_SCALE, INT16_SCALE - 1)
    cc = torch.from_numpy(mfcc(pcm)).float().T  # (13, M)
    n = min(num_frames, len(pcm) // SAMPLES_PER_FRAME) - WINDOW
    if n < 1:
        return torch.zeros(0, 1, cc.shape[0], 4 * WINDOW)
    return torch.stack([cc[:, 4 * i : 4 * i + 4 * WINDOW] for i in range(n)])[:, None]


@dataclass(frozen=True, kw_only=True)
class LipSyncNetConfig:
    n_mels: int = 32  # mel bins of the audio feature (tiny preset: 32)
    mel_steps: int = 20  # mel frames per audio window (0.2 s at 100 Hz)
    mouth_size: tuple[int, int] = (48, 96)  # (H, W) the mouth half of the crop is resized to
    width: int = 32  # channels of the first conv layer
    embed_dim: int = 128  # embedding size

    @property
    def audio_dim(self) -> int:
        return self.n_mels * self.mel_steps


def _tower(cin: int, w: int, dim: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for cout in (w, 2 * w, 4 * w, 8 * w):
        layers += [nn.Conv2d(cin, cout, 3, 2, 1), nn.GroupNorm(8, cout), nn.SiLU()]
        cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, dim))


class LipSyncNet(nn.Module):
    """Our small two-tower SyncNet: mouth crops (5 frames) vs a 0.2 s log-mel window."""

    normalised = True
    name = "LipSyncNet (ours)"

    def __init__(self, cfg: LipSyncNetConfig = LipSyncNetConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.video = _tower(3 * WINDOW, cfg.width, cfg.embed_dim)
        self.audio = _tower(1, cfg.width, cfg.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(np.log(10.0), dtype=torch.float32))

    def embed_video(self, clips: Tensor) -> Tensor:
        """(N, 3, 5, S, S) aligned crops in [-1, 1] -> (N, D) unit vectors."""
        s = clips.shape[-2]
        mouth = clips[..., s // 2 :, :].flatten(1, 2)  # (N, 15, S/2, S) lower half
        mouth = F.interpolate(mouth, size=self.cfg.mouth_size, mode="bilinear", antialias=True)
        return F.normalize(self.video(mouth), dim=-1)

    def embed_audio(self, feats: Tensor) -> Tensor:
        """(N, n_mels * mel_steps) per-frame log-mel windows -> (N, D) unit vectors."""
        x = feats.reshape(-1, 1, self.cfg.n_mels, self.cfg.mel_steps)
        return F.normalize(self.audio(x), dim=-1)

    def video_windows(self, video: Tensor) -> Tensor:
        """(3, T, S, S) -> (T - 4, D); window i covers frames i .. i + 4."""
        clips = video.unfold(1, WINDOW, 1).permute(1, 0, 4, 2, 3)  # (N, 3, 5, S, S)
        return self.embed_video(clips)

    def audio_features(self, audio: np.ndarray | Tensor, num_frames: int) -> Tensor:
        """Waveform (L,) at 16 kHz -> (T, A) per-frame features; (T, A) features pass through."""
        if isinstance(audio, Tensor) and audio.ndim == 2:
            return audio
        audio = np.asarray(audio, np.float32)
        if audio.ndim == 2:
            return torch.from_numpy(audio)
        from lipforcing.config import AudioConfig
        from lipforcing.media.audio import mel_windows

        cfg = AudioConfig(kind="mel", n_mels=self.cfg.n_mels, context_frames=WINDOW // 2)
        return torch.from_numpy(mel_windows(audio, cfg, num_frames))

    def audio_windows(self, audio: np.ndarray | Tensor, num_frames: int) -> Tensor:
        """Window i pairs with the audio feature of its centre frame i + 2."""
        feats = self.audio_features(audio, num_frames)
        feats = feats[WINDOW // 2 : num_frames - WINDOW // 2]
        return self.embed_audio(feats.to(self.logit_scale))


def save_syncnet(model: LipSyncNet, path: str | Path, extra: dict | None = None) -> None:
    """Weights to ``path`` (safetensors) and the config to ``path`` with ``.json``."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(path))
    meta = {"kind": "LipSyncNet", "config": asdict(model.cfg), **(extra or {})}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2))


def load_syncnet(path: str | Path) -> LipSyncNet:
    """Our LipSyncNet from ``save_syncnet``'s files; eval mode."""
    from safetensors.torch import load_file

    path = Path(path)
    meta_path = path.with_suffix(".json")
    if not path.is_file() or not meta_path.is_file():
        raise CheckpointError(f"no LipSyncNet checkpoint at {path} (needs {meta_path.name} too)")
    meta = json.loads(meta_path.read_text())
    if meta.get("kind") != "LipSyncNet":
        raise CheckpointError(f"{meta_path} is not a LipSyncNet checkpoint")
    cfg = meta["config"]
    cfg["mouth_size"] = tuple(cfg["mouth_size"])
    model = LipSyncNet(LipSyncNetConfig(**cfg))
    try:
        model.load_state_dict(load_file(str(path)))
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not match the LipSyncNet config") from e
    return model.eval()


def load_syncnet_v2(path: str | Path) -> SyncNetV2:
    """syncnet_python's ``syncnet_v2.model`` (a torch-saved state dict) by path; eval mode."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no SyncNet weights at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: cannot read as a torch state dict ({e})") from e
    if not isinstance(state, dict):
        state = state.state_dict()
    model = SyncNetV2()
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: not syncnet_python's SyncNet weights") from e
    return model.eval()


__all__ = [
    "LipSyncNet",
    "LipSyncNetConfig",
    "SyncNetV2",
    "load_syncnet",
    "load_syncnet_v2",
    "save_syncnet",
    "syncnet_v2_audio_input",
]
