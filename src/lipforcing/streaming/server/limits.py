"""Every limit of the server in one frozen dataclass, and the check on where it may listen.

The defaults suit one user on a laptop; ``lipforcing serve`` exposes the ones people change.
Each limit turns into one clear refusal (HTTP 4xx / 503, or a WebSocket error and close).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from lipforcing.errors import UserError
from lipforcing.media.probe import MediaBudget

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
MB = 1_000_000


@dataclass(frozen=True, kw_only=True)
class ServerLimits:
    """Sizes, counts and times the server enforces (units in the names)."""

    max_upload_mb: float = 50.0  # largest source upload body, megabytes
    max_uploads: int = 1  # uploads decoded at once (more get 429)
    upload_timeout_s: float = 60.0  # time to receive one upload body, seconds
    max_source_s: float = 120.0  # longest source video, seconds of presentation time
    max_source_pixels: int = 3840 * 2160  # largest source frame, width * height
    max_sources: int = 8  # uploaded sources kept (oldest evicted)
    max_source_store_mb: float = 1024.0  # memory of all kept uploads together, megabytes
    max_sessions: int = 2  # concurrent streaming sessions
    max_session_s: float = 600.0  # wall-clock length of one session, seconds
    idle_timeout_s: float = 60.0  # close a session after this long without a client message
    auth_timeout_s: float = 10.0  # time for a WebSocket client to send its first message
    max_audio_message_s: float = 10.0  # audio in one binary message, seconds
    max_pending_s: float = 120.0  # audio waiting to be generated, seconds
    max_text_message_kb: float = 64.0  # one JSON control message, kilobytes
    max_offer_kb: float = 64.0  # one WebRTC offer body, kilobytes
    memory_budget_mb: float | None = None  # refuse new sessions / uploads above this RSS
    max_avatar_upload_mb: float = 500.0  # largest footage upload for an avatar build, megabytes
    max_avatar_s: float = 600.0  # longest footage for an avatar build, seconds

    def __post_init__(self) -> None:
        counts = (self.max_uploads, self.max_sources, self.max_sessions)
        if min(counts) < 1:
            raise UserError("max uploads, sources and sessions must be at least 1")
        sizes = (
            self.max_upload_mb,
            self.max_source_s,
            self.max_source_store_mb,
            self.max_session_s,
            self.idle_timeout_s,
            self.upload_timeout_s,
            self.auth_timeout_s,
            self.max_audio_message_s,
            self.max_pending_s,
            self.max_avatar_upload_mb,
            self.max_avatar_s,
        )
        if min(sizes) <= 0:
            raise UserError("server limits must be positive")
        if self.memory_budget_mb is not None and self.memory_budget_mb <= 0:
            raise UserError("the memory budget must be positive")

    @property
    def media_budget(self) -> MediaBudget:
        """What one uploaded file may cost once decoded."""
        return MediaBudget(max_seconds=self.max_source_s, max_pixels=self.max_source_pixels)

    @property
    def upload_bytes(self) -> int:
        return int(self.max_upload_mb * MB)

    @property
    def store_bytes(self) -> int:
        return int(self.max_source_store_mb * MB)

    def public(self) -> dict:
        """The limits a client may see (all of them: nothing here is secret)."""
        return asdict(self)


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond loopback without a real token, and refuse blank tokens."""
    if token is not None and not token.strip():
        raise UserError("--token is blank; give a real secret (or none on 127.0.0.1)")
    if host not in LOOPBACK_HOSTS and not token:
        raise UserError(f"listening on {host} needs --token (or bind 127.0.0.1)")
