"""Admission: session slots that free the moment a client leaves, and the memory budget.

- :class:`SessionSlots`: at most ``max_sessions`` streaming sessions (WebSocket or WebRTC).
  A slot is returned as soon as its client disconnects; the session is taken off the
  scheduler in the background (the chunk being computed may still finish), so a quick
  reconnect is never told "busy" by a session that is already gone.
- :class:`MemoryGuard`: with ``memory_budget_mb`` set, a new session or upload is refused
  (503) while the server's resident memory plus what that admission may add
  (:data:`SESSION_RESERVE_MB`, or one worst-case decoded upload frame) would pass the budget.
  Stored sources are bounded separately (``max_source_store_mb``), so the budget holds as long
  as it covers the model, the source store and the admitted work.
"""

from __future__ import annotations

import contextlib
import os
import sys

from lipforcing.streaming.server.limits import MB, ServerLimits

SESSION_RESERVE_MB = 64.0  # what one more tiny-preset session may add (KV cache, codec, queues)
UPLOAD_FRAME_COPIES = 4  # decoded frame, its RGB conversion, the detector's copy, the JPEG input
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class Busy(Exception):
    """No room for one more session / upload; the message says why."""


class SessionSlots:
    """Counted places for streaming sessions (see the module docstring)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0

    def acquire(self):
        """Take a slot (Busy when none is free); returns the function that gives it back."""
        if self.used >= self.limit:
            raise Busy(f"server busy: all {self.limit} session slots are in use")
        self.used += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.used -= 1

        return release

    @contextlib.contextmanager
    def hold(self):
        release = self.acquire()
        try:
            yield
        finally:
            release()


def resident_bytes() -> int:
    """Resident memory of this process (Linux /proc; elsewhere the peak, which is larger)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE_BYTES
    except OSError:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KB elsewhere


class MemoryGuard:
    """Refuse new work above the memory budget (see the module docstring)."""

    def __init__(self, limits: ServerLimits) -> None:
        self.budget = None if limits.memory_budget_mb is None else limits.memory_budget_mb * MB
        self.upload_reserve = UPLOAD_FRAME_COPIES * 3 * limits.max_source_pixels

    def admit_session(self) -> None:
        self._admit("a new session", SESSION_RESERVE_MB * MB)

    def admit_upload(self) -> None:
        self._admit("an upload", self.upload_reserve)

    def _admit(self, what: str, reserve: float) -> None:
        if self.budget is None:
            return
        rss = resident_bytes()
        if rss + reserve > self.budget:
            raise Busy(
                f"server busy: {what} could pass its memory budget of {self.budget / MB:.0f} MB "
                f"({rss / MB:.0f} MB in use); try again later"
            )
