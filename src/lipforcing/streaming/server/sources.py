"""Uploaded sources: receiving a body, decoding it at low priority, keeping it in bounded memory.

- :class:`UploadWorkers`: at most ``max_uploads`` uploads are decoded at once (more are refused
  at once with 429, never queued), on worker threads whose OS scheduling priority is lowered
  (nice :data:`UPLOAD_NICE`), so face tracking of an upload takes the CPU only when live
  sessions leave it; FFmpeg decodes those uploads on one thread.
- :class:`SourceStore`: the default source plus up to ``max_sources`` uploads whose memory
  (:attr:`Source.nbytes`, JPEG-coded frames) stays under ``max_source_store_mb``: the oldest
  uploads are evicted to make room, and a source that alone is over the budget is refused.
  A session may ask for another face than its source was tracked with: the source's frames
  are tracked again with that choice once, on an upload worker
  (:meth:`UploadWorkers.with_face`), and the track kept beside the source (it shares the
  frames: a few KB per choice) until the source leaves the store.
- :func:`receive_body`: the request body spooled to a private temporary folder (removed when
  the decoding ends), with the size limit checked as it arrives and a time limit on the whole
  body.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import tempfile
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lipforcing.config import MediaConfig
from lipforcing.errors import MediaError, UserError
from lipforcing.media.faces import FaceChoice
from lipforcing.streaming.server.limits import MB, ServerLimits
from lipforcing.streaming.source import Source

log = logging.getLogger(__name__)
UPLOAD_NICE = 10  # niceness added to upload worker threads (live sessions keep theirs)
MAX_NICE = 19  # the lowest priority Linux has
MAX_NAME_CHARS = 100  # longest source name kept for display
DEFAULT_ID = "default"
MAX_FACE_TRACKS = 4  # other face choices kept per source (a track is small: frames are shared)


class UploadRefused(UserError):
    """An upload the server will not take; ``status`` is its HTTP status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def clean_name(name: str) -> str:
    """The display name of an upload: its last path part; control characters refused."""
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise UploadRefused("the file name has control characters", 400)
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    return base[:MAX_NAME_CHARS] or "upload"


async def receive_body(stream, path: Path, limits: ServerLimits) -> int:
    """Spool ``stream`` (the request's chunks) to ``path``; returns the byte count."""

    async def spool() -> int:
        size = 0
        with open(path, "wb") as f:
            async for part in stream:
                size += len(part)
                if size > limits.upload_bytes:
                    raise UploadRefused(f"upload over {limits.max_upload_mb:g} MB", 413)
                f.write(part)
        return size

    try:
        size = await asyncio.wait_for(spool(), limits.upload_timeout_s)
    except TimeoutError:
        raise UploadRefused(f"upload not received in {limits.upload_timeout_s:g} s", 408) from None
    if size == 0:
        raise UploadRefused("empty upload", 400)
    return size


def _lower_priority() -> None:
    """Thread initializer: this worker thread (and threads it starts) yields the CPU: its
    niceness is the server's plus :data:`UPLOAD_NICE` (at most :data:`MAX_NICE`)."""
    with contextlib.suppress(AttributeError, OSError):  # no per-thread nice off Linux
        tid = threading.get_native_id()
        nice = os.getpriority(os.PRIO_PROCESS, tid) + UPLOAD_NICE
        os.setpriority(os.PRIO_PROCESS, tid, min(nice, MAX_NICE))


class UploadWorkers:
    """Bounded, low-priority decoding of uploads (see the module docstring).

    A place is taken when the body starts arriving and given back when the decoding job has
    finished, even if the client has gone away meanwhile; so at most ``max_uploads`` uploads
    are ever being received or decoded.
    """

    def __init__(self, limits: ServerLimits, media: MediaConfig) -> None:
        self.limits, self.media = limits, media
        self.busy = 0
        self.pool = ThreadPoolExecutor(
            limits.max_uploads, thread_name_prefix="upload", initializer=_lower_priority
        )

    async def run(self, body, name: str, face: FaceChoice = None) -> Source:
        """Receive ``body`` (async chunks) and decode it into a compact source, tracking
        ``face`` (see :func:`lipforcing.media.faces.track_faces`)."""
        if self.busy >= self.limits.max_uploads:
            raise UploadRefused("too many uploads in progress; try again shortly", 429)
        self.busy += 1
        folder = Path(tempfile.mkdtemp(prefix="lipforcing-upload-"))
        job = None
        try:
            await receive_body(body, folder / "upload", self.limits)
            job = self.pool.submit(self._decode, folder, name, face)
        finally:
            if job is None:  # refused or failed before decoding: nothing runs on
                shutil.rmtree(folder, ignore_errors=True)
                self.busy -= 1
        loop = asyncio.get_running_loop()
        job.add_done_callback(lambda _: loop.call_soon_threadsafe(self._release))
        return await asyncio.wrap_future(job)

    async def with_face(self, source: Source, face: FaceChoice) -> Source:
        """``source`` tracked again with ``face`` (:meth:`Source.with_face`) on an upload
        worker: it takes an upload's place (429 when none is free) and its low priority."""
        if self.busy >= self.limits.max_uploads:
            raise UploadRefused("too many uploads or face trackings in progress; try again", 429)
        self.busy += 1
        try:
            job = self.pool.submit(source.with_face, self.media, face)
        except BaseException:
            self.busy -= 1
            raise
        loop = asyncio.get_running_loop()
        job.add_done_callback(lambda _: loop.call_soon_threadsafe(self._release))
        return await asyncio.wrap_future(job)

    def _release(self) -> None:
        self.busy -= 1

    def _decode(self, folder: Path, name: str, face: FaceChoice) -> Source:
        limits = self.limits
        try:
            return Source.from_upload(
                folder / "upload",
                self.media,
                budget=limits.media_budget,
                name=name,
                max_bytes=limits.store_bytes,
                face=face,
            )
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class SourceStore:
    """The sources sessions may use, bounded in count and memory (see the module docstring)."""

    def __init__(self, default: Source, limits: ServerLimits) -> None:
        self.limits = limits
        self.items: OrderedDict[str, Source] = OrderedDict({DEFAULT_ID: default})
        # per source id: the same frames tracked with other face choices (Source.with_face),
        # by the choice as reported; they share the source's frames and leave with it
        self.faces: dict[str, OrderedDict[str, Source]] = {}

    def __contains__(self, sid: object) -> bool:
        return sid in self.items

    def __getitem__(self, sid: str) -> Source:
        return self.items[sid]

    @property
    def upload_bytes(self) -> int:
        """Memory held by uploaded sources (the default source is not counted)."""
        return sum(s.nbytes for k, s in self.items.items() if k != DEFAULT_ID)

    def add(self, source: Source) -> str:
        """Keep ``source`` (evicting the oldest uploads to fit); returns its id."""
        need, budget = source.nbytes, self.limits.store_bytes
        if need > budget:
            raise MediaError(
                f"{source.name}: needs {need / MB:.0f} MB kept in memory, over the server's "
                f"{budget / MB:.0f} MB for sources; send a shorter or smaller video"
            )
        while self._uploads() and (
            len(self._uploads()) >= self.limits.max_sources or self.upload_bytes + need > budget
        ):
            evicted = self._uploads()[0]
            log.info("evicting source %s to make room", evicted)
            del self.items[evicted]
            self.faces.pop(evicted, None)
        sid = secrets.token_hex(6)
        self.items[sid] = source
        return sid

    def tracked(self, sid: str, face: str) -> Source | None:
        """Source ``sid`` as tracked with face choice ``face`` (as reported), if kept."""
        if sid in self.items and self.items[sid].face == face:
            return self.items[sid]
        return self.faces.get(sid, {}).get(face)

    def keep_tracked(self, sid: str, source: Source) -> Source:
        """Keep ``source``, source ``sid`` tracked with another face, for the next sessions
        (at most :data:`MAX_FACE_TRACKS` per source, the oldest dropped; nothing is kept when
        ``sid`` has gone meanwhile); returns it."""
        if sid in self.items:
            kept = self.faces.setdefault(sid, OrderedDict())
            kept[source.face] = source
            while len(kept) > MAX_FACE_TRACKS:
                kept.popitem(last=False)
        return source

    def _uploads(self) -> list[str]:
        return [k for k in self.items if k != DEFAULT_ID]

    def describe(self) -> list[dict]:
        return [describe(sid, src) for sid, src in self.items.items()]


def describe(sid: str, source: Source) -> dict:
    """What a client sees of a source."""
    h, w = source.frame_size
    return {
        "source": sid,
        "name": source.name,
        "frames": len(source),
        "width": w,
        "height": h,
        "face": source.face,
        "faces": source.faces,
        "face_choice": source.detected,  # sessions may choose another face (option "face")
        "frames_with_face": source.frames_with_face,
        "shot_cuts": len(source.cuts),
    }
