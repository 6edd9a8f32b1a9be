"""Footage for the avatar tests: SynthTalk clips (exact landmarks in the .npz beside the video,
so no detector tracks them) and edited versions of them that break one footage rule each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from lipforcing.media.io import write_video
from lipforcing.media.synthtalk import render_clip

FPS = 25.0
SIZE = 128  # px: small frames keep the tests fast
SR = 16_000


def write_footage(path: Path, frames, audio, landmarks=None, *, sound_inside=False) -> Path:
    """``path`` (.mp4) + the .wav beside it (+ the .npz of 5-point landmarks when given);
    ``sound_inside`` also muxes the audio into the mp4 (an upload is one file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    inside = np.asarray(audio, np.float32) if sound_inside else None
    write_video(path, np.asarray(frames), FPS, inside, SR)
    sf.write(path.with_suffix(".wav"), np.asarray(audio, np.float32), SR, subtype="PCM_16")
    if landmarks is not None:
        np.savez(path.with_suffix(".npz"), landmarks5=np.asarray(landmarks, np.float32))
    return path


def synth(seed: int, seconds: float):
    clip = render_clip(seed, seconds, size=SIZE, fps=FPS)
    return np.asarray(clip.frames), np.asarray(clip.audio), np.asarray(clip.landmarks5)


def talking(path: Path, seconds: float = 24.0, seed: int = 777) -> Path:
    """One SynthTalk person talking for ``seconds``."""
    return write_footage(path, *synth(seed, seconds))


def silent(path: Path, seconds: float = 24.0, *, sound_inside: bool = False) -> Path:
    """A talking face with a silent soundtrack (low hiss)."""
    frames, audio, marks = synth(778, seconds)
    hiss = np.random.default_rng(0).normal(0, 1e-3, len(audio))
    return write_footage(path, frames, hiss, marks, sound_inside=sound_inside)


def no_face(path: Path, seconds: float = 6.0) -> Path:
    """Grey noise frames with speech: nothing a face detector can find."""
    _, audio, _ = synth(779, seconds)
    n = int(seconds * FPS)
    frames = np.random.default_rng(1).integers(90, 110, (n, SIZE, SIZE, 3), dtype=np.uint8)
    return write_footage(path, frames, audio)


def leaving(path: Path, seconds: float = 24.0) -> Path:
    """The face slides out of the frame to the right over the second half and stays out."""
    frames, audio, marks = synth(780, seconds)
    n = len(frames)
    shift = np.clip((np.arange(n) - n // 2) * 4, 0, SIZE).astype(int)  # px per frame
    out = np.zeros_like(frames)
    for i, s in enumerate(shift):
        out[i, :, s:] = frames[i, :, : SIZE - s]
    marks = marks + np.stack([shift, np.zeros(n)], 1)[:, None].astype(np.float32)
    marks[shift >= SIZE] = np.nan
    return write_footage(path, out, audio, marks)


def two_people(path: Path, first: float, second: float, turns: int = 1) -> Path:
    """Person A then person B (``turns`` times each), seconds ``first`` / ``second`` per turn."""
    a, b = synth(781, first * turns), synth(790, second * turns)
    fa, fb = int(first * FPS), int(second * FPS)
    sa, sb = int(first * SR), int(second * SR)
    frames, audio, marks = [], [], []
    for k in range(turns):
        frames += [a[0][k * fa : (k + 1) * fa], b[0][k * fb : (k + 1) * fb]]
        audio += [a[1][k * sa : (k + 1) * sa], b[1][k * sb : (k + 1) * sb]]
        marks += [a[2][k * fa : (k + 1) * fa], b[2][k * fb : (k + 1) * fb]]
    return write_footage(path, np.concatenate(frames), np.concatenate(audio), np.concatenate(marks))


def untrained_avatar(folder: Path, name: str = "me", seconds: float = 2.0) -> Path:
    """A valid ``NAME.avatar`` written by the library's own functions, with the built-in
    networks instead of trained ones (for tests of the commands that use an avatar)."""
    import shutil

    from lipforcing.avatar.bundle import finalise, write_base
    from lipforcing.config import get_preset
    from lipforcing.media.faces import track_from_landmarks
    from lipforcing.streaming.pipeline import shipped_asset

    video = talking(folder / "footage" / f"{name}.mp4", seconds=seconds)
    staged = folder / f"{name}.avatar.partial"
    staged.mkdir(parents=True)
    for asset in ("student.safetensors", "student.json", "codec.safetensors"):
        shutil.copy(shipped_asset(asset), staged / asset)
    for asset in ("syncnet.safetensors", "syncnet.json"):
        shutil.copy(shipped_asset(asset), staged / asset)
    media = get_preset("tiny").media
    marks = np.load(video.with_suffix(".npz"))["landmarks5"].astype(np.float64)
    track = track_from_landmarks(marks, np.isfinite(marks).all((1, 2)), media, (SIZE, SIZE))
    n = len(marks)
    base = write_base(video, 0, n, track.transforms, track.found, media, staged / "source")
    card = {"name": name, "preset": "tiny", "base": base}
    return finalise(staged, folder / f"{name}.avatar", card)
