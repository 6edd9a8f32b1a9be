"""The timed runs: a teacher clip, a student stream, and the whole benchmark of a preset.

See :mod:`lipforcing.bench.harness` for what is timed and why. Each ``*_run`` returns a dict
``{"frames", "total_s", "ttff_s", "stages"}`` for one run; :func:`benchmark` runs warm-ups,
then the timed runs of each phase, and reports medians (and the speedup in ``both`` mode).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from tqdm import tqdm

from lipforcing.bench import optimize
from lipforcing.bench.harness import (
    PAPER_FIGURES,
    BenchOptions,
    Setup,
    TimedModel,
    bench_preset,
    check_finite,
    make_setup,
    phase_summary,
    release,
)
from lipforcing.bench.student import (
    StudentStream,
    student_net,
    student_run,
    student_run_overlapped,
)
from lipforcing.bench.timing import MemoryMeter, Stages, summarize
from lipforcing.data.conditions import assemble_cond, mask_pixels
from lipforcing.diffusion.samplers import cpu_noise, euler_sample

# ----------------------------------------------------------------------------- teacher


def teacher_run(s: Setup, num_steps: int) -> dict:
    """One clip: encode whole, ``num_steps`` Euler steps with CFG, decode whole."""
    p, opts = s.preset, s.opts
    g = torch.Generator().manual_seed(opts.seed)
    t_frames = opts.teacher_frames
    f = p.codec.latent_frames(t_frames)
    video = s.rand(1, 3, t_frames, p.media.crop_size, p.media.crop_size, generator=g)
    audio = torch.randn(1, t_frames, p.model.audio_feature_dim, generator=g).to(s.device, s.dtype)
    context = s.context(g)
    stages = Stages(s.clock)
    model = TimedModel(s.net, stages, names="clip")
    start = s.clock.stamp()
    if s.codec is not None:
        with stages.stage("encode"):
            ref = s.encode(video[:, :, :1])
            if opts.paired_encode:  # as the student: both clips in one batch-2 encode
                both = s.encode(torch.cat([mask_pixels(video, s.mask), video]))
                masked, ref_seq = both[:1], both[1:]
            else:
                masked = s.encode(mask_pixels(video, s.mask))
                ref_seq = s.encode(video)
    else:
        ref, masked, ref_seq = (s.random_latents(n, g) for n in (1, f, f))
    cond = assemble_cond(
        masked=masked,
        ref_frame=ref,
        ref_seq=ref_seq,
        mask=s.mask,
        audio=audio,
        pack=p.model.audio_pack_frames,
        context=context,
    )
    noise = cpu_noise(masked.shape, g, masked)
    scale = p.schedule.teacher_cfg if opts.teacher_cfg is None else opts.teacher_cfg
    x0 = euler_sample(
        model,
        noise,
        cond,
        num_steps=num_steps,
        shift=p.schedule.shift,
        cfg_scale=scale,
        drop_mode=p.schedule.drop_mode,
    )
    out = x0
    if s.codec is not None:
        with stages.stage("decode"):
            out = s.codec.decode(x0)
    end = s.clock.stamp()
    s.clock.sync()
    check_finite(out, "teacher")
    total = s.clock.seconds(start, end)
    return {"frames": t_frames, "total_s": total, "ttff_s": total, "stages": stages.per_call_ms()}


# ----------------------------------------------------------------------------- phases


@dataclasses.dataclass
class Phase:
    """A built teacher or student: ``run(warm)`` times one run; ``facts`` go into the JSON."""

    name: str
    setup: Setup
    run: Callable[[bool], dict]
    facts: dict


def make_phase(name: str, opts: BenchOptions) -> Phase:
    attention = "bidirectional" if name == "teacher" else "block_causal"
    s = make_setup(opts, attention)
    if name == "teacher":
        num_steps = opts.teacher_steps or s.preset.schedule.num_steps
        scale = s.preset.schedule.teacher_cfg if opts.teacher_cfg is None else opts.teacher_cfg
        facts = {"steps": num_steps, "cfg_scale": scale, "network_calls": num_steps}
        facts["network_evaluations"] = num_steps * (1 if scale == 1.0 else 2)
        return Phase(name, s, lambda warm: teacher_run(s, 1 if warm else num_steps), facts)
    stream = StudentStream(s)
    s.net = student_net(s)
    run_stream = student_run_overlapped if opts.overlap else student_run
    steps = opts.student_steps or s.preset.causal.student_steps
    facts = {
        "chunks": opts.chunks,
        "grid_steps": list(steps),
        "network_calls_per_chunk": len(steps) + 1,
        "kv_cache_mb": stream.cache.nbytes / 2**20,
        "kv_after_decode": opts.kv_after_decode,
        "kv_shortcut": opts.kv_shortcut,
        "paired_encode": opts.paired_encode,
    }

    def run(warm: bool) -> dict:
        return run_stream(s, stream, min(opts.chunks, 4) if warm else opts.chunks)

    return Phase(name, s, run, facts)


def measure(phases: list[Phase], opts: BenchOptions, progress: bool) -> dict[str, dict]:
    """Warm-ups, then ``opts.runs`` rounds running every phase once per round, in turn."""
    meter = MemoryMeter(phases[0].setup.device)
    runs: dict[str, list[dict]] = {ph.name: [] for ph in phases}
    with optimize.sdpa_backend(opts.sdpa), torch.inference_mode():
        for ph in phases:
            for _ in range(opts.warmup):
                ph.run(True)
        meter.start()
        for _ in tqdm(range(opts.runs), desc="runs", disable=not progress, leave=False):
            for ph in phases:
                runs[ph.name].append(ph.run(False))
    out = {}
    for ph in phases:
        out[ph.name] = {**phase_summary(runs[ph.name], meter, ph.setup), **ph.facts}
        if len(phases) > 1:
            out[ph.name]["memory_method"] += " (peak of both phases, interleaved)"
    return out


def benchmark(opts: BenchOptions, *, progress: bool = False) -> dict:
    """Measure the phases of ``opts.mode``; the result is the JSON the CLI prints."""
    preset, note = bench_preset(opts)
    phases = ["teacher", "student"] if opts.mode == "both" else [opts.mode]
    result = {
        "schema": "lipforcing.bench/1",
        "preset": opts.preset,
        "mode": opts.mode,
        "methodology": note,
        "crop_size": preset.media.crop_size,
        "fps_video": preset.media.fps,
        "layers": preset.model.num_layers,
        "options": {k: _plain(v) for k, v in dataclasses.asdict(opts).items()},
    }
    if opts.interleave:  # both built at once, runs alternate: same load drift on each side
        built = [make_phase(name, opts) for name in phases]
        try:
            result.update(measure(built, opts, progress))
        finally:
            for ph in built:
                release(ph.setup)
    else:  # one phase at a time (a GPU holds one large model at a time)
        for name in phases:
            ph = make_phase(name, opts)
            try:
                result.update(measure([ph], opts, progress))
            finally:
                release(ph.setup)
    result["interleaved"] = opts.interleave and len(phases) > 1
    if opts.mode == "both":
        result["speedup"] = result["student"]["fps"] / result["teacher"]["fps"]
        if result["interleaved"]:  # rounds saw the same load on both sides: per-round ratios
            pairs = zip(result["student"]["fps_runs"], result["teacher"]["fps_runs"])
            result["speedup_runs"] = [s / t for s, t in pairs]
            result["speedup_median_of_rounds"] = summarize(result["speedup_runs"])["median"]
    if opts.preset in PAPER_FIGURES:
        result["paper"] = PAPER_FIGURES[opts.preset]
    if "student" in result:
        result["realtime"] = result["student"]["fps"] >= preset.media.fps
    return result


def _plain(v):
    return list(v) if isinstance(v, tuple) else v
