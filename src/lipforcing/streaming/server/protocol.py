"""The wire format shared by the WebSocket and WebRTC transports.

Session options (:class:`SessionOptions`) come from the WebSocket's ``start`` message or from the
body of ``POST /offer``; control messages (``end_segment``, ``clear``, ``close``, ``ping``) are
the same JSON objects on the WebSocket and on the WebRTC data channel. A WebSocket frame message
is binary: ``uint32 LE n`` | ``n`` bytes of JSON ``{"i", "t", "speech", "audio_bytes",
"segment_end"}`` | ``audio_bytes`` of int16 PCM played with the frame | a JPEG image.

Everything a client sends is validated here and refused with a :class:`ProtocolError` whose
message goes back to the client as is; ``fatal`` errors end the connection.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

import numpy as np

from lipforcing.errors import UserError

CONTROL_TYPES = ("end_segment", "clear", "close", "ping")
RATE_RANGE = (8_000, 96_000)  # accepted input sample rates, Hz
QUALITY_RANGE = (10, 95)  # accepted JPEG qualities
DEFAULT_QUALITY = 80  # JPEG quality of WebSocket frames
MAX_SEED = 2**63
MAX_FACE_CHARS = 80  # longest face option (a box of four numbers fits easily)


class ProtocolError(UserError):
    """A message the server refuses; ``fatal`` ones close the connection (with ``code``)."""

    def __init__(self, message: str, *, fatal: bool = False, code: int = 1008) -> None:
        super().__init__(message)
        self.fatal, self.code = fatal, code


@dataclass(frozen=True, kw_only=True)
class SessionOptions:
    """What a client chooses when it opens a session (all optional)."""

    source: str = "default"  # id of a stored source
    realtime: bool = True  # paced at the media frame rate (False: as fast as generated)
    seed: int = 0  # noise seed of the session
    sample_rate: int = 16_000  # rate of the int16 PCM the client sends (WebSocket), Hz
    quality: int = DEFAULT_QUALITY  # JPEG quality of WebSocket frames
    # which face is driven, spelled as --face (media.faces.parse_face); None: the face the
    # source was tracked with (another choice tracks the source's frames again, once)
    face: str | None = None
    silence_gate: bool = True  # the engine's silence gate (no mouthing on silence)

    FIELDS = ("source", "realtime", "seed", "sample_rate", "quality", "face", "silence_gate")

    @property
    def face_choice(self):
        """The face choice (:data:`lipforcing.media.faces.FaceChoice`); only when ``face``."""
        from lipforcing.media.faces import parse_face

        return parse_face(self.face, option="face")

    @classmethod
    def parse(cls, msg: dict, ignore: tuple[str, ...] = ()) -> SessionOptions:
        """Validate the options of a start message / offer body (bools are not integers)."""
        unknown = set(msg) - set(cls.FIELDS) - set(ignore)
        if unknown:
            raise ProtocolError(f"unknown session option {sorted(unknown)[0][:40]!r}", fatal=True)
        source = msg.get("source", "default")
        if not isinstance(source, str) or not 0 < len(source) <= 64:
            raise ProtocolError("source must be a source id (a short string)", fatal=True)
        realtime = msg.get("realtime", True)
        if not isinstance(realtime, bool):
            raise ProtocolError("realtime must be true or false", fatal=True)
        seed = _int(msg, "seed", 0, (0, MAX_SEED - 1), "a non-negative integer")
        rate = _int(msg, "sample_rate", 16_000, RATE_RANGE, "an integer in 8000..96000")
        quality = _int(msg, "quality", DEFAULT_QUALITY, QUALITY_RANGE, "an integer in 10..95")
        gate = msg.get("silence_gate", True)
        if not isinstance(gate, bool):
            raise ProtocolError("silence_gate must be true or false", fatal=True)
        return cls(
            source=source,
            realtime=realtime,
            seed=seed,
            sample_rate=rate,
            quality=quality,
            face=_face(msg),
            silence_gate=gate,
        )


def _face(msg: dict) -> str | None:
    """The ``face`` option: absent / null, or a spelling :func:`parse_face` takes."""
    from lipforcing.media.faces import parse_face

    face = msg.get("face")
    if face is None:
        return None
    if not isinstance(face, str) or len(face) > MAX_FACE_CHARS:
        raise ProtocolError(
            "face must be a string: largest, center, an index (0 = leftmost) or a box x0,y0,x1,y1",
            fatal=True,
        )
    try:
        parse_face(face, option="face")
    except UserError as e:
        raise ProtocolError(str(e), fatal=True) from None
    return face


def _int(msg: dict, key: str, default: int, bounds: tuple[int, int], what: str) -> int:
    value = msg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not bounds[0] <= value <= bounds[1]:
        raise ProtocolError(f"{key} must be {what}", fatal=True)
    return value


def parse_message(text: str, max_bytes: int) -> dict:
    """A JSON control message: an object with a string ``type``, at most ``max_bytes``."""
    if len(text) > max_bytes:
        raise ProtocolError(f"message over {max_bytes // 1000} kB", fatal=True, code=1009)
    try:
        msg = json.loads(text)
    except json.JSONDecodeError:
        raise ProtocolError("malformed message: not JSON") from None
    except RecursionError:
        raise ProtocolError("malformed message: nested too deeply", fatal=True) from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ProtocolError('malformed message: expected an object with a "type"')
    return msg


def encode_frame(frame, quality: int = DEFAULT_QUALITY) -> bytes:
    """The binary frame message of the WebSocket protocol (header JSON, int16 audio, JPEG)."""
    import cv2

    ok, jpeg = cv2.imencode(
        ".jpg", frame.image[:, :, ::-1], [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)]
    )
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    pcm = pcm16(frame.audio)
    header = {
        "i": frame.index,
        "t": round(frame.timestamp, 4),
        "speech": frame.speech,
        "audio_bytes": len(pcm),
        "segment_end": frame.segment_end,
    }
    data = json.dumps(header).encode()
    return struct.pack("<I", len(data)) + data + pcm + jpeg.tobytes()


def decode_frame(message: bytes) -> tuple[dict, np.ndarray, bytes]:
    """Inverse of :func:`encode_frame`: (header, int16 audio, JPEG bytes) (tests, clients)."""
    (n,) = struct.unpack_from("<I", message)
    header = json.loads(message[4 : 4 + n])
    a = 4 + n + header["audio_bytes"]
    return header, np.frombuffer(message[4 + n : a], "<i2"), message[a:]


def pcm16(audio: np.ndarray) -> bytes:
    """float32 samples in [-1, 1] -> little-endian int16 bytes."""
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


def message(kind: str, **fields) -> str:
    """A JSON text message of the protocol."""
    return json.dumps({"type": kind, **fields})


def stats_fields(stats) -> dict:
    """A session's measured stats, floats rounded for the wire."""
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in stats.as_dict().items()}
