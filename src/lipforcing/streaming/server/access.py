"""Who may talk to the server: the token, the Host header and the browser's Origin.

- Token: sent as ``Authorization: Bearer <token>`` (HTTP, and the WebSocket handshake of
  programmatic clients) or as the ``token`` field of a WebSocket's first message (browsers
  cannot set handshake headers). Never in a URL, so it is never in a log line. Compared as
  UTF-8 bytes in constant time (:func:`hmac.compare_digest`), so any text, ASCII or not, is
  just a wrong token.
- Host: DNS rebinding points an attacker's name at 127.0.0.1, so a request whose Host header
  names anything but this server (loopback names, an IP literal, the bound name or a name
  given with ``--allow-host``) is refused, token or not.
- Origin: a browser names the page that makes a request; a request whose Origin is not this
  server itself (same scheme-less host and port as the Host header) or one given with
  ``--allow-origin`` is refused, token or not: no other page may upload, open a WebSocket or
  start a WebRTC session. Requests without an Origin (curl, Python clients) pass this check.

:class:`HostOriginGuard` applies the Host and Origin rules to every HTTP request and WebSocket
handshake before the application sees it.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

from lipforcing.streaming.server.limits import LOOPBACK_HOSTS

log = logging.getLogger(__name__)
WS_POLICY_VIOLATION = 1008  # WebSocket close code for a refused client


@dataclass(frozen=True)
class AccessPolicy:
    """The token and the Host / Origin allow lists."""

    token: str | None = None
    hosts: frozenset[str] = LOOPBACK_HOSTS  # Host names accepted besides IP literals
    origins: frozenset[str] = frozenset()  # extra origins, "scheme://host[:port]"

    @classmethod
    def create(
        cls,
        token: str | None,
        bind_host: str = "127.0.0.1",
        allow_hosts: tuple[str, ...] = (),
        allow_origins: tuple[str, ...] = (),
    ) -> AccessPolicy:
        hosts = {h.lower() for h in (*LOOPBACK_HOSTS, bind_host, *allow_hosts)}
        origins = {o.lower().rstrip("/") for o in allow_origins}
        return cls(token, frozenset(hosts), frozenset(origins))

    # ------------------------------------------------------------------ token

    def token_ok(self, given: str | bytes | None) -> bool:
        """Constant-time comparison; ``bytes`` are raw header bytes, ``str`` JSON text."""
        if self.token is None:
            return True
        if given is None:
            return False
        if isinstance(given, str):
            given = given.encode("utf-8", "surrogatepass")
        return hmac.compare_digest(given, self.token.encode("utf-8"))

    def header_token(self, headers: list[tuple[bytes, bytes]]) -> bytes | None:
        """The bearer token of raw ASGI headers, as bytes (None without one)."""
        for key, value in headers:
            if key.lower() == b"authorization" and value[:7].lower() == b"bearer ":
                return value[7:].strip()
        return None

    # ------------------------------------------------------------------ host / origin

    def refusal(self, headers: list[tuple[bytes, bytes]]) -> str | None:
        """Why a request with these raw headers is refused (None: it passes)."""
        found = {k.lower(): v for k, v in headers}
        host = found.get(b"host", b"").decode("latin-1")
        if not self.host_ok(host):
            return f"Host {host[:80]!r} is not this server"
        origin = found.get(b"origin")
        if origin is not None and not self.origin_ok(origin.decode("latin-1"), host):
            return f"Origin {origin.decode('latin-1')[:80]!r} may not use this server"
        return None

    def host_ok(self, host: str) -> bool:
        name = _host_name(host)
        return name is not None and (name in self.hosts or _is_ip(name))

    def origin_ok(self, origin: str, host: str) -> bool:
        origin = origin.lower().rstrip("/")
        if origin in self.origins:
            return True
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return False  # "null" (sandboxed pages, file://) included
        return parts.netloc == host.lower() and self.host_ok(host)


def _host_name(host: str) -> str | None:
    """The name of a Host header without its port, lower-case (None when malformed)."""
    host = host.strip().lower()
    if not host:
        return None
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else None
    name, _, port = host.partition(":")
    if port and not port.isdigit():
        return None
    return name


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostOriginGuard:
    """ASGI middleware: refuse requests and WebSocket handshakes from foreign Hosts / Origins."""

    def __init__(self, app, policy: AccessPolicy) -> None:
        self.app, self.policy = app, policy

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        reason = self.policy.refusal(scope.get("headers", []))
        if reason is None:
            return await self.app(scope, receive, send)
        log.warning("refused %s %s: %s", scope["type"], scope.get("path", ""), reason)
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": WS_POLICY_VIOLATION})
            return
        body = json.dumps({"error": reason}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 403, "headers": headers})
        await send({"type": "http.response.body", "body": body})
