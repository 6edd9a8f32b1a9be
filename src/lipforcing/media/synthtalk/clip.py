"""SynthTalk clips: a face (identity, head motion, blinks) speaking a random phoneme script.

``render_clip(seed, seconds)`` is a pure function of its arguments. ``write_dataset`` writes
``<id>.mp4`` (H.264 + AAC), ``<id>.wav`` (the exact float audio as 16-bit PCM) and ``<id>.npz``
(``landmarks5 (T, 5, 2)``, ``mouth (T, 3)``, phoneme labels and times, seed) per clip, which
``lipforcing preprocess`` turns into shards without running a face detector.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lipforcing.media.synthtalk.face import (
    Identity,
    anchors,
    background,
    head_poses,
    render_frame,
)
from lipforcing.media.synthtalk.speech import (
    SAMPLE_RATE,
    Voice,
    mouth_tracks,
    phoneme_arrays,
    random_script,
    synthesize,
)


@dataclass
class SynthClip:
    frames: np.ndarray  # (T, S, S, 3) uint8 RGB
    audio: np.ndarray  # (N,) float32 mono
    sample_rate: int
    landmarks5: np.ndarray  # (T, 5, 2) float32 pixels: eyes, nose tip, relaxed mouth corners
    mouth: np.ndarray  # (T, 3) float32 (open, spread, round) in [0, 1]
    phonemes: list[tuple[str, float, float]]  # (label, start s, end s)
    fps: float
    seed: int

    @property
    def name(self) -> str:
        return clip_name(self.seed)


def clip_name(seed: int) -> str:
    return f"synthtalk_{seed:07d}"


def _blinks(rng: np.random.Generator, count: int, fps: float) -> np.ndarray:
    """(T,) eyelid closure: a 5-frame blink every 2-6 s."""
    closure = np.zeros(count)
    t = rng.uniform(0.5, 3.0) * fps
    shape = np.array([0.4, 0.9, 1.0, 0.7, 0.3])
    while t < count:
        i = int(t)
        n = min(len(shape), count - i)
        closure[i : i + n] = np.maximum(closure[i : i + n], shape[:n])
        t += rng.uniform(2.0, 6.0) * fps
    return closure


def render_clip(
    seed: int,
    seconds: float,
    size: int = 256,
    fps: float = 25.0,
    *,
    grain: float = 2.0,
) -> SynthClip:
    """Render one SynthTalk clip: ``round(seconds * fps)`` frames of ``size`` x ``size``."""
    if seconds <= 0 or size < 32 or fps <= 0:
        raise ValueError(f"bad SynthTalk clip: {seconds} s, {size} px, {fps} fps")
    rng = np.random.default_rng([seed, 0x5717])
    ident = Identity.random(rng)
    voice = Voice.random(rng)
    count = int(round(seconds * fps))
    script = random_script(rng, seconds, voice)
    audio = synthesize(script, voice, seconds, rng, SAMPLE_RATE)
    times = (np.arange(count) + 0.5) / fps  # frame i shows the middle of its interval
    mouth = mouth_tracks(script, times)
    poses = head_poses(rng, count, ident, size)
    blinks = _blinks(rng, count, fps)
    gaze = np.stack([np.sin(np.arange(count) / 37 + rng.uniform(0, 6)), np.zeros(count)], 1)
    base = background(ident, size)
    frames = np.empty((count, size, size, 3), np.uint8)
    noise = np.random.default_rng([seed, 0x6A1]).standard_normal((size, size, 1), np.float32)
    for i in range(count):
        img = render_frame(ident, poses[i], mouth[i], blinks[i], tuple(gaze[i]), base)
        # Sensor grain that changes every frame (shifted copies of one field: cheap, varied).
        img += grain * np.roll(noise, (i * 37 % size, i * 91 % size), (0, 1))
        frames[i] = np.clip(np.round(img), 0, 255).astype(np.uint8)
    rest = anchors(ident)
    marks = np.einsum("tij,kj->tki", poses[:, :, :2], rest) + poses[:, None, :, 2]
    return SynthClip(
        frames=frames,
        audio=audio,
        sample_rate=SAMPLE_RATE,
        landmarks5=marks.astype(np.float32),
        mouth=mouth,
        phonemes=script,
        fps=fps,
        seed=seed,
    )


def write_clip(out_dir: str | Path, clip: SynthClip) -> Path:
    """Write ``<id>.mp4``, ``<id>.wav`` and ``<id>.npz``; returns the mp4 path."""
    import soundfile as sf

    from lipforcing.media.io import write_video

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / clip.name
    labels, times = phoneme_arrays(clip.phonemes)
    tmp = stem.with_name(stem.name + ".tmp.npz")
    np.savez(
        tmp,
        landmarks5=clip.landmarks5,
        mouth=clip.mouth,
        phoneme_labels=labels,
        phoneme_times=times,
        seed=np.int64(clip.seed),
        fps=np.float64(clip.fps),
    )
    sf.write(stem.with_suffix(".wav"), clip.audio, clip.sample_rate, subtype="PCM_16")
    write_video(stem.with_suffix(".mp4"), clip.frames, clip.fps, clip.audio, clip.sample_rate)
    tmp.replace(stem.with_suffix(".npz"))  # last: an npz means the clip is complete
    return stem.with_suffix(".mp4")


def write_dataset(
    out_dir: str | Path,
    clips: int,
    seconds: float,
    seed: int,
    *,
    size: int = 256,
    fps: float = 25.0,
    progress: bool = True,
) -> list[Path]:
    """Render clips with seeds ``seed, seed + 1, ...``; clips already written are kept
    (resumable). Writes ``index.json`` listing them; returns the mp4 paths."""
    from tqdm import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in tqdm(range(seed, seed + clips), desc="synthtalk", unit="clip", disable=not progress):
        mp4 = out / f"{clip_name(s)}.mp4"
        if not mp4.with_suffix(".npz").is_file():
            write_clip(out, render_clip(s, seconds, size=size, fps=fps))
        paths.append(mp4)
    index = {"clips": [p.name for p in paths], "seconds": seconds, "size": size, "fps": fps}
    (out / "index.json").write_text(json.dumps(index, indent=1))
    return paths


__all__ = ["SynthClip", "clip_name", "render_clip", "write_clip", "write_dataset"]
