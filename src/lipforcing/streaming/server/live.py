"""What every transport does with a session: open it, apply control messages, retire it.

The WebSocket and WebRTC handlers both open a :class:`StreamSession` through
:func:`open_session` (source looked up, its face chosen (:func:`session_face`), options
applied, the memory budget checked; every
session on the server's one :class:`~lipforcing.streaming.scheduler.Scheduler`, or on its
avatar's own with ``serve --avatars``), pass the
client's JSON control messages to :func:`apply_control`, and hand the session to
:meth:`Retirer.retire` when the client leaves: the session is stopped on a worker thread in the
background, so the caller (and the session slot) never waits for the chunk being generated.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from lipforcing.errors import UserError
from lipforcing.media.faces import describe_face
from lipforcing.media.vad import SilenceGateConfig
from lipforcing.streaming.server.capacity import Busy
from lipforcing.streaming.server.protocol import ProtocolError, SessionOptions, message
from lipforcing.streaming.server.sources import UploadRefused
from lipforcing.streaming.session import StreamSession
from lipforcing.streaming.source import Source

log = logging.getLogger(__name__)
RETIRE_THREADS = 2  # threads that stop finished sessions


def session_inputs(state, sid: str):
    """(scheduler, source) of source id ``sid``: a stored source on the server's scheduler
    (the server's student), or an avatar (``avatar:NAME``) on its own scheduler with its own
    student (ProtocolError for an unknown id)."""
    if sid in state.sources:
        return state.scheduler, state.sources[sid]
    if state.avatars is not None and state.avatars.has(sid):
        return state.avatars.inputs(sid)
    raise ProtocolError(f"unknown source {sid[:40]!r}", fatal=True)


async def open_session(state, options: SessionOptions) -> StreamSession:
    """A new session on the chosen source and face, with the chosen silence gate
    (ProtocolError for an unknown source or a face it cannot drive, Busy when the face must be
    tracked and every upload worker is busy)."""
    scheduler, source = await asyncio.to_thread(session_inputs, state, options.source)
    if options.face is not None:
        source = await session_face(state, options, source)
    state.memory.admit_session()
    return await asyncio.to_thread(
        StreamSession,
        scheduler.pipeline,
        source,
        seed=options.seed,
        realtime=options.realtime,
        max_pending_s=state.limits.max_pending_s,
        scheduler=scheduler,
        silence_gate=SilenceGateConfig(enabled=options.silence_gate),
    )


async def session_face(state, options: SessionOptions, source: Source) -> Source:
    """The session's source with the face of ``options.face``: the stored source when it was
    tracked with that choice, else its frames tracked again once (on an upload worker) and
    kept beside it for later sessions. Avatars drive their own face: no choice."""
    sid, choice = options.source, options.face_choice
    if sid not in state.sources:
        raise ProtocolError(
            "an avatar drives its own face: the face option is for sources", fatal=True
        )
    kept = state.sources.tracked(sid, describe_face(choice))
    if kept is not None:
        return kept
    log.info("tracking source %s again with face %s", sid, describe_face(choice))
    try:
        tracked = await state.uploads.with_face(source, choice)
    except UploadRefused as e:
        raise Busy(str(e)) from None
    except UserError as e:  # known landmarks, no detector, no such face
        raise ProtocolError(str(e), fatal=True) from None
    return state.sources.keep_tracked(sid, tracked)


def apply_control(session: StreamSession | None, msg: dict) -> str | None:
    """Apply one control message; returns a reply message, if any."""
    kind = msg["type"]
    if kind == "ping":
        return message("pong")
    if kind == "start":
        raise ProtocolError("the session has already started")
    if kind not in ("end_segment", "clear", "close"):
        raise ProtocolError(f"unknown message type {kind[:40]!r}")
    if session is None:
        raise ProtocolError(f"{kind!r} before start")
    {"end_segment": session.end_segment, "clear": session.clear, "close": session.close}[kind]()
    return None


def ready_fields(session: StreamSession, limits) -> dict:
    """What the ``ready`` message tells: rates, frame size, the face driven, the gate."""
    source = session.stream.source
    h, w = source.frame_size
    return {
        "fps": session.fps,
        "sample_rate": session.sample_rate,
        "width": w,
        "height": h,
        "face": source.face,
        "frames_with_face": source.frames_with_face,
        "silence_gate": session.stream.silence_gate.enabled,
        "limits": limits.public(),
    }


class Retirer:
    """Stops finished sessions off the event loop, keeping a handle on each stop until done.

    Stopping takes the session off its scheduler (a session with a private scheduler joins
    that thread, which may be inside a chunk), so it runs on its own small pool: the default
    executor, which encodes frames, is never tied up by it.
    """

    def __init__(self) -> None:
        self.pending: set[asyncio.Task] = set()
        self.pool = ThreadPoolExecutor(RETIRE_THREADS, thread_name_prefix="retire")

    def retire(self, session: StreamSession) -> None:
        loop = asyncio.get_running_loop()
        task = loop.create_task(_await(loop.run_in_executor(self.pool, session.stop)))
        self.pending.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self.pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("stopping a session failed", exc_info=task.exception())

    async def wait(self) -> None:
        """Wait for every stop still running (server shutdown, tests)."""
        if self.pending:
            await asyncio.gather(*self.pending, return_exceptions=True)
        self.pool.shutdown(wait=False)


async def _await(future) -> None:
    await future
