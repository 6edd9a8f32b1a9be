"""Long soak on the product path: `lipforcing serve` on loopback and one real-time stream.

Starts ``lipforcing serve`` (the built-in tiny student unless ``--checkpoint``; one OMP thread;
a session limit longer than the run) as a subprocess and streams the built-in SynthTalk speech
into ONE WebSocket session, as a conversation would: an utterance in real time (40 ms pieces,
then ``end_segment``), ``--pause-s`` of no audio (idle frames, closed mouth), again, for
``--hours``. Every ``--every-s`` it appends one row to ``--csv`` and flushes it, so a run cut
short is still a result:

- ``wall_h`` / ``stream_h``: hours of wall time / of frames received (frames / 25 / 3600);
- ``fps``: frames received per second over the interval; ``clock_drift_s``: stream time minus
  wall time since the first frame (negative: the output fell behind real time);
- ``rss_mb``: the server process's resident memory;
- ``late_frames``, ``dropped_frames``, ``queue_delay_mean_s``, ``ttff_s``: the server's own
  stats for the session (cumulative / running);
- ``audio_sent_s`` / ``audio_back_s`` / ``audio_mismatch``: A/V integrity. The input never
  holds an exact zero sample (a +-3 LSB floor), so the speech frames' audio with the padding
  zeros removed must be exactly the input, in order, to 1 LSB (int16 -> float -> int16);
  ``audio_mismatch`` counts returned samples that differ (0 = no sample lost, repeated or
  shifted between frames).

    nohup python scripts/soak_server.py --hours 8 --csv benchmarks/results/soak-server/soak.csv &
    python scripts/soak_server.py --summarise benchmarks/results/soak-server/soak.csv

``--summarise`` prints the summary (RSS slope over the last three quarters, totals, drift,
integrity) and writes ``soak.png`` beside the CSV.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import secrets
import sys
import time
from collections import deque
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RATE = 16_000
FPS = 25.0
STARTUP_S = 180.0  # the server must listen within this, seconds
PIECE_S = 0.04  # audio per message, seconds
FLOOR = 3  # |int16 sample| of the input is at least this (so no input sample is an exact 0)
FIELDS = [
    "wall_h",
    "stream_h",
    "frames",
    "fps",
    "clock_drift_s",
    "rss_mb",
    "late_frames",
    "dropped_frames",
    "queue_delay_mean_s",
    "ttff_s",
    "audio_sent_s",
    "audio_back_s",
    "audio_mismatch",
]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=8.0, help="length of the soak")
    ap.add_argument("--csv", default="benchmarks/results/soak-server/soak.csv", help="output CSV")
    ap.add_argument("--every-s", type=float, default=60.0, help="seconds between CSV rows")
    ap.add_argument("--pause-s", type=float, default=2.0, help="silence between utterances")
    ap.add_argument("--checkpoint", help="student checkpoint (default: the built-in tiny one)")
    ap.add_argument("--threads", type=int, default=1, help="OMP threads of the server")
    ap.add_argument("--summarise", metavar="CSV", help="summarise a (partial) soak CSV and exit")
    return ap.parse_args(argv)


# ---------------------------------------------------------------------- input / integrity


def input_speech() -> np.ndarray:
    """The built-in speech as int16 with no sample closer to 0 than ``FLOOR``."""
    from lipforcing.config import tiny
    from lipforcing.streaming.builtin import builtin_sample

    audio = builtin_sample(tiny()).audio
    pcm = np.round(np.clip(audio, -1, 1) * 32767).astype(np.int16)
    small = np.abs(pcm) < FLOOR
    pcm[small] = np.where(pcm[small] < 0, -FLOOR, FLOOR)
    return pcm


class Integrity:
    """Matches the returned speech samples (padding zeros removed) against what was sent."""

    def __init__(self) -> None:
        self.pending: deque[np.ndarray] = deque()
        self.sent = self.back = self.mismatch = 0

    def sent_samples(self, pcm: np.ndarray) -> None:
        self.pending.append(pcm.astype(np.int32))
        self.sent += len(pcm)

    def returned(self, pcm: np.ndarray) -> None:
        got = pcm[pcm != 0].astype(np.int32)
        self.back += len(got)
        while len(got):
            if not self.pending:
                self.mismatch += len(got)  # more came back than was sent
                return
            head = self.pending[0]
            n = min(len(head), len(got))
            self.mismatch += int(np.count_nonzero(np.abs(head[:n] - got[:n]) > 1))
            got = got[n:]
            if n == len(head):
                self.pending.popleft()
            else:
                self.pending[0] = head[n:]


# ---------------------------------------------------------------------- server


def server_options(args, token: str) -> list[str]:
    """The ``lipforcing serve`` options of the soak (after ``--port``): one session that may
    last the whole run."""
    hours_s = str(int(args.hours * 3600 + 3600))
    options = ["--token", token, "--max-sessions", "1", "--max-session-s", hours_s]
    options += ["--idle-timeout-s", str(max(60.0, 10 * args.pause_s))]
    if args.checkpoint:
        options += ["--checkpoint", args.checkpoint]
    return options


# ---------------------------------------------------------------------- the stream


class Soak:
    def __init__(self, args, address: str, token: str, pid: int) -> None:
        self.args, self.address, self.token, self.pid = args, address, token, pid
        self.speech = input_speech()
        self.integrity = Integrity()
        self.frames, self.first_frame, self.stats = 0, None, {}

    async def run(self) -> None:
        import websockets

        headers = {"Authorization": f"Bearer {self.token}"}
        async with websockets.connect(
            f"ws://{self.address}/ws", additional_headers=headers, max_size=2**24
        ) as ws:
            await ws.send(json.dumps({"type": "start", "sample_rate": RATE}))
            ready = json.loads(await ws.recv())
            if ready["type"] != "ready":
                raise RuntimeError(f"session refused: {ready}")
            reader = asyncio.create_task(self.receive(ws))
            writer = asyncio.create_task(self.send(ws))
            rows = asyncio.create_task(self.record())
            done, _ = await asyncio.wait(
                [reader, writer, rows], return_when=asyncio.FIRST_COMPLETED
            )
            for task in (reader, writer, rows):
                task.cancel()
            for task in done:
                if task.exception() is not None:
                    raise task.exception()

    async def send(self, ws) -> None:
        piece = int(PIECE_S * RATE)
        end = time.monotonic() + self.args.hours * 3600
        t0, k = time.monotonic(), 0
        while time.monotonic() < end:
            for start in range(0, len(self.speech), piece):
                pcm = self.speech[start : start + piece]
                self.integrity.sent_samples(pcm)
                await ws.send(pcm.astype("<i2").tobytes())
                k += 1
                await asyncio.sleep(max(0.0, t0 + k * PIECE_S - time.monotonic()))
            await ws.send(json.dumps({"type": "end_segment"}))
            await asyncio.sleep(self.args.pause_s)
            await ws.send(json.dumps({"type": "ping"}))
            t0, k = time.monotonic(), 0
        await ws.send(json.dumps({"type": "close"}))

    async def receive(self, ws) -> None:
        from lipforcing.streaming.server.protocol import decode_frame

        async for msg in ws:
            if isinstance(msg, bytes):
                header, pcm, _ = decode_frame(msg)
                self.frames += 1
                self.first_frame = self.first_frame or time.monotonic()
                if header["speech"]:
                    self.integrity.returned(pcm)
                continue
            data = json.loads(msg)
            if data["type"] == "stats":
                self.stats = data
            elif data["type"] in ("done", "error"):
                print(f"server: {msg}", flush=True)
                if data["type"] == "done" or data.get("ended"):
                    return

    async def record(self) -> None:
        import psutil

        path = Path(self.args.csv)
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists()
        start, last = time.monotonic(), (time.monotonic(), 0)
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=FIELDS)
            if new:
                writer.writeheader()
            while True:
                await asyncio.sleep(self.args.every_s)
                now = time.monotonic()
                fps = (self.frames - last[1]) / (now - last[0])
                last = (now, self.frames)
                drift = self.frames / FPS - (now - self.first_frame) if self.first_frame else 0
                s, i = self.stats, self.integrity
                row = {
                    "wall_h": round((now - start) / 3600, 4),
                    "stream_h": round(self.frames / FPS / 3600, 4),
                    "frames": self.frames,
                    "fps": round(fps, 2),
                    "clock_drift_s": round(drift, 3),
                    "rss_mb": round(psutil.Process(self.pid).memory_info().rss / 1e6, 1),
                    "late_frames": s.get("late_frames"),
                    "dropped_frames": s.get("dropped_frames"),
                    "queue_delay_mean_s": s.get("queue_delay_mean_s"),
                    "ttff_s": s.get("ttff_s"),
                    "audio_sent_s": round(i.sent / RATE, 2),
                    "audio_back_s": round(i.back / RATE, 2),
                    "audio_mismatch": i.mismatch,
                }
                writer.writerow(row)
                f.flush()
                print(json.dumps(row), flush=True)


# ---------------------------------------------------------------------- summary


def summarise(path: Path) -> dict:
    with open(path) as f:
        rows = [
            {k: float(v) if v not in ("", "None") else None for k, v in r.items()}
            for r in csv.DictReader(f)
        ]
    if not rows:
        raise SystemExit(f"{path}: no rows yet")
    hours = np.array([r["wall_h"] for r in rows])
    rss = np.array([r["rss_mb"] for r in rows])
    tail = slice(len(rows) // 4, None)
    slope = float(np.polyfit(hours[tail], rss[tail], 1)[0]) if len(rows) >= 8 else None
    last = rows[-1]
    summary = {
        "hours": last["wall_h"],
        "stream_hours": last["stream_h"],
        "frames": int(last["frames"]),
        "fps_median": float(np.median([r["fps"] for r in rows])),
        "fps_min": float(min(r["fps"] for r in rows)),
        "rss_start_mb": rss[0],
        "rss_end_mb": rss[-1],
        "rss_max_mb": float(rss.max()),
        "rss_slope_mb_per_h": slope,
        "clock_drift_end_s": last["clock_drift_s"],
        "late_frames": last["late_frames"],
        "dropped_frames": last["dropped_frames"],
        "queue_delay_mean_s": last["queue_delay_mean_s"],
        "audio_sent_s": last["audio_sent_s"],
        "audio_back_s": last["audio_back_s"],
        "audio_mismatch": int(last["audio_mismatch"]),
    }
    plot(rows, path.with_name("soak.png"))
    return summary


def plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = [r["wall_h"] for r in rows]
    fig, axes = plt.subplots(3, 1, figsize=(7, 7), sharex=True)
    axes[0].plot(h, [r["rss_mb"] for r in rows], marker=".")
    axes[0].set_ylabel("server RSS (MB)")
    axes[0].set_ylim(0, max(r["rss_mb"] for r in rows) * 1.2)
    axes[0].set_title("lipforcing server soak: one real-time stream, tiny preset, CPU")
    axes[1].plot(h, [r["fps"] for r in rows], color="tab:green", marker=".")
    axes[1].axhline(FPS, color="gray", ls="--", lw=1)
    axes[1].set_ylabel("frames received / s")
    axes[2].plot(h, [r["queue_delay_mean_s"] for r in rows], label="queue delay, mean (s)")
    axes[2].plot(h, [r["clock_drift_s"] for r in rows], label="stream minus wall clock (s)")
    axes[2].set_xlabel("hours")
    axes[2].legend(loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.summarise:
        print(json.dumps(summarise(Path(args.summarise)), indent=1))
        return
    sys.path.insert(0, str(ROOT / "tests" / "streaming"))
    from server_helpers import free_port, serve_process

    token, port = secrets.token_hex(12), free_port()
    log = Path(args.csv).with_name("server.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    options = server_options(args, token)
    with serve_process(options, port, log, threads=args.threads, startup_s=STARTUP_S) as proc:
        soak = Soak(args, f"127.0.0.1:{port}", token, proc.pid)
        asyncio.run(soak.run())
    print(json.dumps(summarise(Path(args.csv)), indent=1))


if __name__ == "__main__":
    main()
