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
from lipforcing.bench.student import StudentBench
from lipforcing.bench.timing import MemoryMeter, Stages, summarize
from lipforcing.data.conditions import assemble_cond, mask_pixels
from lipforcing.diffusion.samplers import cpu_noise, euler_sample
from lipforcing.diffusion.schedules import ShiftedGrid
from lipforcing.streaming import accel
from lipforcing.streaming.options import resolve

# ----------------------------------------------------------------------------- teacher


def teacher_run(s: Setup, num_steps: int) -> dict:
    """One clip: encode whole, ``num_steps`` Euler steps with CFG, decode whole."""
    p, opts = s.preset, s.opts
    g = torch.Generator().manual_seed(opts.seed)
    t_frames = opts.teacher_frames
    video = s.rand(1, 3, t_frames, p.media.crop_size, p.media.crop_size, generator=g)
    audio = torch.randn(1, t_frames, p.model.audio_feature_dim, generator=g).to(s.device, s.dtype)
    context = s.context(g)
    stages = Stages(s.clock)
    model = TimedModel(s.model, stages)
    start = s.clock.stamp()
    with stages.stage("encode"):
        ref = s.encode(video[:, :, :1])
        if opts.paired_encode:  # as the student: both clips in one batch-2 encode
            both = s.encode(torch.cat([mask_pixels(video, s.mask), video]))
            masked, ref_seq = both[:1], both[1:]
        else:
            masked = s.encode(mask_pixels(video, s.mask))
            ref_seq = s.encode(video)
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
        grid=ShiftedGrid(num_steps, p.schedule.shift),
        cfg_scale=scale,
        drop_mode=p.schedule.drop_mode,
    )
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
    bench = StudentBench.build(s, opts.chunks)
    pipe = bench.pipeline
    facts = {
        "chunks": opts.chunks,
        "grid_steps": list(s.preset.causal.student_steps),
        "network_calls_per_chunk": len(s.preset.causal.student_steps) + 1,
        "kv_cache_mb": _cache_mb(s.preset, s.dtype),
        "execution": {
            "requested": pipe.requested.as_dict(),
            "ran": pipe.options.as_dict(),
            "notes": pipe.notes,
        },
        "features": bench.features,
        "source": "{}, {}x{}".format(bench.source.name, *bench.source.frame_size),
    }

    def run(warm: bool) -> dict:
        return bench.run(min(opts.chunks, 4) if warm else opts.chunks)

    return Phase(name, s, run, facts)


def _cache_mb(preset, dtype) -> float:
    m, c = preset.model, preset.causal
    slots = c.cache_frames * preset.tokens_per_frame
    return 2 * m.num_layers * slots * m.dim * torch.finfo(dtype).bits / 8 / 2**20


def measure(phases: list[Phase], opts: BenchOptions, progress: bool) -> dict[str, dict]:
    """Warm-ups, then ``opts.runs`` rounds running every phase once per round, in turn."""
    meter = MemoryMeter(phases[0].setup.device)
    runs: dict[str, list[dict]] = {ph.name: [] for ph in phases}
    sdpa = resolve(opts.execution, opts.device).options.sdpa  # the teacher's too
    with accel.sdpa_backend(sdpa), torch.inference_mode():
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


def benchmark_sessions(opts: BenchOptions, sessions, *, progress: bool = False) -> dict:
    """Concurrent sessions of the student (:mod:`lipforcing.bench.sessions`) on the preset of
    ``opts`` with its execution options; the result is the JSON the CLI prints."""
    from lipforcing.bench.sessions import measure_sessions
    from lipforcing.streaming.pipeline import Pipeline

    preset, note = bench_preset(opts)
    s = make_setup(opts, "block_causal")
    pipe = Pipeline.build(
        s.model, s.codec, s.preset, device=s.device, dtype=s.dtype, options=opts.execution
    )
    try:
        result = {
            "schema": "lipforcing.bench/1",
            "preset": opts.preset,
            "mode": "sessions",
            "methodology": note + "; concurrent sessions through one scheduler (serve's path)",
            "crop_size": preset.media.crop_size,
            "fps_video": preset.media.fps,
            "layers": preset.model.num_layers,
            "options": {k: _plain(v) for k, v in dataclasses.asdict(opts).items()},
            "execution": {
                "requested": pipe.requested.as_dict(),
                "ran": pipe.options.as_dict(),
                "notes": pipe.notes,
            },
            "sessions": measure_sessions(pipe, sessions, progress=progress),
        }
    finally:
        release(s)
    return result
