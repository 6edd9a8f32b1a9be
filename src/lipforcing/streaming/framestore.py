"""Compact storage of a source's frames: JPEG-coded in memory, decoded when a chunk reads them.

A source kept for live sessions is read a few frames at a time, so it need not sit in memory
decoded: a 120 s 1080p upload is 17 GB of RGB but a few hundred MB of JPEG. Two sequence types
stand in for the ``(T, H, W, 3)`` / ``(T, S, S, 3)`` uint8 arrays of a raw source:

- :class:`CodedFrames`: one JPEG per *decoded* frame plus an index from output frames to
  decoded frames, so a low-frame-rate or still-looking video conformed to 25 fps stores each
  picture once. ``frames[i]`` decodes (with a small byte-bounded cache).
- :class:`WarpedCrops`: the aligned face crops, cut on access from the decoded frame and its
  transform (exactly what :func:`lipforcing.media.align.warp_to_crop` cuts from that frame).

Both index like arrays (an int, a slice or an integer array) and report ``shape``, ``dtype``
and ``nbytes`` (what they hold in memory).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from lipforcing.errors import MediaError

JPEG_QUALITY = 92  # coded source frames; round trip above 40 dB PSNR on face video
FRAME_CACHE_BYTES = 48 * 2**20  # decoded frames kept per source (about two chunks at 1080p)


class _ByteLRU:
    """A thread-safe least-recently-used cache bounded by the bytes of its values."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.items: OrderedDict[int, np.ndarray] = OrderedDict()
        self.size = 0
        self.lock = threading.Lock()

    def get(self, key: int, make: Callable[[int], np.ndarray]) -> np.ndarray:
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        value = make(key)
        with self.lock:
            if key not in self.items:
                self.items[key] = value
                self.size += value.nbytes
            while self.size > self.capacity and len(self.items) > 1:
                _, old = self.items.popitem(last=False)
                self.size -= old.nbytes
        return value


class _ArrayLike:
    """Array-style indexing over ``item(i)`` (an int, a slice or an integer array)."""

    shape: tuple[int, ...]
    dtype = np.dtype(np.uint8)

    def __len__(self) -> int:
        return self.shape[0]

    def item(self, i: int) -> np.ndarray:
        raise NotImplementedError

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, int | np.integer):
            i = int(key)
            if not -len(self) <= i < len(self):
                raise IndexError(f"frame {i} out of range for {len(self)} frames")
            return self.item(i % len(self))
        if isinstance(key, slice):
            key = np.arange(len(self))[key]
        idx = np.asarray(key)
        if idx.dtype.kind not in "iu" or idx.ndim != 1:
            raise TypeError(f"index with an int, a slice or a 1-D integer array, not {key!r}")
        out = np.empty((len(idx), *self.shape[1:]), self.dtype)
        for j, i in enumerate(idx):
            out[j] = self[int(i)]
        return out

    def __iter__(self):
        for i in range(len(self)):
            yield self.item(i)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[np.arange(len(self))]
        return out if dtype is None else out.astype(dtype)


class CodedFrames(_ArrayLike):
    """Frames kept as JPEG bytes: ``pictures[index[i]]`` is output frame ``i``."""

    def __init__(self, pictures: list[bytes], index: np.ndarray, height: int, width: int) -> None:
        self.pictures = pictures
        self.index = np.asarray(index, np.int32)  # (T,) output frame -> picture
        self.shape = (len(self.index), height, width, 3)
        self._cache = _ByteLRU(FRAME_CACHE_BYTES)

    @property
    def nbytes(self) -> int:
        return sum(map(len, self.pictures)) + self.index.nbytes

    def item(self, i: int) -> np.ndarray:
        return self._cache.get(int(self.index[i]), self.picture)

    def picture(self, picture: int) -> np.ndarray:
        """Stored picture ``picture`` decoded (read-only; not cached: a whole pass over a clip
        does not flush the frames live sessions read)."""
        import cv2

        data = np.frombuffer(self.pictures[picture], np.uint8)
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
        if bgr is None or bgr.shape[:2] != self.shape[1:3]:
            raise MediaError(f"stored frame {picture} is corrupt")
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        rgb.setflags(write=False)  # shared through the cache: nobody may paint on it
        return rgb


def encode_picture(frame: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """One (H, W, 3) uint8 RGB frame as JPEG bytes."""
    import cv2

    ok, data = cv2.imencode(".jpg", frame[:, :, ::-1], [int(cv2.IMWRITE_JPEG_QUALITY), quality])
    if not ok:
        raise MediaError("JPEG encoding of a source frame failed")
    return data.tobytes()


class WarpedCrops(_ArrayLike):
    """The aligned crops of ``frames``: crop ``i`` is frame ``i`` warped by ``transforms[i]``
    (``frames``: :class:`CodedFrames` or a (T, H, W, 3) array)."""

    def __init__(
        self, frames: CodedFrames | np.ndarray, transforms: np.ndarray, crop_size: int
    ) -> None:
        self.frames, self.transforms = frames, np.asarray(transforms, np.float64)
        self.shape = (len(frames), crop_size, crop_size, 3)

    @property
    def nbytes(self) -> int:
        return 0  # cut on access; the frames and transforms are counted by their owners

    def item(self, i: int) -> np.ndarray:
        from lipforcing.media.align import warp_to_crop

        return warp_to_crop(self.frames[i][None], self.transforms[i][None], self.shape[1])[0]
