"""Score an avatar on footage it never saw: the product engine driven by the footage's own audio
and by another utterance, against the real frames and the unmodified source.

Design choices:
- Generation is the product path: :func:`lipforcing.streaming.offline.lipsync_offline` (the
  streaming session, one push) on a :class:`Source` made of the held-out frames, crops and
  transforms, so output frame i shows held-out frame i (the audio never outlasts the footage).
- Image metrics compare the generated and the real aligned crops on the mouth box of the mask
  (what the model generates and what is pasted back), on frames with a usable face only: PSNR
  and SSIM per frame (uint8, peak 255), LPIPS (AlexNet), each averaged over frames. The codec's
  own reconstruction of the real crops is scored the same way: the ceiling the student works
  under.
- Sync: the person's SyncNet (Sync-C, Sync-D, best offset, syncnet_python's search over +-15
  frames) and the lip-opening / speech-envelope correlation of
  :mod:`lipforcing.evaluation.lip_envelope` (no trained network), with the dlib landmarks of
  every video fitted inside the real footage's face boxes so detector jitter is shared.
- "Other utterance": the held-out frames driven by other speech (cut to the held-out length),
  compared with the unmodified held-out frames against that same speech (the baseline any lip
  sync must beat).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lipforcing.config import PresetConfig


@dataclass
class HeldOutClip:
    """One held-out segment: full frames, aligned crops, transforms, usable mask, its audio."""

    name: str
    frames: np.ndarray  # (T, H, W, 3) uint8
    crops: np.ndarray  # (T, S, S, 3) uint8
    transforms: np.ndarray  # (T, 2, 3)
    usable: np.ndarray  # (T,) bool
    audio: np.ndarray  # (T * spf,) float32 16 kHz
    fps: float
    start_s: float  # where it starts in its video

    def __len__(self) -> int:
        return len(self.frames)

    def source(self):
        from lipforcing.streaming.source import Source

        return Source(self.frames, self.crops, self.transforms, self.fps, self.fps, self.name)

    def head(self, frames: int) -> HeldOutClip:
        """The first ``frames`` frames (and their audio)."""
        spf = len(self.audio) // max(len(self), 1)
        return HeldOutClip(
            self.name,
            self.frames[:frames],
            self.crops[:frames],
            self.transforms[:frames],
            self.usable[:frames],
            self.audio[: frames * spf],
            self.fps,
            self.start_s,
        )


@dataclass
class Networks:
    """What scoring needs: the pipeline (student + codec), the person's SyncNet, LPIPS."""

    pipeline: object
    syncnet: object
    lpips: object

    @property
    def preset(self) -> PresetConfig:
        return self.pipeline.preset


def mouth_region(crops: np.ndarray, preset: PresetConfig) -> np.ndarray:
    """(T, S, S, 3) -> (T, h, w, 3): the mouth box of the mask."""
    from lipforcing.media.mask import mouth_box

    top, bottom, left, right = mouth_box(preset.media)
    return np.ascontiguousarray(crops[:, top:bottom, left:right])


def image_scores(nets: Networks, pred: np.ndarray, real: np.ndarray, keep: np.ndarray) -> dict:
    """Mouth PSNR / SSIM / LPIPS of ``pred`` vs ``real`` crops on the frames ``keep``."""
    from lipforcing.evaluation.image_metrics import psnr, ssim
    from lipforcing.evaluation.lpips import lpips_frames

    a = mouth_region(pred[keep], nets.preset)
    b = mouth_region(real[keep], nets.preset)
    return {
        "mouth_psnr": float(np.mean(np.minimum(psnr(a, b), 100.0))),
        "mouth_ssim": float(np.mean(ssim(a, b))),
        "mouth_lpips": float(np.mean(lpips_frames(nets.lpips, a, b))),
        "frames": int(keep.sum()),
    }


def sync_scores(nets: Networks, crops: np.ndarray, audio: np.ndarray) -> dict:
    """The person's SyncNet on aligned crops vs a 16 kHz waveform."""
    from lipforcing.evaluation.sync import sync_search

    r = sync_search(nets.syncnet, crops, audio)
    return {"sync_c": r.sync_c, "sync_d": r.sync_d, "offset": r.offset}


def lip_scores(frames: np.ndarray, audio: np.ndarray, fps: float, boxes: np.ndarray) -> dict:
    """Lip-opening / speech-envelope correlation at the best lag within +-2 frames."""
    from lipforcing.evaluation.lip_envelope import lip_envelope_sync

    r = lip_envelope_sync(frames, audio, 16_000, fps, boxes=boxes)
    return {"lip_r": r.correlation, "lip_lag": r.lag, "opening": r.opening, "envelope": r.envelope}


@dataclass
class Generated:
    """Frames and crops the engine made for one driving audio, and its speed."""

    frames: np.ndarray
    crops: np.ndarray
    audio: np.ndarray
    gen_fps: float


def generate(nets: Networks, clip: HeldOutClip, audio: np.ndarray, seed: int) -> Generated:
    """The product engine on the held-out frames, driven by ``audio``."""
    from lipforcing.streaming.offline import lipsync_offline

    r = lipsync_offline(nets.pipeline, clip.source(), audio, seed=seed)
    return Generated(r.frames, r.crops, r.audio, float(r.stats.gen_fps or 0.0))


def codec_reconstruction(nets: Networks, crops: np.ndarray) -> np.ndarray:
    """The codec's encode + decode of ``crops`` (T, S, S, 3); the last ``(T - 1) % 4`` frames
    are dropped (the codec's causal layout needs 1 + 4k frames)."""
    import torch

    codec = nets.pipeline.codec
    stride = codec.temporal_stride
    t = 1 + (len(crops) - 1) // stride * stride
    video = torch.from_numpy(np.ascontiguousarray(crops[:t])).float() / 127.5 - 1
    with torch.no_grad():
        rec = codec.decode(codec.encode(video.permute(3, 0, 1, 2)[None]))[0]
    rec = ((rec.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return rec.permute(1, 2, 3, 0).numpy()


def real_boxes(frames: np.ndarray) -> np.ndarray:
    """(T, 4) face boxes of the real footage (NaN rows where none)."""
    from lipforcing.media.faces import detect_landmarks

    return detect_landmarks(frames)[1]


def score_clip(nets: Networks, clip: HeldOutClip, other: np.ndarray | None, seed: int = 0) -> dict:
    """Every number of the held-out report for one clip (see the module docstring).

    Returns a dict with ``real``, ``codec``, ``own`` (generated with its own audio) and, unless
    ``other`` is None, ``other`` (generated with the other utterance) and ``source_other``
    (unmodified frames, other utterance) entries; ``series`` (per-frame lip opening and
    envelopes) and ``crops`` for the figures.
    """
    boxes = real_boxes(clip.frames)
    own = generate(nets, clip, clip.audio, seed)
    rec = codec_reconstruction(nets, clip.crops)
    keep, t_rec = clip.usable.copy(), len(rec)
    out = {
        "frames": len(clip),
        "real": sync_scores(nets, clip.crops, clip.audio),
        "codec": image_scores(nets, rec, clip.crops[:t_rec], keep[:t_rec]),
        "own": {
            **image_scores(nets, own.crops, clip.crops, keep),
            **sync_scores(nets, own.crops, clip.audio),
            "engine_fps": own.gen_fps,
        },
    }
    videos = [("real", clip.frames, clip.audio, boxes), ("own", own.frames, clip.audio, boxes)]
    crops = {"real": clip.crops, "codec": rec, "own": own.crops}
    if other is not None:
        spf = len(clip.audio) // len(clip)
        n = min(len(clip), len(other) // spf)
        other = np.asarray(other[: n * spf], np.float32)
        dub = generate(nets, clip, other, seed)
        out["other_frames"] = n
        out["other"] = {
            **image_scores(nets, dub.crops, clip.crops[:n], keep[:n]),
            **sync_scores(nets, dub.crops, other),
            "engine_fps": dub.gen_fps,
        }
        out["source_other"] = sync_scores(nets, clip.crops[:n], other)
        videos += [
            ("other", dub.frames, other, boxes[:n]),
            ("source_other", clip.frames[:n], other, boxes[:n]),
        ]
        crops["other"] = dub.crops
    series = {}
    for key, frames, audio, b in videos:
        lips = lip_scores(frames, audio, clip.fps, b)
        out[key] |= {"lip_r": lips["lip_r"], "lip_lag": lips["lip_lag"]}
        series[key] = {"opening": lips["opening"], "envelope": lips["envelope"]}
    out["series"], out["crops"] = series, crops
    return out


__all__ = [
    "Generated",
    "HeldOutClip",
    "Networks",
    "codec_reconstruction",
    "generate",
    "image_scores",
    "lip_scores",
    "mouth_region",
    "score_clip",
    "sync_scores",
]
