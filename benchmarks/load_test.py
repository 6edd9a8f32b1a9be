"""Load test on loopback: live sessions, uploads and hostile clients at once, for a bounded time.

Starts ``lipforcing serve`` (the real command, built-in tiny student unless ``--random``) as a
subprocess with a token, ``--max-sessions N`` and ``--memory-budget-mb``, then for
``--minutes`` runs, all at once:

- ``--sessions`` WebSocket sessions (up to the limit) streaming speech in real time in 0.5 s
  utterances, each reconnecting when its session ends; per session: frames received per second,
  the server's late and dropped frame counts, TTFF;
- ``--uploaders`` clients uploading, in turn, a valid face video and the hostile files of
  issue 19 (an HLS playlist naming a file on the server, a PNG bomb, frames 100,000 s apart,
  garbage, an oversized body);
- ``--hostile`` clients cycling through hostile requests (foreign Host, cross-origin upload and
  WebSocket, wrong / non-ASCII / missing tokens, a 200k-deep JSON array, ``{"seed": true}``, a
  client that opens a session and never reads, one that never sends its first message) and
  checking each gets its refusal.

Every second the server's resident memory (with its children) is sampled. At the end the
server must still serve (``/api/info`` and a short session). Counts and times are bounded:
``--minutes``, a fixed number of clients, and each client's requests time out.

Writes ``load.json`` (summary), ``load.csv`` (per-second samples) and ``load.png``.

    python benchmarks/load_test.py --minutes 10 --sessions 2 --out benchmarks/results/load-tiny-cpu
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import secrets
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RATE = 16_000
UTTERANCE_S = 0.5  # speech sent between end_segment marks, seconds
PIECE_S = 0.1  # audio per message, seconds
REQUEST_TIMEOUT_S = 60.0  # any one client request
STARTUP_S = 180.0  # the server must listen within this, seconds
FINAL_S = 10.0  # the closing session that shows the server still serves, seconds


@dataclass
class SessionReport:
    """One client's streaming sessions over the run."""

    name: str
    sessions: int = 0
    frames: int = 0
    seconds: float = 0.0
    late_frames: int = 0
    dropped_frames: int = 0
    ttff_s: list[float] = field(default_factory=list)
    fps: list[float] = field(default_factory=list)  # received frames / s, per session
    refusals: list[str] = field(default_factory=list)


@dataclass
class Tally:
    """What the uploaders and hostile clients saw: outcome -> count."""

    outcomes: Counter = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)

    def expect(self, what: str, ok: bool, detail: str = "") -> None:
        self.outcomes[f"{what}: {'as expected' if ok else 'UNEXPECTED'}"] += 1
        if not ok and len(self.unexpected) < 50:
            self.unexpected.append(f"{what}: {detail[:200]}")


# ---------------------------------------------------------------------- server


def server_options(args, token: str, folder: Path) -> list[str]:
    """The ``lipforcing serve`` options of the run (after ``--port``)."""
    options = ["--token", token, "--max-sessions", str(args.max_sessions), "--max-uploads", "1"]
    options += ["--memory-budget-mb", str(args.memory_budget_mb)]
    options += ["--max-source-store-mb", str(args.store_mb), "--max-upload-mb", "5"]
    if args.random:
        options += ["--checkpoint", str(random_checkpoint(folder))]
    return options


def random_checkpoint(folder: Path) -> Path:
    """A random tiny student + codec written like a trained one (fast start for tests)."""
    from lipforcing import codecs
    from lipforcing.config import tiny
    from lipforcing.models.checkpoints import save_checkpoint
    from lipforcing.streaming.pipeline import Pipeline

    pipe = Pipeline.random(tiny())
    path = folder / "student.safetensors"
    save_checkpoint(path, pipe.model, pipe.preset)
    codecs.save_codec(folder / "codec.safetensors", pipe.codec)
    return path


def resident_mb(pid: int) -> float:
    import psutil

    proc = psutil.Process(pid)
    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += child.memory_info().rss
    return total / 1e6


# ---------------------------------------------------------------------- clients


def speech(seconds: float) -> np.ndarray:
    from lipforcing.config import tiny
    from lipforcing.streaming.builtin import builtin_sample

    audio = builtin_sample(tiny(), seconds=max(seconds, 2.0)).audio
    return np.resize(audio, int(seconds * RATE)).astype(np.float32)


async def session_client(name, address, token, audio, stop_at, report: SessionReport) -> None:
    """Stream ``audio`` in real time, utterance by utterance, reconnecting until ``stop_at``."""
    import websockets

    headers = {"Authorization": f"Bearer {token}"}
    position = 0
    while time.monotonic() < stop_at:
        try:
            async with websockets.connect(
                f"ws://{address}/ws", additional_headers=headers, max_size=2**24
            ) as ws:
                await ws.send(json.dumps({"type": "start", "sample_rate": RATE}))
                ready = json.loads(await asyncio.wait_for(ws.recv(), REQUEST_TIMEOUT_S))
                if ready["type"] != "ready":
                    report.refusals.append(ready.get("message", str(ready))[:120])
                    await asyncio.sleep(1.0)
                    continue
                report.sessions += 1
                position = await _stream_one(ws, audio, position, stop_at, report)
        except (TimeoutError, OSError, websockets.ConnectionClosed) as e:
            report.refusals.append(f"{type(e).__name__}: {e}"[:120])
            await asyncio.sleep(1.0)


async def _stream_one(ws, audio, position, stop_at, report) -> int:
    from lipforcing.streaming.server.protocol import pcm16

    frames, last = 0, {}
    start = time.monotonic()

    async def receive() -> None:
        nonlocal frames, last
        async for msg in ws:
            if isinstance(msg, bytes):
                frames += 1
                report.frames += 1  # live: the per-second samples read it
            else:
                data = json.loads(msg)
                if data["type"] in ("stats", "done"):
                    last = data.get("stats", data)

    reader = asyncio.create_task(receive())
    piece, per_utterance = int(PIECE_S * RATE), int(UTTERANCE_S / PIECE_S)
    k = 0
    try:
        while time.monotonic() < stop_at and not reader.done():
            chunk = np.take(audio, range(position, position + piece), mode="wrap")
            await ws.send(pcm16(chunk))
            position += piece
            k += 1
            if k % per_utterance == 0:
                await ws.send(json.dumps({"type": "end_segment"}))
            await asyncio.sleep(max(0.0, start + k * PIECE_S - time.monotonic()))
    finally:  # the client leaves at the end of the run, as a user closing the page
        elapsed = time.monotonic() - start
        reader.cancel()
        report.seconds += elapsed
        report.fps.append(frames / max(elapsed, 1e-9))
        report.late_frames += last.get("late_frames", 0)
        report.dropped_frames += last.get("dropped_frames", 0)
        if last.get("ttff_s") is not None:
            report.ttff_s.append(last["ttff_s"])
    return position


def upload_cases(folder: Path) -> list[tuple[str, bytes, int]]:
    """(name, body, expected HTTP status) for the uploaders."""
    sys.path.insert(0, str(ROOT / "tests"))
    from hostile_media import face_clip, hls_playlist, png_bomb, timed_mkv
    from lipforcing.media.io import write_video

    write_video(folder / "face.mp4", face_clip(1.0, size=160), 25)
    pair = np.zeros((2, 48, 64, 3), np.uint8)
    far = timed_mkv(folder / "far.mkv", pair, [0.0, 100_000.0])
    return [
        ("face.mp4", (folder / "face.mp4").read_bytes(), 200),
        ("evil.m3u8", hls_playlist(folder / "face.mp4"), 422),
        ("bomb.png", png_bomb(8000, 8000), 422),
        ("far.mkv", far.read_bytes(), 422),
        ("garbage.mp4", secrets.token_bytes(4096), 422),
        ("big.mp4", b"\0" * 6_000_000, 413),
    ]


async def uploader(address, token, cases, stop_at, tally: Tally) -> None:
    import httpx

    headers = {"Authorization": f"Bearer {token}"}
    k = 0
    while time.monotonic() < stop_at:
        name, body, want = cases[k % len(cases)]
        k += 1
        try:
            async with fresh_client() as http:
                reply = await http.post(
                    f"http://{address}/api/sources",
                    params={"name": name},
                    content=body,
                    headers=headers,
                )
        except httpx.HTTPError as e:
            tally.expect(f"upload {name}", False, repr(e))
            continue
        ok = reply.status_code == want or (want == 200 and reply.status_code in (429, 503))
        tally.expect(f"upload {name} -> {want}", ok, f"{reply.status_code} {reply.text}")
        await asyncio.sleep(0.5)


def fresh_client():
    """An HTTP client for ONE request or probe, on a new connection that the client closes.

    A pooled keep-alive connection can be closed by the server's idle timer (5 s) just as
    the next request goes out on it (the client's loop lags on a loaded machine); the request
    then dies with a connection reset that says nothing about the server's answer (seen once:
    ``cross_origin_upload: ReadError``). A new connection per request rules that race out, so
    every error left is the server's.
    """
    import httpx

    return httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S)


async def hostile_client(address, token, stop_at, tally: Tally) -> None:

    probes = [
        _foreign_host,
        _cross_origin_upload,
        _cross_origin_ws,
        _bad_tokens,
        _deep_json,
        _seed_true,
        _never_reads,
        _silent_socket,
    ]
    k = 0
    while time.monotonic() < stop_at:
        probe = probes[k % len(probes)]
        k += 1
        try:
            async with fresh_client() as http:
                ok, detail = await probe(address, token, http)
        except Exception as e:  # a probe that crashes is itself a finding
            ok, detail = False, f"{type(e).__name__}: {e}"
        tally.expect(probe.__name__.strip("_"), ok, detail)
        await asyncio.sleep(0.2)


async def _foreign_host(address, token, http):
    r = await http.get(
        f"http://{address}/api/info",
        headers={"Host": "attacker.example", "Authorization": f"Bearer {token}"},
    )
    return r.status_code == 403, r.text


async def _cross_origin_upload(address, token, http):
    r = await http.post(
        f"http://{address}/api/sources",
        content=b"x",
        headers={
            "Origin": "http://attacker.example",
            "Content-Type": "text/plain",
            "Authorization": f"Bearer {token}",
        },
    )
    return r.status_code == 403, r.text


async def _cross_origin_ws(address, token, http):
    import websockets

    try:
        async with websockets.connect(
            f"ws://{address}/ws",
            additional_headers={
                "Origin": "http://attacker.example",
                "Authorization": f"Bearer {token}",
            },
        ):
            return False, "accepted"
    except websockets.InvalidStatus as e:
        return e.response.status_code == 403, str(e)


async def _bad_tokens(address, token, http):
    codes = []
    for value in (b"Bearer wrong", "Bearer t\u00f6ken".encode("latin-1"), None):
        headers = {"Authorization": value} if value else {}
        codes.append((await http.get(f"http://{address}/api/info", headers=headers)).status_code)
    codes.append((await http.get(f"http://{address}/openapi.json")).status_code)
    return codes == [401, 401, 401, 401], str(codes)


async def _ws_refusal(address, token, payload: str, code: int):
    import websockets

    async with websockets.connect(
        f"ws://{address}/ws",
        additional_headers={"Authorization": f"Bearer {token}"},
        max_size=None,
    ) as ws:
        await ws.send(payload)
        try:
            while True:
                await asyncio.wait_for(ws.recv(), REQUEST_TIMEOUT_S)
        except websockets.ConnectionClosed as e:
            got = e.rcvd.code if e.rcvd else None
            return got == code, f"close {got}"


async def _deep_json(address, token, http):
    return await _ws_refusal(address, token, "[" * 200_000 + "]" * 200_000, 1009)


async def _seed_true(address, token, http):
    return await _ws_refusal(address, token, json.dumps({"type": "start", "seed": True}), 1008)


async def _never_reads(address, token, http):
    """Opens a session, sends 3 s of audio and never reads: the server must not block others."""
    import websockets

    async with websockets.connect(
        f"ws://{address}/ws",
        additional_headers={"Authorization": f"Bearer {token}"},
        max_queue=1,
    ) as ws:
        await ws.send(json.dumps({"type": "start", "realtime": False}))
        await ws.send(np.zeros(3 * RATE, "<i2").tobytes())
        await asyncio.sleep(3.0)
    return True, "left"


async def _silent_socket(address, token, http):
    """Connects without ever sending its first message: closed after the auth timeout."""
    import websockets

    async with websockets.connect(f"ws://{address}/ws") as ws:
        try:
            await asyncio.wait_for(ws.recv(), 30)
            await asyncio.wait_for(ws.recv(), 30)
        except websockets.ConnectionClosed as e:
            return (e.rcvd.code if e.rcvd else None) == 1008, "closed"
    return False, "still open"


async def still_serving(address, token, audio) -> bool:
    import httpx

    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S) as http:
        r = await http.get(
            f"http://{address}/api/info", headers={"Authorization": f"Bearer {token}"}
        )
    if r.status_code != 200:
        return False
    report = SessionReport("final")
    await session_client("final", address, token, audio, time.monotonic() + FINAL_S, report)
    return report.sessions >= 1 and report.frames > 0


# ---------------------------------------------------------------------- run


async def load(args, address, token, pid, out: Path) -> dict:
    audio = speech(20.0)
    with tempfile.TemporaryDirectory() as tmp:
        cases = upload_cases(Path(tmp))
        stop_at = time.monotonic() + args.minutes * 60
        reports = [SessionReport(f"session-{i}") for i in range(args.sessions)]
        tally = Tally()
        samples: list[dict] = []
        t0 = time.monotonic()

        async def sample() -> None:
            while time.monotonic() < stop_at:
                samples.append(
                    {
                        "t_s": round(time.monotonic() - t0, 2),
                        "rss_mb": round(resident_mb(pid), 1),
                        "frames": sum(r.frames for r in reports),
                    }
                )
                await asyncio.sleep(1.0)

        tasks = [sample()]
        tasks += [session_client(r.name, address, token, audio, stop_at, r) for r in reports]
        tasks += [uploader(address, token, cases, stop_at, tally) for _ in range(args.uploaders)]
        tasks += [hostile_client(address, token, stop_at, tally) for _ in range(args.hostile)]
        await asyncio.gather(*tasks)
        serving = await still_serving(address, token, audio)
    return summarise(args, reports, tally, samples, serving, out)


def summarise(args, reports, tally, samples, serving, out: Path) -> dict:
    rss = [s["rss_mb"] for s in samples]
    summary = {
        "minutes": args.minutes,
        "sessions": args.sessions,
        "uploaders": args.uploaders,
        "hostile": args.hostile,
        "memory_budget_mb": args.memory_budget_mb,
        "rss_max_mb": max(rss),
        "rss_start_mb": rss[0],
        "rss_end_mb": rss[-1],
        "within_budget": max(rss) <= args.memory_budget_mb,
        "still_serving": serving,
        "per_session": [
            {
                **{k: v for k, v in asdict(r).items() if k not in ("fps", "ttff_s", "refusals")},
                "fps_median": float(np.median(r.fps)) if r.fps else None,
                "fps_min": float(min(r.fps)) if r.fps else None,
                "ttff_median_s": float(np.median(r.ttff_s)) if r.ttff_s else None,
                "refusals": r.refusals[:5],
            }
            for r in reports
        ],
        "outcomes": dict(tally.outcomes),
        "unexpected": tally.unexpected,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "load.json").write_text(json.dumps(summary, indent=1))
    with open(out / "load.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(samples[0]))
        writer.writeheader()
        writer.writerows(samples)
    plot(samples, args, out / "load.png")
    return summary


def plot(samples, args, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t_s"] / 60 for s in samples]
    fig, (a, b) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    a.plot(t, [s["rss_mb"] for s in samples], label="server RSS")
    a.axhline(args.memory_budget_mb, color="red", ls="--", lw=1, label="memory budget")
    a.set_ylabel("MB")
    a.set_ylim(0, args.memory_budget_mb * 1.1)
    a.legend(loc="lower right")
    a.set_title(
        f"load test: {args.sessions} sessions + {args.uploaders} uploaders + "
        f"{args.hostile} hostile clients"
    )
    frames = np.diff([s["frames"] for s in samples], prepend=0)
    b.plot(t, frames, color="tab:green", label="frames received / s (all sessions)")
    b.axhline(25 * args.sessions, color="gray", ls="--", lw=1, label=f"{25 * args.sessions} FPS")
    b.set_xlabel("minutes")
    b.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the run")
    ap.add_argument("--sessions", type=int, default=2, help="streaming clients")
    ap.add_argument("--max-sessions", type=int, default=2, help="the server's session limit")
    ap.add_argument("--uploaders", type=int, default=1, help="uploading clients")
    ap.add_argument("--hostile", type=int, default=2, help="hostile clients")
    ap.add_argument("--memory-budget-mb", type=float, default=3000.0, help="server budget, MB")
    ap.add_argument("--store-mb", type=float, default=256.0, help="the server's source store, MB")
    ap.add_argument("--threads", type=int, default=1, help="OMP threads of the server")
    ap.add_argument("--random", action="store_true", help="random tiny weights (tests)")
    ap.add_argument("--out", default="load", help="output folder")
    return ap.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT / "tests" / "streaming"))
    from server_helpers import free_port, serve_process

    token, port = secrets.token_hex(12), free_port()
    options = server_options(args, token, out)
    log = out / "server.log"
    with serve_process(options, port, log, threads=args.threads, startup_s=STARTUP_S) as proc:
        summary = asyncio.run(load(args, f"127.0.0.1:{port}", token, proc.pid, out))
    print(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
