"""One WebSocket client: authentication, the start message, audio and control in, frames out.

Flow of :meth:`WebSocketClient.serve`:
1. The handshake: a wrong ``Authorization`` header is refused before accepting (403); without
   one (browsers), the first message must carry ``"token"`` when the server has a token, and
   must come within ``auth_timeout_s``.
2. Messages before ``start`` may only be pings; ``start`` is validated into
   :class:`SessionOptions` and a session slot taken (or ``server busy``).
3. Three tasks run until one ends: the receiver (audio and control messages in), the sender
   (paced frames and stats out, then ``done``) and the watchdog (session and idle time limits).

Every way out ends in one message and a close code: a refused message is answered with an
``error`` (``ended: true`` and a close when it is fatal); a failure is logged with its cause
and the client told ``internal error``; a client that goes away is detected by Starlette's own
disconnect event / exception and logged at debug level. Nothing is swallowed.
"""

from __future__ import annotations

import asyncio
import logging
import time

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from lipforcing.errors import UserError
from lipforcing.streaming.server.access import WS_POLICY_VIOLATION
from lipforcing.streaming.server.capacity import Busy
from lipforcing.streaming.server.live import apply_control, open_session, ready_fields
from lipforcing.streaming.server.protocol import (
    ProtocolError,
    SessionOptions,
    encode_frame,
    message,
    parse_message,
    stats_fields,
)

log = logging.getLogger(__name__)
STATS_PERIOD_S = 0.5  # stats message interval, seconds
WATCHDOG_PERIOD_S = 0.25  # how often the session / idle limits are checked, seconds
CLOSE_TIMEOUT_S = 5.0  # longest wait for a close frame to go out, seconds
WS_NORMAL, WS_TRY_AGAIN, WS_INTERNAL = 1000, 1013, 1011  # close codes
MAX_REASON_BYTES = 123  # a close frame's reason is at most 123 bytes of UTF-8


class ClientGone(Exception):
    """The client disconnected (Starlette's disconnect event or exception)."""


class WebSocketClient:
    """The server side of one WebSocket connection (see the module docstring)."""

    def __init__(self, ws: WebSocket, state) -> None:
        self.ws, self.state, self.limits = ws, state, state.limits
        self.session = None
        self.options: SessionOptions | None = None
        self.last_message = time.monotonic()

    # ------------------------------------------------------------------ lifecycle

    async def serve(self) -> None:
        try:
            if await self._handshake():
                await self._run()
        except ClientGone:
            log.debug("websocket client went away")
        except ProtocolError as e:
            await self._refuse(str(e), e.code)
        except Busy as e:
            await self._refuse(str(e), WS_TRY_AGAIN)
        except UserError as e:  # the session refused something (its message says what)
            await self._refuse(str(e), WS_INTERNAL)
        except Exception:
            log.exception("websocket session failed")
            await self._refuse(
                "internal error: the session failed (see the server log)", WS_INTERNAL
            )

    async def _handshake(self) -> bool:
        access = self.state.access
        header = access.header_token(self.ws.scope.get("headers", []))
        if header is not None and not access.token_ok(header):
            log.warning("websocket refused: wrong token in the Authorization header")
            await self.ws.close(code=WS_POLICY_VIOLATION, reason="wrong token")
            return False
        await self.ws.accept()
        self.authed = access.token is None or header is not None
        return True

    async def _run(self) -> None:
        first = await self._first_message()
        while first["type"] != "start":
            await self._control(first)
            first = await self._next_control()
        self.options = SessionOptions.parse(first, ignore=("type", "token"))
        with self.state.slots.hold():
            self.session = await open_session(self.state, self.options)
            try:
                await self._stream()
            finally:
                self.state.retirer.retire(self.session)

    async def _stream(self) -> None:
        ready = ready_fields(self.session, self.limits)
        await self._send_text(message("ready", **ready))
        tasks = [
            asyncio.create_task(self._receive_loop(), name="ws-receive"),
            asyncio.create_task(self._send_loop(), name="ws-send"),
            asyncio.create_task(self._watchdog(), name="ws-watchdog"),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            task.result()  # re-raise what ended the stream

    # ------------------------------------------------------------------ input

    async def _first_message(self) -> dict:
        """The first message, carrying the token when the handshake did not."""
        try:
            raw = await asyncio.wait_for(self.ws.receive(), self.limits.auth_timeout_s)
        except TimeoutError:
            raise ProtocolError(
                f"no message in {self.limits.auth_timeout_s:g} s", fatal=True
            ) from None
        msg = self._json(raw)
        if not self.authed:
            if not self.state.access.token_ok(_token_field(msg)):
                log.warning("websocket refused: missing or wrong token in the first message")
                raise ProtocolError("missing or wrong token", fatal=True)
            self.authed = True
        return msg

    async def _next_control(self) -> dict:
        return self._json(await self.ws.receive())

    def _json(self, raw: dict) -> dict:
        if raw["type"] == "websocket.disconnect":
            raise ClientGone
        self.last_message = time.monotonic()
        if raw.get("text") is None:
            raise ProtocolError("expected a JSON message first (start)", fatal=True)
        return parse_message(raw["text"], int(self.limits.max_text_message_kb * 1000))

    async def _receive_loop(self) -> None:
        while True:
            raw = await self.ws.receive()
            if raw["type"] == "websocket.disconnect":
                raise ClientGone
            self.last_message = time.monotonic()
            try:
                if raw.get("bytes") is not None:
                    self._audio(raw["bytes"])
                else:
                    await self._control(self._json(raw))
            except ProtocolError as e:
                if e.fatal:
                    raise
                await self._send_error(str(e))
            except UserError as e:  # the session refused the audio (pending limit, format)
                await self._send_error(str(e))

    async def _control(self, msg: dict) -> None:
        reply = apply_control(self.session, msg)
        if reply is not None:
            await self._send_text(reply)

    def _audio(self, data: bytes) -> None:
        if self.session is None:
            raise ProtocolError("audio before start")
        limit = 2 * self.options.sample_rate * self.limits.max_audio_message_s
        if len(data) > limit:
            raise ProtocolError(f"audio message over {self.limits.max_audio_message_s:g} s")
        self.session.push_audio(data, self.options.sample_rate)

    # ------------------------------------------------------------------ output

    async def _send_loop(self) -> None:
        session, last_stats = self.session, 0.0
        async for frame in session.aframes():
            data = await asyncio.to_thread(encode_frame, frame, self.options.quality)
            await self._send(self.ws.send_bytes(data))
            if frame.speech:  # audio still flowing: the connection is not idle
                self.last_message = time.monotonic()
            if time.monotonic() - last_stats > STATS_PERIOD_S:
                last_stats = time.monotonic()
                await self._send_text(message("stats", **stats_fields(session.stats)))
        await self._send_text(message("done", stats=stats_fields(session.stats)))
        await self._close(WS_NORMAL, "stream finished")

    async def _watchdog(self) -> None:
        started = time.monotonic()
        while True:
            await asyncio.sleep(WATCHDOG_PERIOD_S)
            now = time.monotonic()
            if now - started > self.limits.max_session_s:
                raise ProtocolError(
                    f"session time limit of {self.limits.max_session_s:g} s reached",
                    fatal=True,
                    code=WS_NORMAL,
                )
            if now - self.last_message > self.limits.idle_timeout_s:
                raise ProtocolError(
                    f"no message for {self.limits.idle_timeout_s:g} s: closing",
                    fatal=True,
                    code=WS_NORMAL,
                )

    async def _send_text(self, text: str) -> None:
        await self._send(self.ws.send_text(text))

    async def _send_error(self, text: str, ended: bool = False) -> None:
        await self._send_text(message("error", message=text, ended=ended))

    async def _send(self, sending) -> None:
        if self.ws.application_state != WebSocketState.CONNECTED:
            sending.close()
            raise ClientGone
        try:
            await sending
        except WebSocketDisconnect:
            raise ClientGone from None

    async def _refuse(self, text: str, code: int) -> None:
        """Tell the client why the connection ends, then close it (if it is still there)."""
        log.info("websocket closed (%d): %s", code, text)
        try:
            await self._send_error(text, ended=True)
            await self._close(code, text)
        except ClientGone:
            log.debug("client gone before the refusal reached it")

    async def _close(self, code: int, reason: str) -> None:
        if self.ws.application_state != WebSocketState.CONNECTED:
            return
        reason = reason.encode()[:MAX_REASON_BYTES].decode(errors="ignore")
        try:
            await asyncio.wait_for(self.ws.close(code=code, reason=reason), CLOSE_TIMEOUT_S)
        except (TimeoutError, WebSocketDisconnect):
            log.debug("close frame not delivered: the client stopped reading")


def _token_field(msg: dict) -> str | None:
    token = msg.get("token")
    return token if isinstance(token, str) else None
