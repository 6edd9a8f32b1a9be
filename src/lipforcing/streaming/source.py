"""The source a session animates: full frames, the face track, aligned crops, ping-pong order.

The face is tracked once, up front, over the whole source (a still image is a one-frame video).
Output frame ``n`` shows source frame :func:`pingpong_index` ``(n, T)``: the source plays
forward, then backward, then forward again, so a stream that outlasts the source never jumps.

Two ways in: :meth:`Source.from_file` / :meth:`Source.from_frames` hold the frames as one
array (a file the user names on the command line); :meth:`Source.from_upload` is for files
nobody vouches for (the server's uploads): the kind is sniffed from the bytes, the budgets are
checked from the container and then per decoded frame, the face is tracked one frame at a time
(the clip is never decoded into memory at once), and the frames are kept JPEG-coded
(:mod:`lipforcing.streaming.framestore`), the crops cut on access.

The tracker's per-frame "face found" flags travel with the source as ``paste_weights``: the
engine leaves frames without a usable face untouched and fades the mouth patch at their edges
(:func:`lipforcing.media.composite.paste_weights`).

Another face of the same frames: :meth:`Source.with_face` tracks the frames the source holds
again with another face choice (a detector-tracked source only) and shares them: what the
server does for a session that asks for a face its source was not tracked with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lipforcing.config import MediaConfig
from lipforcing.errors import MediaError, UserError
from lipforcing.media.faces import FaceChoice, describe_face
from lipforcing.media.inputs import MAX_SOURCE_SECONDS
from lipforcing.media.probe import MediaBudget
from lipforcing.streaming.framestore import CodedFrames, WarpedCrops, encode_picture

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def pingpong_index(n: int | np.ndarray, length: int) -> int | np.ndarray:
    """Index into a clip of ``length`` frames played forward, backward, forward, ..."""
    if length == 1:
        return n * 0
    period = 2 * (length - 1)
    r = n % period
    return (
        np.where(r < length, r, period - r)
        if isinstance(r, np.ndarray)
        else (r if r < length else period - r)
    )


@dataclass
class Source:
    """A source video conformed to the media frame rate, with its face track.

    Attributes:
        frames: full frames, (T, H, W, 3) uint8 RGB (an array, or :class:`CodedFrames`).
        crops: aligned face crops, (T, S, S, 3) uint8 (an array, or :class:`WarpedCrops`).
        transforms: frame -> crop affine transforms, (T, 2, 3).
        fps: frame rate of ``frames`` (the media config's rate).
        source_fps: frame rate of the file it was read from (None for an image).
        found: (T,) bool, the tracker found the chosen face in the frame (default: all).
        paste_weights: (T,) float32 in [0, 1], strength of the mouth patch per frame: 0 where
            there is no usable face (the frame is shown untouched), ramping at the edges
            (default: from ``found``).
        cuts: first frames of new shots, where the face track restarted.
        face: the face choice, as the report says it ("largest", "center", ...).
        detected: the face was tracked by the detector here (False: the track was given,
            known landmarks or an avatar's stored track: no other face to choose, see
            :meth:`with_face`).
        faces: faces the detector saw in the first frame where the chosen face was found (at
            the size that found it; None when no detector ran).
    """

    frames: np.ndarray | CodedFrames
    crops: np.ndarray | WarpedCrops
    transforms: np.ndarray
    fps: float
    source_fps: float | None = None
    name: str = "frames"
    found: np.ndarray | None = None
    paste_weights: np.ndarray | None = None
    cuts: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    face: str = "largest"
    detected: bool = False
    faces: int | None = None

    def __post_init__(self) -> None:
        from lipforcing.media.composite import paste_weights

        n = len(self.transforms)
        self.found = np.ones(n, bool) if self.found is None else np.asarray(self.found, bool)
        if self.paste_weights is None:
            self.paste_weights = paste_weights(self.found, self.cuts)
        if len(self.found) != n or len(self.paste_weights) != n:
            raise MediaError(f"{self.name}: {n} transforms but {len(self.found)} face flags")

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def frames_with_face(self) -> int:
        """Frames in which the chosen face was found."""
        return int(self.found.sum())

    def face_report(self) -> str:
        """One line for reports: which face, how many frames had it, shot cuts."""
        n = len(self.found)
        cuts = f", {len(self.cuts)} shot cut{'s' * (len(self.cuts) != 1)}" if len(self.cuts) else ""
        return (
            f"face: {self.face}; found in {self.frames_with_face} of {n} frames "
            f"({100 * self.frames_with_face / max(n, 1):.0f}%){cuts}"
        )

    @property
    def frame_size(self) -> tuple[int, int]:
        """(height, width) of a full frame."""
        return self.frames.shape[1], self.frames.shape[2]

    @property
    def nbytes(self) -> int:
        """Memory the source holds (frames, crops, transforms), bytes."""
        return self.frames.nbytes + self.crops.nbytes + self.transforms.nbytes

    def indices(self, start: int, count: int) -> np.ndarray:
        """Source frame indices of output frames [start, start + count)."""
        return pingpong_index(np.arange(start, start + count), len(self))

    @classmethod
    def from_frames(
        cls,
        frames: np.ndarray,
        cfg: MediaConfig,
        *,
        landmarks: np.ndarray | None = None,
        source_fps: float | None = None,
        name: str = "frames",
        face: FaceChoice = None,
    ) -> Source:
        """Track the face in ``frames`` (T, H, W, 3) uint8 and cut the aligned crops.

        Args:
            landmarks: (T, 5, 2) known 5-point landmarks (SynthTalk); no detector runs.
            face: which face to drive when several are present (``faces.track_faces``).
        """
        from lipforcing.media.align import warp_to_crop
        from lipforcing.media.faces import require_face, track_faces

        frames = np.ascontiguousarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
            raise MediaError(f"{name}: expected (T, H, W, 3) uint8 frames, got {frames.shape}")
        track = track_faces(frames, cfg, landmarks=landmarks, face=face)
        require_face(track, name)
        crops = warp_to_crop(frames, track, cfg.crop_size)
        transforms = np.asarray(track.transforms, dtype=np.float64)
        detected = landmarks is None
        return cls(
            frames,
            crops,
            transforms,
            cfg.fps,
            source_fps,
            name,
            found=track.found,
            cuts=track.cuts,
            face=describe_face(face),
            detected=detected,
            faces=_faces_seen(frames[np.argmax(track.found)]) if detected else None,
        )

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        cfg: MediaConfig,
        *,
        max_seconds: float = MAX_SOURCE_SECONDS,
        face: FaceChoice = None,
    ) -> Source:
        """Read a video (conformed to ``cfg.fps``) or a still image and track its face."""
        path = Path(path)
        if not path.is_file():
            raise MediaError(f"no such file: {path}")
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return cls.from_frames(_read_image(path), cfg, name=path.name, face=face)
        from lipforcing.media.io import read_video

        fps = _file_fps(path)
        limit = int(max_seconds * (fps or 60.0)) + 1  # decode no more than this (hostile files)
        clip = read_video(path, fps=cfg.fps, max_frames=limit)
        if len(clip.frames) > round(max_seconds * cfg.fps):  # exactly max_seconds is accepted
            raise MediaError(f"{path.name}: longer than {max_seconds:.0f} s; trim the source")
        frames = np.asarray(clip.frames)
        return cls.from_frames(frames, cfg, source_fps=fps, name=path.name, face=face)

    @classmethod
    def from_upload(
        cls,
        path: str | Path,
        cfg: MediaConfig,
        *,
        budget: MediaBudget,
        name: str,
        max_bytes: int | None = None,
        face: FaceChoice = None,
    ) -> Source:
        """Read an untrusted file (see the module docstring); ``name`` is what errors call it.

        ``max_bytes`` bounds the coded frames; ingesting stops as soon as they pass it. ``face``
        chooses the face as in :meth:`from_frames`; the track restarts at shot cuts and the
        face flags give the paste weights, as for a file.

        Raises:
            MediaError: not an accepted kind, over ``budget``, unreadable, or no face.
        """
        from lipforcing.media.io import Untrusted, iter_frames
        from lipforcing.media.probe import IMAGE_KINDS, probe_video, read_image, sniff

        if cfg.detector != "dlib":
            raise UserError(f"uploads need the dlib face detector, not {cfg.detector!r}")
        kind = sniff(path, name)
        if kind in IMAGE_KINDS:
            pairs, fps = enumerate(read_image(path, kind, budget, name)), None
        else:
            fps = probe_video(path, kind, budget, name).fps
            pairs = iter_frames(path, cfg.fps, untrusted=Untrusted(kind, budget, name))
        from lipforcing.media.faces import require_face

        frames, following = _ingest(pairs, cfg, name, max_bytes, face)
        track = following.track(frames.index, cfg)
        require_face(track, name)
        return cls._sharing(frames, track, cfg, fps, name, face, following.faces)

    @classmethod
    def _sharing(
        cls, frames, track, cfg: MediaConfig, fps, name: str, face: FaceChoice, faces: int | None
    ) -> Source:
        """A source on ``frames`` (kept as they are) with ``track``; crops cut on access."""
        return cls(
            frames,
            WarpedCrops(frames, track.transforms, cfg.crop_size),
            np.asarray(track.transforms, np.float64),
            cfg.fps,
            fps,
            name,
            found=track.found,
            cuts=track.cuts,
            face=describe_face(face),
            detected=True,
            faces=faces,
        )

    def with_face(self, cfg: MediaConfig, face: FaceChoice) -> Source:
        """This source's frames with ``face`` driven: the frames are tracked again with that
        choice and shared (crops cut on access); ``self`` when it already drives that face.

        A raw source (:meth:`from_file`) is tracked as :meth:`from_frames` tracks it, so the
        result equals ``Source.from_file(path, cfg, face=face)``; a compact one (an upload)
        is tracked over its stored pictures as :meth:`from_upload` tracks decoded frames.

        Raises:
            UserError: the track was given (known landmarks, an avatar: nothing to choose),
                or the preset has no face detector.
            MediaError: no frame has the chosen face.
        """
        from lipforcing.media.faces import track_faces

        if describe_face(face) == self.face:
            return self
        if not self.detected:
            raise UserError(
                f"{self.name}: its face track was given (known landmarks or an avatar's), not "
                "detected: there is no other face to choose"
            )
        if cfg.detector != "dlib":
            raise UserError(f"choosing a face needs the dlib face detector, not {cfg.detector!r}")
        if isinstance(self.frames, CodedFrames):
            following = _Following(face)
            for picture in range(len(self.frames.pictures)):
                following.add(self.frames.picture(picture))
            track, faces = following.track(self.frames.index, cfg), following.faces
        else:
            track, faces = track_faces(self.frames, cfg, face=face), None
        if not track.found.any():
            raise MediaError(f"{self.name}: no face matches face {describe_face(face)!r}")
        if faces is None:
            faces = _faces_seen(self.frames[np.argmax(track.found)])
        return Source._sharing(self.frames, track, cfg, self.source_fps, self.name, face, faces)


def _ingest(pairs, cfg: MediaConfig, name: str, max_bytes: int | None, face: FaceChoice):
    """Code each decoded frame once, follow the face on it, and lay both on the output frames:
    returns (:class:`CodedFrames`, the :class:`_Following` of the pictures).

    ``pairs`` yields (decoded index, frame) per output frame, as :func:`iter_frames` does; a
    decoded frame repeated by conforming is coded and searched once (and seen once by the
    follower's shot-cut detector).
    """
    following = _Following(face)
    pictures: list[bytes] = []
    index = []
    last, size, coded = None, None, 0
    for i, frame in pairs:
        if i != last:
            size = size or frame.shape
            if frame.shape != size:
                raise MediaError(
                    f"{name}: the frame size changes mid-video ({size} -> {frame.shape})"
                )
            following.add(frame)
            pictures.append(encode_picture(frame))
            coded += len(pictures[-1])
            if max_bytes is not None and coded > max_bytes:
                raise MediaError(
                    f"{name}: needs more than {max_bytes / 1e6:.0f} MB kept in memory; "
                    "send a shorter or smaller video"
                )
            last = i
        index.append(len(pictures) - 1)
    return CodedFrames(pictures, np.asarray(index), size[0], size[1]), following


class _Following:
    """One face followed over a clip's distinct pictures, one at a time (nothing kept but
    the points): :meth:`add` each picture, then :meth:`track` lays them on the output frames."""

    def __init__(self, face: FaceChoice) -> None:
        from lipforcing.media.faces import FaceFollower

        self.follow = FaceFollower(face)
        self.points: list[np.ndarray] = []
        self.boxes: list[np.ndarray] = []
        self.size: tuple[int, int] | None = None
        self.faces: int | None = None  # faces seen where the chosen one was first found

    def add(self, frame: np.ndarray) -> None:
        self.size = self.size or frame.shape[:2]
        p68, box = self.follow(frame)
        self.points.append(np.full((68, 2), np.nan) if p68 is None else p68)
        self.boxes.append(np.full(4, np.nan) if box is None else box)
        if box is not None and self.faces is None:
            self.faces = _faces_seen(frame, self.follow.side)

    def track(self, index: np.ndarray, cfg: MediaConfig):
        """The :class:`~lipforcing.media.faces.FaceTrack` of the output frames (``index``:
        output frame -> picture)."""
        from lipforcing.media.faces import track_from_landmarks as from_landmarks

        index = np.asarray(index)
        landmarks = np.asarray(self.points)[index]  # 68 points: the preset's alignment picks
        boxes = np.asarray(self.boxes)[index]
        found = np.isfinite(boxes[:, 0])
        cuts = np.searchsorted(index, self.follow.cuts())  # first output frame of each shot
        return from_landmarks(landmarks, found, cfg, self.size, boxes, cuts)


def _faces_seen(frame: np.ndarray, side: int | None = None) -> int:
    """Faces the detector finds in ``frame`` (at ``side``, default its first size); at least
    1, since the caller's tracker found one there (possibly at a larger size)."""
    from lipforcing.media.faces import DETECT_SIDE, detect_boxes

    return max(1, len(detect_boxes(frame, side or DETECT_SIDE)))


def _read_image(path: Path) -> np.ndarray:
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise MediaError(f"cannot read image {path}")
    return np.ascontiguousarray(bgr[None, :, :, ::-1])


def _file_fps(path: Path) -> float | None:
    """The frame rate the file declares (the session itself runs at the media rate)."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.base_rate
            return float(rate) if rate else None
    except (av.error.FFmpegError, IndexError):
        return None
