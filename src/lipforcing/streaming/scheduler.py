"""One thread that steps the chunks of many sessions through one chunk runtime, batched.

A :class:`Scheduler` owns a :class:`~lipforcing.streaming.engine.ChunkEngine` and a thread.
Every pass it asks each attached :class:`~lipforcing.streaming.session.StreamSession` for its
next chunk (a session answers only when its audio, its pacing and its lead allow), steps all
the chunks it got in one :meth:`ChunkEngine.step_many`, hands each session its chunk, then
runs the pending KV writes. Sessions join and leave between passes; a stream's frames do not
depend on who else is in a pass (the engine is batch-invariant).

A session made without a scheduler gets a private one (one session, one thread), so a single
stream and a server's many streams run the same code. ``lipforcing serve --max-sessions N``
shares one scheduler between its sessions.

Locking: the scheduler never holds its own lock while calling into a session; sessions call
:meth:`Scheduler.wake` (which takes only the scheduler's lock) whenever something they would
answer differently changes (audio pushed, frames taken, segment ended, closed). The engine is
used under one more lock (``_engine_lock``): by the thread's steps and by :meth:`warmup`, which
sessions call from their own threads; :meth:`open` only allocates and takes no lock.
"""

from __future__ import annotations

import threading

from lipforcing.streaming.engine import ChunkEngine, EngineStream
from lipforcing.streaming.pipeline import Pipeline
from lipforcing.streaming.source import Source

IDLE_WAIT_S = 0.5  # longest sleep between passes with nothing to do (wakes come earlier)
REALTIME_WAIT_S = 0.005  # between passes while a realtime session is attached (pacing)


class Scheduler:
    """Steps the attached sessions' chunks together (see the module docstring)."""

    def __init__(
        self, pipeline: Pipeline, *, engine: ChunkEngine | None = None, private: bool = False
    ) -> None:
        self.pipeline = pipeline
        self.private = private  # one session's own: the thread ends when it leaves
        self.engine = engine if engine is not None else ChunkEngine(pipeline)
        self._sessions: list = []
        self._cv = threading.Condition()
        self._engine_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._woken = False
        self.passes = 0  # engine steps taken
        self.batch_sizes: list[int] = []  # chunks per step, the last 1000

    # ------------------------------------------------------------------ engine

    def open(self, source: Source, **kwargs) -> EngineStream:
        """``engine.open(source, **kwargs)``: it only allocates, so it never waits for a step.

        A session joining while the thread is in a long step (or a departed session's chunk is
        still being generated) is ready at once; its first chunk joins the next pass.
        """
        return self.engine.open(source, **kwargs)

    def warmup(self, source: Source) -> float:
        """Warm the engine up once (:meth:`ChunkEngine.warmup`); seconds spent (0 if warm).

        Once warm this returns at once, without waiting for a step in progress.
        """
        if self.engine.warm:
            return 0.0
        with self._engine_lock:
            return self.engine.warmup(source)

    # ------------------------------------------------------------------ sessions

    def attach(self, session) -> None:
        with self._cv:
            if self._closed:
                raise RuntimeError("the scheduler is closed")
            if session not in self._sessions:
                self._sessions.append(session)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name="lipsync")
                self._thread.start()
            self._wake_locked()

    def detach(self, session) -> None:
        with self._cv:
            if session in self._sessions:
                self._sessions.remove(session)
            self._wake_locked()

    @property
    def sessions(self) -> int:
        with self._cv:
            return len(self._sessions)

    def wake(self) -> None:
        """Something changed for a session: look again now."""
        with self._cv:
            self._wake_locked()

    def _wake_locked(self) -> None:
        self._woken = True
        self._cv.notify_all()

    def close(self) -> None:
        """Stop the thread (attached sessions get no more chunks)."""
        with self._cv:
            self._closed = True
            self._wake_locked()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        while True:
            with self._cv:
                if self._closed or (self.private and not self._sessions):
                    self._thread = None if self.private else self._thread
                    return
                sessions = list(self._sessions)
                self._woken = False
            work = []
            for session in sessions:
                item = session._next_request()
                if item is not None:
                    work.append((session, item))
            if work:
                self._step(work)
                continue
            with self._cv:
                if not self._woken and not self._closed:
                    realtime = any(s.realtime for s in self._sessions)
                    self._cv.wait(timeout=REALTIME_WAIT_S if realtime else IDLE_WAIT_S)

    def _step(self, work: list) -> None:
        requests = [request for _, (request, _) in work]
        try:
            with self._engine_lock:
                chunks = self.engine.step_many(requests)
        except BaseException as e:  # surfaced to every session of this pass
            for session, _ in work:
                session._fail(e)
            return
        self.passes += 1
        self.batch_sizes.append(len(chunks))
        del self.batch_sizes[:-1000]
        for (session, (_, meta)), chunk in zip(work, chunks):
            session._complete(chunk, meta)
        try:
            with self._engine_lock:
                self.engine.flush([r.stream for r in requests])  # after the frames are out
        except BaseException as e:
            for session, _ in work:
                session._fail(e)
