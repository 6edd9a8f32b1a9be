"""The ``NAME.avatar`` folder: everything a stream of one person needs, and a card describing it.

Layout::

    NAME.avatar/
      card.json               what it was trained on, held-out scores, tool version, checksums
      student.safetensors     causal student (+ student.json, its preset)
      codec.safetensors       the person's codec
      syncnet.safetensors     the person's SyncNet (+ syncnet.json)
      source/base.mp4         the idle base: a calm stretch of the training footage (25 fps)
      source/crops.npy        its aligned crops (T, S, S, 3) uint8, cut from base.mp4's frames
      source/transforms.npy   frame -> crop similarities (T, 2, 3)
      source/found.npy        usable face per frame (T,)
      report/                 the held-out report (report.md, report.json, PNGs)
      footage.json            the footage report of the inputs

Design choices:
- A folder is written complete under a temporary name and renamed into place; a folder
  without a valid ``card.json`` is never taken for an avatar. Loading checks the card's format,
  and every file's size and SHA-256 against the card, so a truncated, edited or foreign folder
  is refused with one message instead of streaming garbage.
- The idle base is stored as H.264 and the crops are cut from its decoded frames, so the
  frames pasted into and the crops conditioning the model agree exactly.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lipforcing.errors import CheckpointError

FORMAT = "lipforcing-avatar"
VERSION = 1
SUFFIX = ".avatar"
CARD = "card.json"
RECREATE = "recreate it with `lipforcing avatar create`"


def file_digest(path: Path) -> dict:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"bytes": path.stat().st_size, "sha256": h.hexdigest()}


def inventory(folder: Path) -> dict[str, dict]:
    """Size and SHA-256 of every file under ``folder`` (except the card), by relative path."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != CARD)
    return {p.relative_to(folder).as_posix(): file_digest(p) for p in files}


@dataclass
class Avatar:
    """A loaded, verified avatar folder."""

    path: Path
    card: dict

    @property
    def name(self) -> str:
        return self.card.get("name", self.path.stem)

    @classmethod
    def load(cls, path: str | Path, *, verify: bool = True) -> Avatar:
        """Read and check an avatar folder (CheckpointError naming the problem)."""
        path = Path(path)
        if not path.is_dir():
            raise CheckpointError(f"{path}: no such avatar folder")
        card = read_card(path)
        if verify:
            check_files(path, card)
        return cls(path, card)

    def file(self, name: str) -> Path:
        return self.path / name

    def pipeline(self, **load):
        """The avatar's student and codec (``load``: Pipeline.load's keyword arguments)."""
        from lipforcing.streaming.pipeline import Pipeline

        return Pipeline.load(
            self.file("student.safetensors"), self.file("codec.safetensors"), **load
        )

    def source(self, media_cfg):
        """The idle base as a streaming :class:`Source` (no face tracking: the stored track)."""
        from lipforcing.media.io import read_video
        from lipforcing.streaming.source import Source

        crops = np.load(self.file("source/crops.npy"))
        transforms = np.load(self.file("source/transforms.npy"))
        frames = np.asarray(read_video(self.file("source/base.mp4"), fps=media_cfg.fps).frames)
        if len(frames) != len(crops) or crops.shape[1] != media_cfg.crop_size:
            raise CheckpointError(
                f"{self.path}: its idle base does not match its crops; {RECREATE}"
            )
        return Source(
            frames, crops, transforms, media_cfg.fps, media_cfg.fps, f"{self.name} (avatar)"
        )

    def summary(self) -> dict:
        """Name, what it was made from, and its held-out headline numbers."""
        c = self.card
        held = c.get("heldout", {}).get("targets", {})
        return {
            "name": self.name,
            "path": str(self.path),
            "created": c.get("created"),
            "init": c.get("init"),
            "train_seconds": c.get("trained_on", {}).get("train_seconds"),
            "heldout_seconds": c.get("trained_on", {}).get("heldout_seconds"),
            "targets_met": sum(bool(v.get("met")) for v in held.values()),
            "targets": len(held),
        }


def stream_inputs(
    avatar: str | Path | None = None,
    *,
    checkpoint: str | Path | None = None,
    video: str | Path | None = None,
    device: str = "cpu",
):
    """(pipeline, source) of a stream: an avatar's student, codec and idle base (``video``
    replaces the base), or ``checkpoint`` (default: the built-in student) with ``video``
    (default: the built-in SynthTalk face). For the integrations' workers and examples."""
    from lipforcing.errors import UserError
    from lipforcing.streaming.pipeline import Pipeline, shipped_checkpoint
    from lipforcing.streaming.source import Source

    if avatar and checkpoint:
        raise UserError("an avatar brings its own student; give an avatar or a checkpoint")
    if avatar:
        a = Avatar.load(avatar)
        pipeline = a.pipeline(device=device)
        media = pipeline.preset.media
        return pipeline, Source.from_file(video, media) if video else a.source(media)
    pipeline = Pipeline.load(checkpoint or shipped_checkpoint(), device=device)
    if video:
        return pipeline, Source.from_file(video, pipeline.preset.media)
    from lipforcing.streaming.builtin import builtin_sample

    return pipeline, builtin_sample(pipeline.preset).source


def read_card(path: Path) -> dict:
    card_path = path / CARD
    if not card_path.is_file():
        raise CheckpointError(f"{path} is not a lipforcing avatar (no {CARD}); {RECREATE}")
    try:
        card = json.loads(card_path.read_text())
    except (ValueError, UnicodeDecodeError):
        raise CheckpointError(f"{path}: {CARD} is corrupt (not JSON); {RECREATE}") from None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a lipforcing avatar ({CARD} of another tool)")
    if not isinstance(card.get("version"), int) or card["version"] > VERSION:
        raise CheckpointError(
            f"{path} was made by a newer lipforcing (avatar format {card.get('version')}); "
            "upgrade lipforcing"
        )
    if not isinstance(card.get("files"), dict) or "student.safetensors" not in card["files"]:
        raise CheckpointError(f"{path}: {CARD} lists no files; {RECREATE}")
    return card


def check_files(path: Path, card: dict) -> None:
    for name, want in card["files"].items():
        f = path / name
        if not f.is_file():
            raise CheckpointError(f"{path} is incomplete: {name} is missing; {RECREATE}")
        if f.stat().st_size != want.get("bytes") or file_digest(f)["sha256"] != want.get("sha256"):
            raise CheckpointError(
                f"{path} is corrupt: {name} changed since it was made; {RECREATE}"
            )


def finalise(staged: Path, out: Path, card: dict) -> Path:
    """Write the card (with the file inventory) into ``staged`` and rename it to ``out``."""
    card = {"format": FORMAT, "version": VERSION, **card, "files": inventory(staged)}
    tmp = staged / (CARD + ".tmp")
    tmp.write_text(json.dumps(card, indent=2, default=json_default))
    os.replace(tmp, staged / CARD)
    if out.exists():
        raise CheckpointError(f"{out} appeared while building; the new avatar is kept at {staged}")
    os.replace(staged, out)
    return out


def json_default(x):
    """`json.dumps` default for the card and the report: numpy scalars and paths."""
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(type(x))


def list_avatars(folder: str | Path) -> list[Avatar]:
    """The valid avatars directly inside ``folder`` (cards read, files not hashed)."""
    out = []
    for p in sorted(Path(folder).glob(f"*{SUFFIX}")):
        try:
            out.append(Avatar.load(p, verify=False))
        except CheckpointError:
            continue
    return out


# ----------------------------------------------------------------------------- idle base


def pick_base(
    usable: np.ndarray, landmarks: np.ndarray, frames: int, fps: float
) -> tuple[int, int]:
    """[start, stop) of the calmest stretch of ``frames`` frames with a usable face throughout
    (least mean landmark motion), searched at one-second steps; the whole clip when shorter."""
    t = len(usable)
    if t <= frames:
        return 0, t
    motion = np.nan_to_num(np.linalg.norm(np.diff(landmarks, axis=0), axis=-1).mean(-1), nan=1e9)
    best, best_score = 0, (-1.0, np.inf)
    for s in range(0, t - frames + 1, max(1, int(fps))):
        score = (float(usable[s : s + frames].mean()), float(motion[s : s + frames - 1].mean()))
        if score[0] > best_score[0] or (score[0] == best_score[0] and score[1] < best_score[1]):
            best, best_score = s, score
    return best, best + frames


def write_base(
    video: Path,
    start: int,
    stop: int,
    transforms: np.ndarray,
    found: np.ndarray,
    media_cfg,
    dest: Path,
) -> dict:
    """Frames [start, stop) of ``video`` (at the media rate) as ``dest/base.mp4`` + crops."""
    from lipforcing.media.align import warp_to_crop
    from lipforcing.media.io import iter_frames, read_video, write_video

    frames = []
    for k, (_, frame) in enumerate(iter_frames(video, media_cfg.fps)):
        if k >= stop:
            break
        if k >= start:
            frames.append(frame)
    dest.mkdir(parents=True, exist_ok=True)
    write_video(dest / "base.mp4", np.stack(frames), media_cfg.fps)
    decoded = np.asarray(read_video(dest / "base.mp4", fps=media_cfg.fps).frames)
    n = min(len(decoded), stop - start)
    np.save(dest / "crops.npy", warp_to_crop(decoded[:n], transforms[:n], media_cfg.crop_size))
    np.save(dest / "transforms.npy", np.asarray(transforms[:n], np.float64))
    np.save(dest / "found.npy", np.asarray(found[:n], bool))
    h, w = decoded.shape[1:3]
    return {
        "video": video.name,
        "start_s": start / media_cfg.fps,
        "seconds": n / media_cfg.fps,
        "frames": n,
        "width": int(w),
        "height": int(h),
    }


__all__ = [
    "Avatar",
    "CARD",
    "FORMAT",
    "SUFFIX",
    "check_files",
    "file_digest",
    "finalise",
    "inventory",
    "list_avatars",
    "pick_base",
    "read_card",
    "stream_inputs",
    "write_base",
]
