"""Avatars on the server (``lipforcing serve --avatars DIR``): the avatars in a folder as sources
that stream with their own student, and avatar builds from uploaded footage.

- Sources: avatar ``NAME`` of the folder is the source id ``avatar:NAME``; a session on it runs
  the avatar's student and codec (loaded once, with the server pipeline's device, dtype and
  execution options, then kept, on a scheduler of its own) on the avatar's idle base.
- Builds: ``POST /api/avatars?name=NAME`` with a video of the person talking (with its sound)
  spools the body within ``max_avatar_upload_mb``, accepts only the video containers the page
  offers (recognised by content, :func:`lipforcing.media.probe.sniff`) whose headers fit
  ``max_avatar_s`` and the frame-size budget and declare a sound track, then runs
  ``lipforcing avatar create FILE --out DIR/NAME.avatar`` in a child process at low priority
  (one build at a time; live sessions keep the CPU first). Progress is the build's own
  ``progress.json`` (stage, time left from its estimate); a refused footage or a failure is
  the command's one-line ``error:`` message.
- A build the server did not see finish (the server stopped) is listed as interrupted with the
  command that resumes it.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from lipforcing.errors import UserError
from lipforcing.streaming.server.sources import UploadRefused, receive_body

log = logging.getLogger(__name__)
PREFIX = "avatar:"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")
BUILD_NICE = 10  # niceness of the build process (live sessions come first)
UPLOADS = ".uploads"  # subfolder of the avatar folder holding footage and build logs
SUFFIX = {"mp4": ".mp4", "mkv": ".mkv"}


@dataclass
class Build:
    """One ``avatar create`` child process."""

    name: str
    process: subprocess.Popen
    log_path: Path


class AvatarStore:
    """The avatars of one folder, their loaded pipelines, and at most one running build."""

    def __init__(self, folder: str | Path, server_pipeline, limits) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise UserError(f"--avatars {folder}: no such folder")
        self.server_pipeline, self.limits = server_pipeline, limits
        self.loaded: dict[str, tuple] = {}
        self.lock = threading.Lock()
        self.build: Build | None = None

    # ------------------------------------------------------------------ streaming

    def has(self, sid: str) -> bool:
        return sid.startswith(PREFIX) and (self.folder / f"{sid[len(PREFIX) :]}.avatar").is_dir()

    def inputs(self, sid: str):
        """(scheduler, source) of source id ``avatar:NAME``, loaded once: the avatar's student
        on a scheduler of its own (shared by every session on that avatar), its idle base."""
        from lipforcing.avatar import Avatar
        from lipforcing.streaming.scheduler import Scheduler

        name = sid[len(PREFIX) :]
        with self.lock:
            if name not in self.loaded:
                avatar = Avatar.load(self.folder / f"{name}.avatar")
                p = self.server_pipeline
                pipe = avatar.pipeline(device=p.device, dtype=p.dtype, options=p.requested)
                self.loaded[name] = (Scheduler(pipe), avatar.source(pipe.preset.media))
            return self.loaded[name]

    def describe(self) -> list[dict]:
        """The ready avatars as sources (the page's source list)."""
        from lipforcing.avatar.bundle import list_avatars

        out = []
        for a in list_avatars(self.folder):
            base = a.card.get("base", {})
            out.append(
                {
                    "source": PREFIX + a.name,
                    "name": f"{a.name} (avatar)",
                    "frames": base.get("frames"),
                    "width": base.get("width"),
                    "height": base.get("height"),
                    "avatar": a.summary(),
                }
            )
        return out

    # ------------------------------------------------------------------ builds

    def status(self) -> dict:
        """Ready avatars, the running build with its progress, failed / interrupted builds."""
        from lipforcing.avatar.create import read_progress

        builds = []
        uploads = self.folder / UPLOADS
        for log_path in sorted(uploads.glob("*.log")) if uploads.is_dir() else []:
            name = log_path.stem
            out = self.folder / f"{name}.avatar"
            work = self.folder / f"{name}.avatar.partial"
            running = self.build is not None and self.build.name == name
            if running and self.build.process.poll() is None:
                builds.append({"name": name, "state": "building", "progress": read_progress(work)})
            elif out.is_dir():
                builds.append({"name": name, "state": "ready"})
            elif work.is_dir():
                video = next((v for v in map(uploads.joinpath, _videos(name)) if v.is_file()), None)
                builds.append(
                    {
                        "name": name,
                        "state": "interrupted",
                        "message": f"resume with: lipforcing avatar create {video} --out {out}",
                    }
                )
            else:
                builds.append({"name": name, "state": "failed", "message": _last_error(log_path)})
        return {"avatars": self.describe(), "builds": builds}

    async def create(self, body, name: str) -> dict:
        """Receive footage and start ``avatar create`` on it (see the module docstring)."""
        from lipforcing.media.probe import MediaBudget, probe_video, sniff

        if not NAME.match(name):
            raise UploadRefused("an avatar name is 1-40 letters, digits, - or _", 400)
        if (self.folder / f"{name}.avatar").exists():
            raise UploadRefused(f"an avatar named {name} exists", 409)
        if self.build is not None and self.build.process.poll() is None:
            raise UploadRefused(f"the avatar {self.build.name} is being built; try later", 429)
        uploads = self.folder / UPLOADS
        uploads.mkdir(exist_ok=True)
        spool = uploads / f"{name}.upload"
        await receive_body(body, spool, _avatar_limits(self.limits))
        try:
            kind = sniff(spool, name)
            if kind not in SUFFIX:
                raise UploadRefused("an avatar needs a video (mp4, mov, mkv or webm)", 422)
            budget = MediaBudget(
                max_seconds=self.limits.max_avatar_s, max_pixels=self.limits.max_source_pixels
            )
            probe_video(spool, kind, budget, name)
            if not _has_sound(spool, kind):
                raise UploadRefused(
                    "the video has no sound: an avatar learns from the person's own voice", 422
                )
        except BaseException:
            spool.unlink(missing_ok=True)
            raise
        video = spool.rename(uploads / f"{name}{SUFFIX[kind]}")
        self.build = self._start(name, video, uploads / f"{name}.log")
        return {"name": name, "state": "building"}

    def _start(self, name: str, video: Path, log_path: Path) -> Build:
        out = self.folder / f"{name}.avatar"
        cmd = [sys.executable, "-m", "lipforcing.cli.main", "avatar", "create", str(video)]
        cmd += ["--out", str(out), "--threads", "1"]
        with open(log_path, "w") as log_file:
            process = subprocess.Popen(
                cmd,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_lower_priority if os.name == "posix" else None,  # noqa: PLW1509
            )
        log.info("building avatar %s (pid %d)", name, process.pid)
        return Build(name, process, log_path)

    def close(self) -> None:
        """Stop a running build (its partial folder stays; rerunning the command resumes) and
        the avatars' schedulers (after their sessions are retired)."""
        if self.build is not None and self.build.process.poll() is None:
            self.build.process.terminate()
        with self.lock:
            for scheduler, _ in self.loaded.values():
                scheduler.close()


def _has_sound(path: Path, kind: str) -> bool:
    """Whether the container declares an audio stream (headers only, nothing decoded)."""
    from lipforcing.media.probe import open_video

    with open_video(path, kind) as container:
        return bool(container.streams.audio)


def _videos(name: str) -> list[str]:
    return [f"{name}{suffix}" for suffix in SUFFIX.values()]


def _lower_priority() -> None:
    os.nice(BUILD_NICE)


def _avatar_limits(limits):
    """The server limits with the avatar footage's upload size."""
    import dataclasses

    return dataclasses.replace(limits, max_upload_mb=limits.max_avatar_upload_mb)


def _last_error(log_path: Path) -> str:
    """The build's ``error:`` line (its one-line reason), else its last line."""
    try:
        lines = [x.strip() for x in log_path.read_text(errors="replace").splitlines() if x.strip()]
    except OSError:
        return "the build failed"
    errors = [x for x in lines if x.startswith("error:")]
    return (errors or lines or ["the build failed"])[-1][:400]


__all__ = ["PREFIX", "AvatarStore", "Build"]
