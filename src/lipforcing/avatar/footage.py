"""The footage an avatar is made from: scan every input, report it, refuse unusable footage,
and split it into the training part and the held-out end.

Design choices:
- A scan is a preprocessing shard (:func:`lipforcing.data.preprocess.build_shard`: track,
  crops, audio features) plus per-frame footage measures stored beside its arrays: ``usable``
  (face found and the mouth, with half an eye distance of margin, inside the frame),
  ``speech`` (the frame is at least ``speech_db`` above the clip's quiet floor), ``pose``
  (yaw, pitch, roll), ``sharpness`` (of the mouth region of the crop) and identity
  descriptors of one frame per second (:mod:`lipforcing.avatar.identity`). It is written
  atomically, so a rerun skips scanned videos.
- Held out: the last ``holdout`` share of all frames, in the order the videos were given; it
  is never trained on (its shard is written apart and only the report reads it).
- The checks run on the whole report and raise the first problem as one :class:`FootageError`
  that says what to record instead; the report table is printed before, so the user sees what
  was measured.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lipforcing.avatar.config import FootageLimits
from lipforcing.avatar.identity import IdentitySamples, distances, medoid
from lipforcing.config import PresetConfig
from lipforcing.errors import MediaError, UserError

MOUTH_MARGIN = 0.5  # eye distances of room the mouth corners need from the frame's edge
QUIET_PERCENTILE = 10  # the clip's quiet floor: this percentile of its per-frame loudness
FLOOR_DB = -60.0  # dBFS floor of the per-frame loudness
RECORD = (
    "record yourself alone, facing the camera with your whole face in view, talking for 1-3 minutes"
)


class FootageError(UserError):
    """Footage no avatar can be made from; the message says what to record instead."""


@dataclass
class VideoScan:
    """One scanned input (a shard folder with the footage measures)."""

    name: str
    source: str
    fps: float
    frame_hw: tuple[int, int]
    found: np.ndarray  # (T,) the tracker saw the face
    usable: np.ndarray  # (T,) found, mouth inside the frame
    speech: np.ndarray  # (T,) speech in the audio of the frame
    pose: np.ndarray  # (T, 3) yaw, pitch, roll in degrees (NaN: no face)
    sharpness: np.ndarray  # (T,) variance of the Laplacian of the mouth region (NaN: no face)
    identity: IdentitySamples
    folder: Path

    @property
    def frames(self) -> int:
        return len(self.found)

    @property
    def seconds(self) -> float:
        return self.frames / self.fps

    @classmethod
    def load(cls, folder: Path) -> VideoScan:
        from lipforcing.data.preprocess import load_shard

        arrays, meta = load_shard(folder)
        ident = IdentitySamples(
            np.asarray(arrays["identity_index"]),
            np.asarray(arrays["identity"]),
            np.asarray(arrays["identity_faces"]),
        )
        return cls(
            name=folder.name,
            source=meta["source"],
            fps=float(meta["fps"]),
            frame_hw=(int(meta["height"]), int(meta["width"])),
            found=np.asarray(arrays["found"]),
            usable=np.asarray(arrays["usable"]),
            speech=np.asarray(arrays["speech"]),
            pose=np.asarray(arrays["pose"]),
            sharpness=np.asarray(arrays["sharpness"]),
            identity=ident,
            folder=folder,
        )

    def row(self) -> dict:
        """The report's numbers for this video."""
        pose = self.pose[self.usable]
        lo, hi = np.percentile(pose, [5, 95], axis=0) if len(pose) else np.full((2, 3), np.nan)
        sharp = self.sharpness[self.usable]
        return {
            "video": Path(self.source).name,
            "seconds": round(self.seconds, 2),
            "face": round(float(self.found.mean()), 3),
            "usable": round(float(self.usable.mean()), 3),
            "mouth_in_frame": round(float(self.usable.sum() / max(self.found.sum(), 1)), 3),
            "yaw": [round(float(lo[0]), 1), round(float(hi[0]), 1)],
            "pitch": [round(float(lo[1]), 1), round(float(hi[1]), 1)],
            "roll": [round(float(lo[2]), 1), round(float(hi[2]), 1)],
            "sharpness": round(float(np.median(sharp)), 1) if len(sharp) else None,
            "speech": round(float(self.speech.mean()), 3),
            "identity_checked": int(np.isfinite(self.identity.embedding[:, 0]).sum()),
            "second_face": round(float((self.identity.faces > 1).mean()), 3)
            if len(self.identity.faces)
            else 0.0,
        }


# ----------------------------------------------------------------------------- per frame


def mouth_in_frame(landmarks: np.ndarray, frame_hw: tuple[int, int]) -> np.ndarray:
    """(T,) whether both mouth corners lie at least ``MOUTH_MARGIN`` eye distances inside the
    frame; ``landmarks`` (T, 5, 2) pixels (NaN rows: False)."""
    h, w = frame_hw
    iod = np.linalg.norm(landmarks[:, 0] - landmarks[:, 1], axis=-1)[:, None]  # (T, 1)
    m = MOUTH_MARGIN * iod
    x, y = landmarks[:, 3:5, 0], landmarks[:, 3:5, 1]  # (T, 2)
    with np.errstate(invalid="ignore"):
        ok = (x - m >= 0) & (x + m <= w) & (y - m >= 0) & (y + m <= h)
    return ok.all(1)


def frame_loudness(audio: np.ndarray, sample_rate: int, fps: float, frames: int) -> np.ndarray:
    """(T,) RMS of the samples playing with each frame, in dBFS floored at ``FLOOR_DB``."""
    bounds = np.rint(np.arange(frames + 1) * sample_rate / fps).astype(int)
    x = np.concatenate([np.asarray(audio, np.float64), np.zeros(max(0, bounds[-1] - len(audio)))])
    energy = np.add.reduceat(x[: bounds[-1]] ** 2, bounds[:-1]) if frames else np.zeros(0)
    rms = np.sqrt(energy / np.maximum(np.diff(bounds), 1))
    return 20 * np.log10(np.maximum(rms, 10 ** (FLOOR_DB / 20)))


def speech_frames(loudness_db: np.ndarray, limits: FootageLimits) -> np.ndarray:
    """(T,) frames at least ``speech_db`` above the quiet floor and above ``speech_min_db``."""
    if not len(loudness_db):
        return np.zeros(0, bool)
    floor = np.percentile(loudness_db, QUIET_PERCENTILE)
    return loudness_db > max(floor + limits.speech_db, limits.speech_min_db)


# ----------------------------------------------------------------------------- scanning


def scan_video(path: Path, name: str, preset: PresetConfig, limits: FootageLimits, root: Path):
    """Scan one input into ``root/name`` (skipped when done); returns its :class:`VideoScan`."""
    from lipforcing.avatar.identity import identity_samples, sample_frames
    from lipforcing.data.preprocess import build_shard, is_done, write_shard
    from lipforcing.media.mask import mouth_box
    from lipforcing.media.pose import head_pose, sharpness

    if not is_done(root, name):
        try:
            arrays, meta = build_shard(path, preset)
        except MediaError as e:
            raise FootageError(f"{e}; {RECORD}") from None
        hw = (meta["height"], meta["width"])
        found, marks = arrays["found"], arrays["landmarks"]
        usable = found & mouth_in_frame(marks, hw)
        top, bottom, left, right = mouth_box(preset.media)
        sharp = sharpness(arrays["crops"][:, top:bottom, left:right])
        loud = frame_loudness(arrays["audio"], meta["sample_rate"], meta["fps"], len(found))
        checked = sample_frames(usable, meta["fps"], limits.identity_every_s)
        ident = identity_samples(path, meta["fps"], marks, checked)
        arrays |= {
            "usable": usable,
            "speech": speech_frames(loud, limits),
            "loudness": loud,
            "pose": head_pose(marks, hw),
            "sharpness": np.where(found, sharp, np.nan),
            "identity_index": ident.index,
            "identity": ident.embedding,
            "identity_faces": ident.faces,
        }
        write_shard(root, name, arrays, meta)
    return VideoScan.load(root / name)


def scan_footage(
    inputs: list[Path], preset: PresetConfig, limits: FootageLimits, root: Path
) -> list[VideoScan]:
    """Scan every input (one shard each, unique names) with a progress bar."""
    from tqdm import tqdm

    from lipforcing.data.preprocess import shard_name

    taken: set[str] = set()
    names = [shard_name(p, taken) for p in inputs]
    scans = []
    for path, name in tqdm(list(zip(inputs, names)), desc="footage", unit="video"):
        scans.append(scan_video(path, name, preset, limits, root))
    return scans


# ----------------------------------------------------------------------------- split + report


@dataclass(frozen=True)
class Segment:
    """Frames [start, stop) of one scanned video, in the training or held-out part."""

    name: str
    start: int
    stop: int
    part: str  # "train" | "heldout"


def split(scans: list[VideoScan], holdout: float) -> list[Segment]:
    """Training segments, then the held-out end: the last ``holdout`` share of all frames."""
    total = sum(s.frames for s in scans)
    cut = total - int(round(holdout * total))  # first held-out frame, global index
    out, offset = [], 0
    for s in scans:
        lo, hi = offset, offset + s.frames
        if lo < cut:
            out.append(Segment(s.name, 0, min(hi, cut) - lo, "train"))
        if hi > cut:
            out.append(Segment(s.name, max(cut, lo) - lo, s.frames, "heldout"))
        offset = hi
    return out


@dataclass
class FootageReport:
    """What the scan measured, and the split."""

    scans: list[VideoScan]
    segments: list[Segment]
    limits: FootageLimits

    def part_seconds(self, part: str) -> float:
        fps = {s.name: s.fps for s in self.scans}
        return sum((g.stop - g.start) / fps[g.name] for g in self.segments if g.part == part)

    @property
    def usable_seconds(self) -> float:
        return sum(float(s.usable.sum()) / s.fps for s in self.scans)

    def to_dict(self) -> dict:
        return {
            "videos": [s.row() for s in self.scans],
            "seconds": round(sum(s.seconds for s in self.scans), 2),
            "usable_seconds": round(self.usable_seconds, 2),
            "train_seconds": round(self.part_seconds("train"), 2),
            "heldout_seconds": round(self.part_seconds("heldout"), 2),
            "segments": [g.__dict__ for g in self.segments],
        }

    def table(self) -> str:
        head = "| video | s | face | mouth in frame | yaw | pitch | roll | sharpness | speech |"
        lines = [head, "|---|---:|---:|---:|---|---|---|---:|---:|"]
        for r in (s.row() for s in self.scans):
            lines.append(
                f"| {r['video']} | {r['seconds']:.1f} | {100 * r['face']:.0f}% "
                f"| {100 * r['mouth_in_frame']:.0f}% | {_range(r['yaw'])} | {_range(r['pitch'])} "
                f"| {_range(r['roll'])} | {r['sharpness'] or 0:.0f} | {100 * r['speech']:.0f}% |"
            )
        d = self.to_dict()
        lines.append(
            f"\n{d['seconds']:.1f} s of footage, {d['usable_seconds']:.1f} s with a usable face; "
            f"training on {d['train_seconds']:.1f} s, holding out the last "
            f"{d['heldout_seconds']:.1f} s"
        )
        return "\n".join(lines)


def _range(pair) -> str:
    return f"{pair[0]:+.0f}..{pair[1]:+.0f}°"


def check_footage(report: FootageReport) -> None:
    """Raise one :class:`FootageError` for the first problem found (see module docstring)."""
    lim = report.limits
    for s in report.scans:
        _check_video(s, lim)
    _check_people(report)
    _check_heldout_identity(report)
    if report.usable_seconds < lim.min_seconds:
        raise FootageError(
            f"only {report.usable_seconds:.1f} s of footage with a usable face; at least "
            f"{lim.min_seconds:.0f} s are needed: {RECORD}"
        )


def _check_video(s: VideoScan, lim: FootageLimits) -> None:
    name = Path(s.source).name
    r = s.row()
    if r["usable"] < lim.min_face_share:
        where = _spans(~s.usable, s.fps)
        raise FootageError(
            f"{name}: the face is out of view or leaves the frame in "
            f"{100 * (1 - r['usable']):.0f}% of the frames ({where}); {RECORD}"
        )
    yaw = np.nanmedian(np.abs(s.pose[s.usable, 0]))
    if yaw > lim.max_median_yaw:
        raise FootageError(f"{name}: the face is turned away (median yaw {yaw:.0f}°); {RECORD}")
    if r["sharpness"] is not None and r["sharpness"] < lim.min_blur:
        raise FootageError(
            f"{name}: the mouth is blurred (sharpness {r['sharpness']:.0f} < {lim.min_blur:.0f}); "
            "record in focus, with more light, at a higher resolution"
        )
    if r["speech"] < lim.min_speech_share:
        raise FootageError(
            f"{name}: speech in only {100 * r['speech']:.0f}% of the frames (silent footage?); "
            "record yourself talking, with the microphone on"
        )
    if r["second_face"] > lim.max_other_faces:
        raise FootageError(
            f"{name}: a second face is in view in {100 * r['second_face']:.0f}% of the checked "
            f"frames (several people); {RECORD}"
        )


def _check_heldout_identity(report: FootageReport) -> None:
    """The held-out end must show the person the training part shows."""
    train, held = _part_embeddings(report, "train"), _part_embeddings(report, "heldout")
    if len(train) < 2 or not len(held):
        return
    d = float(np.median(distances(held, medoid(train)[None])))
    if d > report.limits.max_identity_distance:
        first = next(g for g in report.segments if g.part == "heldout")
        scan = next(s for s in report.scans if s.name == first.name)
        raise FootageError(
            f"the held-out end of the footage ({Path(scan.source).name} from "
            f"{first.start / scan.fps:.1f} s) shows a different person than the rest (identity "
            f"distance {d:.2f} > {report.limits.max_identity_distance}); give footage of one "
            "person only"
        )


def _check_people(report: FootageReport) -> None:
    """Several people taking turns: checked frames far from the footage's medoid identity."""
    emb = _part_embeddings(report, "train")
    if len(emb) < 3:
        return
    far = distances(emb, medoid(emb)[None])[:, 0] > report.limits.max_identity_distance
    if far.mean() > report.limits.max_other_faces:
        raise FootageError(
            f"{100 * far.mean():.0f}% of the checked frames show someone else than the main "
            f"person (several people taking turns?); {RECORD}"
        )


def _part_embeddings(report: FootageReport, part: str) -> np.ndarray:
    scans = {s.name: s for s in report.scans}
    rows = [
        scans[g.name].identity.valid(g.start, g.stop) for g in report.segments if g.part == part
    ]
    return np.concatenate(rows) if rows else np.zeros((0, 128))


def _spans(mask: np.ndarray, fps: float, limit: int = 3) -> str:
    """'at 1.2-3.4 s, 5.0-6.1 s' for the first runs of True in ``mask``."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(int), [0]])))
    runs = list(zip(edges[::2], edges[1::2]))
    text = ", ".join(f"{a / fps:.1f}-{b / fps:.1f} s" for a, b in runs[:limit])
    return "at " + text + (", ..." if len(runs) > limit else "")


# ----------------------------------------------------------------------------- parts


PART_ARRAYS = ("crops", "transforms", "landmarks", "audio_features", "loudness")


def write_part(report: FootageReport, part: str, dest: Path) -> Path:
    """Write the segments of ``part`` as shards under ``dest`` (usable frames as ``found``)."""
    from lipforcing.data.preprocess import load_shard, write_shard

    scans = {s.name: s for s in report.scans}
    for g in (g for g in report.segments if g.part == part):
        arrays, meta = load_shard(scans[g.name].folder)
        rows = slice(g.start, g.stop)
        sr, fps = meta["sample_rate"], meta["fps"]
        out = {k: np.asarray(arrays[k][rows]) for k in PART_ARRAYS}
        out["found"] = np.asarray(arrays["usable"][rows])
        out["mask"] = np.asarray(arrays["mask"])
        a0, a1 = (int(round(f * sr / fps)) for f in (g.start, g.stop))
        out["audio"] = np.asarray(arrays["audio"][a0:a1])
        meta = {**meta, "frames": g.stop - g.start, "start_frame": g.start, "part": part}
        write_shard(dest, g.name, out, meta)
    (dest / "part.json").write_text(json.dumps({"part": part}))
    return dest


__all__ = [
    "FootageError",
    "FootageReport",
    "Segment",
    "VideoScan",
    "check_footage",
    "frame_loudness",
    "mouth_in_frame",
    "scan_footage",
    "scan_video",
    "speech_frames",
    "split",
    "write_part",
]
