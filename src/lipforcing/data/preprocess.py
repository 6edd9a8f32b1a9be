"""Turn videos into training/evaluation shards, one folder per video.

Shard layout (``OUT/<name>/``, written to ``OUT/.<name>.tmp`` and renamed when complete, so a
folder with ``meta.json`` is always whole and a rerun skips it):

==================  ==========================  ==============================================
file                shape / dtype               content
==================  ==========================  ==============================================
crops.npy           (T, S, S, 3) uint8          aligned face crops (RGB)
transforms.npy      (T, 2, 3) float64           smoothed frame -> crop similarity per frame
found.npy           (T,) bool                   a face was detected in the frame
landmarks.npy       (T, K, 2) float64           alignment landmarks, frame pixels (NaN: none)
mask.npy            (S, S) float32              mouth mask in crop coordinates (1 = generate)
audio_features.npy  (T, A) float32              per-frame features of the preset's AudioConfig
audio.npy           (N,) float32                16 kHz mono soundtrack, N ~ T * 16000 / fps
meta.json                                       source path, fps, size, frames, found ratio...
==================  ==========================  ==============================================

Inputs: video files or folders of them. Audio comes from a ``.wav`` beside the video when one
exists (SynthTalk, clips-256), else from the video's own audio stream. A ``.npz`` beside the
video with ``landmarks5`` (SynthTalk) replaces the face detector. Files that fail are listed in
``OUT/report.json`` with a one-line reason; the batch goes on.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lipforcing.config import PresetConfig
from lipforcing.errors import MediaError, UserError
from lipforcing.media.align import alignment_points, warp_to_crop
from lipforcing.media.audio import Wav2Vec2Features, audio_features
from lipforcing.media.faces import Box, FaceFollower, track_from_landmarks
from lipforcing.media.io import iter_frames, read_audio, read_soundtrack
from lipforcing.media.mask import mouth_mask

VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"}
MIN_FOUND_RATIO = 0.5  # a clip where the face is seen in fewer frames is rejected


@dataclass
class Report:
    """What a preprocessing batch did."""

    done: list[str] = field(default_factory=list)  # shards written now
    skipped: list[str] = field(default_factory=list)  # shards already complete
    failed: dict[str, str] = field(default_factory=dict)  # input path -> reason

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2)


def collect_inputs(inputs: list[str | Path]) -> list[Path]:
    """Expand folders into their video files (sorted); files and missing paths stay as given."""
    out: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            out.extend(sorted(p for p in item.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES))
        else:
            out.append(item)
    return out


def shard_name(path: Path, taken: set[str]) -> str:
    """The file's stem, made unique with a short hash of its path when stems collide."""
    name = path.stem
    if name in taken:
        name = f"{name}-{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]}"
    taken.add(name)
    return name


def _audio(path: Path, clip_audio: np.ndarray | None, sample_rate: int) -> np.ndarray:
    wav = path.with_suffix(".wav")
    if wav.is_file():
        return read_audio(wav, sample_rate)
    if clip_audio is None:
        raise MediaError(f"{path.name}: no audio stream and no .wav beside it")
    return clip_audio


def _scan(
    path: Path,
    fps: float,
    max_frames: int | None,
    landmarks_npz: np.ndarray | None,
    face,
    align: str = "arcface5",
):
    """Pass 1: source indices, frame size, alignment landmarks and boxes of every output frame,
    and the shot cuts the follower saw (None with known landmarks)."""
    follow = FaceFollower(face)
    npts = 3 if align == "latentsync3" else 5
    index, points, boxes, hw = [], [], [], (0, 0)
    for i, frame in iter_frames(path, fps, max_frames=max_frames):
        index.append(i)
        hw = frame.shape[:2]
        if landmarks_npz is None:
            p68, box = follow(frame)
            points.append(
                alignment_points(p68, align) if box is not None else np.full((npts, 2), np.nan)
            )
            boxes.append(box if box is not None else np.full(4, np.nan))
    index = np.asarray(index)
    if landmarks_npz is not None:
        if index.max() >= len(landmarks_npz):
            raise MediaError(f"{path.name}: {len(landmarks_npz)} landmark rows for a longer video")
        return index, hw, landmarks_npz[index], None, None
    return index, hw, np.stack(points), np.stack(boxes), follow.cuts()


def _npz_landmarks(path: Path) -> np.ndarray | None:
    npz = path.with_suffix(".npz")
    if not npz.is_file():
        return None
    with np.load(npz) as data:
        return np.asarray(data["landmarks5"], np.float64) if "landmarks5" in data else None


def build_shard(
    path: Path,
    preset: PresetConfig,
    *,
    max_frames: int | None = None,
    wav2vec2: Wav2Vec2Features | None = None,
    face: int | Box | None = None,
) -> tuple[dict[str, np.ndarray], dict]:
    """Read, track, crop and featurise one video; returns (arrays, meta) or raises MediaError.

    Two decoding passes (landmarks, then crops) keep one full frame in memory at a time, so
    minutes-long clips cost only their crops.
    """
    media, acfg = preset.media, preset.audio
    start = time.perf_counter()
    npz = _npz_landmarks(path)
    index, hw, landmarks, boxes, cuts = _scan(path, media.fps, max_frames, npz, face, media.align)
    found = np.isfinite(landmarks).all(axis=(1, 2))
    track = track_from_landmarks(landmarks, found, media, hw, boxes, cuts)
    detect_seconds = time.perf_counter() - start
    if track.found_ratio < MIN_FOUND_RATIO:
        raise MediaError(
            f"{path.name}: face found in only {100 * track.found_ratio:.0f}% of frames"
        )
    audio = _audio(path, read_soundtrack(path, acfg.sample_rate), acfg.sample_rate)
    t = len(index)
    audio = audio[: int(round(t * acfg.sample_rate / media.fps))]
    crops = np.empty((t, media.crop_size, media.crop_size, 3), np.uint8)
    for k, (_, frame) in enumerate(iter_frames(path, media.fps, max_frames=max_frames)):
        crops[k] = warp_to_crop(frame[None], track.transforms[k : k + 1], media.crop_size)[0]
    arrays = {
        "crops": crops,
        "transforms": track.transforms.astype(np.float64),
        "found": track.found,
        "landmarks": track.landmarks,
        "mask": mouth_mask(media),
        "audio_features": audio_features(audio, acfg, t, wav2vec2=wav2vec2),
        "audio": audio.astype(np.float32),
    }
    meta = {
        "source": str(path.resolve()),
        "fps": media.fps,
        "height": int(hw[0]),
        "width": int(hw[1]),
        "frames": t,
        "found_ratio": track.found_ratio,
        "landmarks": "npz" if npz is not None else "dlib",
        "crop_size": media.crop_size,
        "audio_kind": acfg.kind,
        "audio_feature_dim": int(arrays["audio_features"].shape[1]),
        "sample_rate": acfg.sample_rate,
        "preset": preset.name,
        "detect_fps": t / max(detect_seconds, 1e-9),
    }
    return arrays, meta


def write_shard(out_dir: Path, name: str, arrays: dict[str, np.ndarray], meta: dict) -> Path:
    """Write arrays + meta.json atomically to ``out_dir/name``."""
    final = out_dir / name
    tmp = out_dir / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for key, value in arrays.items():
        np.save(tmp / f"{key}.npy", value)
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    shutil.rmtree(final, ignore_errors=True)  # an incomplete earlier attempt
    os.replace(tmp, final)
    return final


def is_done(out_dir: Path, name: str) -> bool:
    return (out_dir / name / "meta.json").is_file()


def preprocess(
    inputs: list[str | Path],
    out_dir: str | Path,
    preset: PresetConfig,
    *,
    max_frames: int | None = None,
    wav2vec2: Wav2Vec2Features | None = None,
    face: int | Box | None = None,
    progress: bool = True,
) -> Report:
    """Preprocess every input into ``out_dir``; never stops on a bad file (see ``report.json``)."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report, taken = Report(), set()
    files = collect_inputs(inputs)
    if not files:
        raise UserError("no video files among the inputs")
    for path in tqdm(files, desc="preprocess", unit="video", disable=not progress):
        name = shard_name(path, taken)
        if is_done(out_dir, name):
            report.skipped.append(name)
            continue
        start = time.perf_counter()
        try:
            arrays, meta = build_shard(
                path, preset, max_frames=max_frames, wav2vec2=wav2vec2, face=face
            )
        except UserError as e:
            report.failed[str(path)] = str(e)
            continue
        meta["seconds"] = time.perf_counter() - start
        write_shard(out_dir, name, arrays, meta)
        report.done.append(name)
    (out_dir / "report.json").write_text(report.to_json())
    return report


def load_shard(shard_dir: str | Path, mmap: bool = True) -> tuple[dict[str, np.ndarray], dict]:
    """Read a shard back: (arrays, meta); large arrays are memory-mapped."""
    shard_dir = Path(shard_dir)
    meta_path = shard_dir / "meta.json"
    if not meta_path.is_file():
        raise UserError(f"{shard_dir}: not a complete shard (no meta.json)")
    arrays = {
        p.stem: np.load(p, mmap_mode="r" if mmap else None) for p in sorted(shard_dir.glob("*.npy"))
    }
    return arrays, json.loads(meta_path.read_text())


def find_shards(roots: list[str | Path]) -> list[Path]:
    """The shard folders of ``roots``: each root is a shard itself or a folder of shards."""
    dirs: list[Path] = []
    for r in map(Path, roots):
        dirs += (
            [r] if (r / "meta.json").is_file() else sorted(p.parent for p in r.glob("*/meta.json"))
        )
    if not dirs:
        raise UserError(f"no shards under {', '.join(map(str, roots)) or '(nothing given)'}")
    return dirs


__all__ = [
    "Report",
    "build_shard",
    "collect_inputs",
    "find_shards",
    "load_shard",
    "preprocess",
    "write_shard",
]
