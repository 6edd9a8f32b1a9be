"""Stream random chunks through a randomly initialised causal student with its KV cache.

Reports chunks per second (model time only: two denoising calls and one cache write per chunk)
and the peak resident memory, which must not grow with the number of chunks.
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

    import torch
    from tqdm import tqdm

    from lipforcing.config import get_preset
    from lipforcing.diffusion.causal import generate_chunk
    from lipforcing.diffusion.samplers import cpu_noise
    from lipforcing.errors import UserError
    from lipforcing.models import KVCache, build_model
    from lipforcing.models.conditioning import LipSyncCond

    if args.chunks < 1:
        raise UserError("--chunks must be >= 1")
    try:
        preset = get_preset(args.preset).with_attention("block_causal")
    except ValueError as e:
        raise UserError(str(e)) from None
    m, causal, hw = preset.model, preset.causal, preset.latent_hw
    torch.manual_seed(args.seed)
    model = build_model(m, device=args.device).eval()
    cache = KVCache.allocate(m, 1, hw, causal, device=args.device)
    g = torch.Generator().manual_seed(args.seed)
    n, c = causal.chunk_frames, m.latent_channels

    def rand(*shape):
        return torch.randn(*shape, generator=g).to(args.device)

    context = rand(1, m.text_len, m.text_dim) if m.use_text_context else None
    cond = LipSyncCond(
        rand(1, c, n, *hw), rand(1, 1, n, *hw), rand(1, c, n, *hw), rand(1, c, n, *hw),
        rand(1, m.audio_pack_frames * n, m.audio_feature_dim), context,
    )  # fmt: skip
    shape = (1, c, n, *hw)
    with torch.inference_mode():
        generate_chunk(model, cache, cpu_noise(shape, g, cond.ref), cond, causal.student_steps)
        cache.reset()  # the first chunk above was warm-up
        start = time.perf_counter()
        for _ in tqdm(range(args.chunks), desc="chunks", disable=args.json):
            x0 = generate_chunk(
                model, cache, cpu_noise(shape, g, cond.ref), cond, causal.student_steps, generator=g
            )
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
    result = {
        "preset": preset.name,
        "chunks": args.chunks,
        "chunks_per_s": args.chunks / elapsed,
        "latent_fps": args.chunks * n / elapsed,
        "peak_rss_mb": _peak_rss_mb(),
        "cache_mb": cache.nbytes / 2**20,
        "finite": bool(torch.isfinite(x0).all()),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{preset.name}: {result['chunks_per_s']:.2f} chunks/s "
            f"({result['latent_fps']:.1f} latent frames/s), peak RSS "
            f"{result['peak_rss_mb']:.0f} MB, KV cache {result['cache_mb']:.2f} MB"
        )
    return 0 if result["finite"] else 1
