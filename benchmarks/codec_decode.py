"""Tiny-codec streaming speed on the CPU: stream decode and stream encode, frames per second.

Runs the codec the way the streaming engine does at the tiny preset's 128x128 crops: a first
chunk of 3 latent frames (9 video frames), then chunks of 3 latent frames (12 video frames);
encode pushes two crops per frame (masked crop and reference crop) as one batch of 2, like
the engine. Reports the median over ``--runs`` timed streams (after ``--warmup``) as frames
per second and milliseconds per video frame; prints JSON (and writes it with ``--out``).

    python benchmarks/codec_decode.py --codec src/lipforcing/assets/tiny/codec.safetensors

On a shared machine use one thread: two OpenMP threads on two busy cores spin and wait
(10x slower, CPU time inflated); on free cores ``--threads 2`` is the live setting.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch


def stream_times(codec, chunks: int, batch: int, mode: str) -> tuple[float, float, int]:
    """Wall and process-CPU seconds for one stream of ``chunks`` chunks, and the video frames
    it covered."""
    size = codec.cfg.image_size
    h = size // codec.spatial_stride
    g = torch.Generator().manual_seed(0)
    if mode == "decode":
        stream = codec.stream_decoder()
        inputs = [torch.randn(batch, codec.latent_channels, 3, h, h, generator=g)]
        inputs *= chunks
    else:
        stream = codec.stream_encoder()
        first = torch.rand(batch, 3, 9, size, size, generator=g) * 2 - 1
        later = torch.rand(batch, 3, 12, size, size, generator=g) * 2 - 1
        inputs = [first] + [later] * (chunks - 1)
    frames = 0
    start, cpu = time.perf_counter(), time.process_time()
    for x in inputs:
        y = stream.push(x)
        frames += y.shape[2] if mode == "decode" else x.shape[2]
    return time.perf_counter() - start, time.process_time() - cpu, frames


def measure(codec, mode: str, runs: int, warmup: int, chunks: int, batch: int) -> dict:
    """Median over ``runs`` streams; CPU time per frame tells a busy shared machine apart
    (wall ~ CPU / threads when the cores are free)."""
    times, cpu_times = [], []
    for i in range(warmup + runs):
        seconds, cpu, frames = stream_times(codec, chunks, batch, mode)
        if i >= warmup:
            times.append(seconds / frames)
            cpu_times.append(cpu / frames)
    per_frame = statistics.median(times)
    return {
        "fps": 1.0 / per_frame,
        "ms_per_frame": 1000.0 * per_frame,
        "cpu_ms_per_frame": 1000.0 * statistics.median(cpu_times),
        "batch": batch,
        "runs_ms_per_frame": [round(1000.0 * t, 2) for t in times],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--codec", default=None, help="codec checkpoint (default: random)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--chunks", type=int, default=6, help="chunks of 3 latents per stream")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from lipforcing.cli.bench import provenance
    from lipforcing.codecs import build_codec, load_codec
    from lipforcing.config import get_preset

    preset = get_preset(args.preset)
    codec = load_codec(args.codec) if args.codec else build_codec(preset.codec)
    codec = codec.eval().requires_grad_(False)
    with torch.inference_mode():
        decode = measure(codec, "decode", args.runs, args.warmup, args.chunks, 1)
        encode = measure(codec, "encode", args.runs, args.warmup, args.chunks, 2)
    result = {
        **provenance(),
        "command": "python benchmarks/codec_decode.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "preset": args.preset,
        "codec": args.codec or "random",
        "image_size": preset.codec.image_size,
        "threads": args.threads,
        "params": sum(p.numel() for p in codec.parameters()),
        "stream_decode": decode,
        "stream_encode_masked_and_ref": encode,
        "per_video_frame_ms": decode["ms_per_frame"] + encode["ms_per_frame"],
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
