"""Long simulated stream: resident memory and A/V drift over minutes of audio.

Streams ``--minutes`` of speech (the built-in SynthTalk speech, looped) into one session in
40 ms pushes as fast as possible (``realtime=False``; pending audio kept under two seconds),
takes every frame, and samples the process's RSS every ``--every`` seconds of stream time.
A/V drift is checked per frame: frame ``i`` must carry exactly input samples
``[i * 640, (i + 1) * 640)``; the report gives the largest offset found (0 = no drift).
Writes ``soak.csv`` and ``soak.png`` (RSS and throughput against stream minutes).

    python scripts/soak.py --minutes 60 --out soak/ [--checkpoint CKPT | --random]
"""

from __future__ import annotations

import argparse
import csv
import threading
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=1.0, help="minutes of audio to stream")
    ap.add_argument("--out", default="soak", help="output folder")
    ap.add_argument("--every", type=float, default=10.0, help="stream seconds between samples")
    ap.add_argument("--checkpoint", help="student checkpoint (default: built-in, else random)")
    ap.add_argument("--random", action="store_true", help="random tiny weights")
    ap.add_argument("--video", help="source video (default: the built-in SynthTalk face)")
    ap.add_argument("--audio", help="speech to loop (default: the built-in SynthTalk speech)")
    args = ap.parse_args()

    import psutil

    from lipforcing.config import tiny
    from lipforcing.streaming.builtin import builtin_sample
    from lipforcing.streaming.pipeline import Pipeline, shipped_asset
    from lipforcing.streaming.session import StreamSession

    ckpt = args.checkpoint or (None if args.random else shipped_asset("student.safetensors"))
    pipeline = Pipeline.load(ckpt) if ckpt else Pipeline.random(tiny())
    rate = pipeline.preset.audio.sample_rate
    if args.video:
        from lipforcing.media.io import read_audio
        from lipforcing.streaming.source import Source

        source = Source.from_file(args.video, pipeline.preset.media)
        loop = read_audio(args.audio, sample_rate=rate)
    else:
        sample = builtin_sample(pipeline.preset, seconds=10.0)
        source, loop = sample.source, sample.audio
    total = int(args.minutes * 60 * rate)
    from lipforcing.streaming.engine import warmup

    warmup(pipeline, source)
    session = StreamSession(pipeline, source, seed=0)
    spf = session.engine.spf

    def audio_at(start: int, count: int) -> np.ndarray:
        idx = (start + np.arange(count)) % len(loop)
        return loop[idx]

    def feed() -> None:
        piece, pos = int(0.04 * rate), 0
        while pos < total:
            if session.pending_seconds > 2.0:
                time.sleep(0.005)
                continue
            n = min(piece, total - pos)
            session.push_audio(audio_at(pos, n))
            pos += n
        session.close()

    proc = psutil.Process()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, t0 = [], time.perf_counter()
    every = int(args.every * session.fps)
    max_drift, checked, last = 0, 0, (t0, 0)
    threading.Thread(target=feed, daemon=True).start()
    for i, frame in enumerate(session.frames()):
        start = i * spf
        if start < total:
            want = audio_at(start, min(spf, total - start))
            if not np.array_equal(frame.audio[: len(want)], want):
                max_drift = max(max_drift, _offset(frame.audio, loop, start, spf))
            checked += 1
        if i % every == 0:
            now = time.perf_counter()
            fps = (i - last[1]) / max(now - last[0], 1e-9) if i else float("nan")
            last = (now, i)
            rows.append(
                {
                    "stream_min": i / session.fps / 60,
                    "wall_s": now - t0,
                    "frames": i,
                    "rss_mb": proc.memory_info().rss / 2**20,
                    "fps": fps,
                    "pending_s": session.pending_seconds,
                }
            )
            r = rows[-1]
            print(
                f"{r['stream_min']:7.2f} min  rss {r['rss_mb']:7.1f} MB  {fps:6.1f} FPS  "
                f"wall {r['wall_s']:7.1f} s",
                flush=True,
            )
    session.stop()
    wall = time.perf_counter() - t0
    with open(out / "soak.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    plot(rows, out / "soak.png", args.minutes)
    rss = [r["rss_mb"] for r in rows]
    steady = rss[len(rss) // 4 :] or rss
    print(
        f"streamed {args.minutes:g} min of audio ({checked} frames) in {wall:.0f} s "
        f"({checked / wall:.1f} FPS, real-time factor {wall / (args.minutes * 60):.2f}); "
        f"RSS start {rss[0]:.0f} MB, after the first quarter {min(steady):.0f}..{max(steady):.0f}"
        f" MB, end {rss[-1]:.0f} MB; A/V drift: max {max_drift} samples over {checked} frames; "
        f"late {session.stats.late_frames}, dropped {session.stats.dropped_frames}"
    )
    print(f"wrote {out / 'soak.csv'} and {out / 'soak.png'}")


def _offset(got: np.ndarray, loop: np.ndarray, start: int, spf: int) -> int:
    """How far (samples) the frame's audio sits from where it belongs (searched +-1 s)."""
    for d in range(1, 16_000):
        for s in (start + d, start - d):
            if np.array_equal(got, loop[(s + np.arange(spf)) % len(loop)]):
                return d
    return 16_000


def plot(rows: list[dict], path: Path, minutes: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["stream_min"] for r in rows]
    fig, (a, b) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    a.plot(x, [r["rss_mb"] for r in rows], marker=".")
    a.set_ylabel("resident memory (MB)")
    a.set_ylim(0, max(r["rss_mb"] for r in rows) * 1.2)
    a.set_title(f"lipforcing soak: {minutes:g} min stream, tiny preset, CPU")
    b.plot(x[1:], [r["fps"] for r in rows][1:], marker=".", color="tab:green")
    b.axhline(25, color="gray", ls="--", lw=1, label="25 FPS (real time)")
    b.set_ylabel("frames / s (as fast as possible)")
    b.set_xlabel("stream time (min)")
    b.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
