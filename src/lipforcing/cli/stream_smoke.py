"""Stream random audio through a randomly initialised student with the product chunk runtime.

Runs :class:`~lipforcing.streaming.engine.ChunkEngine` (the engine ``sync`` and ``serve`` run,
with the exact default execution options) on a synthetic source; reports chunks and frames per
second of the whole engine step and the peak resident memory, which must not grow with the
number of chunks.
"""

from __future__ import annotations

import argparse
import json

DESCRIPTION = """\
Stream random chunks through a randomly initialised causal student with its KV cache.
Reports chunks per second (model time only: two denoising calls and one cache write per chunk)
and the peak memory, which must not grow with the number of chunks."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="tiny", help="tiny, wan-1.3b or wan-14b")
    parser.add_argument("--chunks", type=int, default=20, help="chunks to stream")
    parser.add_argument("--seed", type=int, default=0, help="weights and noise seed")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run(args: argparse.Namespace) -> int:
    import time

    import numpy as np
    import torch
    from tqdm import tqdm

    from lipforcing.bench.student import RandomFeatures, bench_source
    from lipforcing.config import get_preset
    from lipforcing.errors import UserError
    from lipforcing.streaming.engine import ChunkEngine
    from lipforcing.streaming.pipeline import Pipeline

    if args.chunks < 1:
        raise UserError("--chunks must be >= 1")
    try:
        preset = get_preset(args.preset)
    except ValueError as e:
        raise UserError(str(e)) from None
    pipe = Pipeline.random(preset, seed=args.seed, device=args.device)
    if preset.audio.kind == "wav2vec2":
        pipe.wav2vec2 = RandomFeatures(preset.audio.feature_dim, args.seed)
    m = preset.model
    g = torch.Generator().manual_seed(args.seed)
    context = torch.randn(1, m.text_len, m.text_dim, generator=g) if m.use_text_context else None
    source = bench_source(preset.media.crop_size, preset.media.fps, args.seed)
    engine = ChunkEngine(pipe)
    engine.warmup(source)
    stream = engine.open(source, seed=args.seed, context=context)
    rng = np.random.default_rng(args.seed)
    frames = 0
    start = time.perf_counter()
    for _ in tqdm(range(args.chunks), desc="chunks", disable=args.json):
        audio = (0.1 * rng.standard_normal(stream.next_samples())).astype(np.float32)
        frames += len(engine.step(stream, audio))
    engine.flush([stream])
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    result = {
        "preset": preset.name,
        "chunks": args.chunks,
        "chunks_per_s": args.chunks / elapsed,
        "fps": frames / elapsed,
        "latent_fps": args.chunks * preset.causal.chunk_frames / elapsed,
        "peak_rss_mb": _peak_rss_mb(),
        "cache_mb": stream.cache.nbytes / 2**20,
        "finite": bool(torch.isfinite(stream.cache.k).all()),
        "notes": pipe.notes,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{preset.name}: {result['chunks_per_s']:.2f} chunks/s ({result['fps']:.1f} video "
            f"frames/s through the whole engine), peak RSS {result['peak_rss_mb']:.0f} MB, "
            f"KV cache {result['cache_mb']:.2f} MB"
        )
    return 0 if result["finite"] else 1
