"""``lipforcing analyze trajectory --teacher CKPT --shards DIR --clips N --out DIR`` (spec 5).

Paired 50-step teacher trajectories on held-out clips: CFG vs no-CFG (panel a), the Euler-step
(s_0, s_1) factorial against the landing j_1 (panel b) and the fixed-CFG sweep, scored on the
mouth region (LPIPS, SSIM; Sync-C / Sync-D with --syncnet or --syncnet-v2). Writes
trajectory.csv, trajectory.png, factorial.png, sweep.png and summary.md; a rerun with the same
settings resumes by clip. ``lipforcing analyze report --out DIR`` rebuilds trajectory.csv from the
finished clips (also of an interrupted run) and redraws figures and summary (e.g. after adding
DIR/notes.md, which is appended to summary.md).
"""

from __future__ import annotations

import argparse

from lipforcing.cli import options

TRAJECTORY = """\
Paired 50-step teacher trajectories on held-out clips: CFG against no CFG, the Euler-step
(s_0, s_1) factorial against the landing step j_1, and a fixed-CFG sweep, scored on the mouth
region (LPIPS, SSIM; Sync-C / Sync-D with --syncnet or --syncnet-v2). Writes trajectory.csv,
trajectory.png, factorial.png, sweep.png and summary.md; rerunning with the same settings
resumes clip by clip."""
REPORT = """\
Rebuild trajectory.csv, the figures and summary.md from the finished clips (also of an
interrupted run); OUT/notes.md, if present, is appended to summary.md."""
DESCRIPTION = f"""\
Analyse a teacher's sampling trajectories (spec section 5).

trajectory: {TRAJECTORY}

report: {REPORT}"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="analysis", metavar="ANALYSIS")
    sub.required = True
    p = sub.add_parser(
        "trajectory",
        help="paired teacher trajectories, factorial and sweep",
        description=TRAJECTORY,
    )
    options.add_weights(p, "--teacher", "bidirectional teacher weights in any accepted layout")
    p.add_argument("--shards", required=True, help="folder of preprocessed held-out shards")
    p.add_argument("--clips", type=int, default=4, help="held-out windows to analyse")
    p.add_argument("--out", required=True, help="output folder (resumable)")
    p.add_argument("--codec", help="codec checkpoint (default: the shipped tiny codec)")
    p.add_argument("--context", help="text context file (lipforcing encode-prompt; Wan presets)")
    sync = p.add_mutually_exclusive_group()
    sync.add_argument("--syncnet", help="our LipSyncNet checkpoint (lipforcing train syncnet)")
    sync.add_argument("--syncnet-v2", help="syncnet_python's syncnet_v2.model")
    p.add_argument("--steps", default="all", help="scored steps j: all | 0:50:5 | 0,10,49 | mix")
    p.add_argument("--landings", default="all", help="landings j_1: all | 1:20:2,20:41 | ...")
    p.add_argument("--cfg", type=float, default=4.5, help="CFG scale of the guided arms")
    p.add_argument("--sweep", default="1,3,4.5,6", help="fixed-CFG sweep scales")
    p.add_argument("--drop-modes", default="all,audio", help="unconditional branches: all,audio")
    p.add_argument("--latent-frames", type=int, help="latent frames per clip (default: teacher's)")
    p.add_argument("--seed", type=int, default=0, help="noise seed")
    p.add_argument("--batch", type=int, default=16, help="samples per network call")
    options.add_device(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    r = sub.add_parser(
        "report",
        help="trajectory.csv, figures and summary.md from finished clips",
        description=REPORT,
    )
    r.add_argument("--out", required=True, help="folder of a finished analysis")


def parse_indices(spec: str) -> tuple[int, ...] | None:
    """``all`` -> None; else comma-separated indices and ``a:b[:c]`` ranges (``1:20:2,20:41``)."""
    from lipforcing.errors import UserError

    spec = spec.strip()
    if spec == "all":
        return None
    out: set[int] = set()
    try:
        for part in (p.strip() for p in spec.split(",") if p.strip()):
            out |= set(range(*map(int, part.split(":")))) if ":" in part else {int(part)}
    except (ValueError, TypeError):
        raise UserError(f"bad step list {spec!r}: use all, A:B[:C], A,B,C or a mix") from None
    if not out:
        raise UserError(f"step list {spec!r} selects no step")
    return tuple(sorted(out))


def parse_floats(spec: str, name: str) -> tuple[float, ...]:
    from lipforcing.errors import UserError

    try:
        return tuple(float(x) for x in spec.split(",") if x.strip())
    except ValueError:
        raise UserError(f"bad {name} list {spec!r}: use comma-separated numbers") from None


def default_latent_frames(preset) -> int:
    """The window length the teacher was trained on (its preset's recipe)."""
    from lipforcing.config import TeacherTrainConfig, tiny_recipe

    if preset.name == "tiny":
        return tiny_recipe().teacher.latent_frames
    return TeacherTrainConfig().latent_frames


def run(args: argparse.Namespace) -> int:
    if args.analysis == "report":
        return run_report(args)
    return run_trajectory(args)


def run_report(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from lipforcing.analysis.run import read_rows, write_report, write_rows
    from lipforcing.errors import UserError

    out = Path(args.out)
    parts = sorted((out / "clips").glob("*.csv"))
    if not parts:
        raise UserError(f"{out}: no finished clips (run `lipforcing analyze trajectory` first)")
    rows = [r for p in parts for r in read_rows(p)]  # an interrupted run reports what it has
    write_rows(out / "trajectory.csv", rows)
    path = out / "config.json"
    config = json.loads(path.read_text()) if path.is_file() else {}
    meta = {**config, **config.get("trajectory", {})}
    print(write_report(out, rows, meta))
    return 0


def run_trajectory(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lipforcing.analysis.run import analyze, load_teacher, write_report
    from lipforcing.analysis.scoring import MouthScorer
    from lipforcing.analysis.trajectory import TrajectoryConfig
    from lipforcing.data.datasets import ShardDataset
    from lipforcing.errors import UserError

    if args.clips < 1:
        raise UserError("--clips must be at least 1")
    if not args.teacher:
        raise UserError("--teacher is required")
    device, dtype = options.device_and_dtype(args)
    model, preset = load_teacher(options.weights_spec(args, args.teacher), device, dtype)
    s = preset.schedule
    try:
        cfg = TrajectoryConfig(
            num_steps=s.num_steps,
            shift=s.shift,
            cfg_scale=args.cfg,
            drop_modes=tuple(m.strip() for m in args.drop_modes.split(",") if m.strip()),
            sweep_scales=parse_floats(args.sweep, "--sweep"),
            steps=parse_indices(args.steps),
            landings=parse_indices(args.landings),
            seed=args.seed,
            max_batch=args.batch,
        )
    except ValueError as e:
        raise UserError(str(e)) from None
    context = None
    if args.context:
        from lipforcing.models.text import load_context

        context = load_context(args.context, preset.model)
    elif preset.model.use_text_context:
        raise UserError(f"the {preset.name} teacher needs a text context: --context FILE")
    frames = args.latent_frames or default_latent_frames(preset)
    dataset = ShardDataset(
        args.shards, latent_frames=frames, chunk_frames=preset.causal.chunk_frames
    )
    codec = load_codec_for(args.codec)
    syncnet, sync_label = load_sync(args)
    if syncnet is None:
        print("note: no --syncnet / --syncnet-v2 given: Sync-C / Sync-D are skipped")
    from lipforcing.evaluation.lpips import LPIPS

    scorer = MouthScorer(codec, LPIPS("alex"), syncnet)
    config = {
        "teacher": str(Path(args.teacher).resolve()),
        "shards": str(Path(args.shards).resolve()),
        "codec": str(args.codec or "shipped tiny codec"),
        "context": str(args.context) if args.context else None,
        "syncnet": sync_label,
        "latent_frames": frames,
        "preset": preset.name,
    }
    rows = analyze(
        model,
        dataset,
        codec,
        scorer,
        cfg,
        args.out,
        clips=args.clips,
        pack=preset.model.audio_pack_frames,
        config=config,
        progress=not args.no_progress,
        context=context,
        mask_style=preset.media.mask_style,
    )
    meta = {
        **config,
        "num_steps": cfg.num_steps,
        "shift": cfg.shift,
        "command": command_line(args),
    }
    print(write_report(args.out, rows, meta))
    return 0


def command_line(args: argparse.Namespace) -> str:
    """The command as run (every option spelled out), for the summary."""
    import shlex

    parts = ["lipforcing", "analyze", args.analysis]
    for key, value in vars(args).items():
        if key in ("command", "analysis", "_run") or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        parts += [flag] if value is True else [flag, str(value)]
    return shlex.join(parts)


def load_codec_for(path: str | None):
    """The codec at ``path`` or the shipped tiny codec; one-line errors."""
    from pathlib import Path

    from lipforcing.errors import UserError

    try:
        from lipforcing.codecs import load_codec
    except ImportError:
        raise UserError("lipforcing.codecs.load_codec is not available in this install") from None
    from lipforcing.distill.recipe import shipped_codec

    target = Path(path) if path else shipped_codec()
    if not target.is_file():
        raise UserError(f"no codec at {target}")
    return load_codec(target)


def load_sync(args: argparse.Namespace):
    """(sync network or None, label)."""
    if args.syncnet:
        from lipforcing.evaluation.syncnet import load_syncnet

        return load_syncnet(args.syncnet), f"LipSyncNet (ours) {args.syncnet}"
    if args.syncnet_v2:
        from lipforcing.evaluation.syncnet import load_syncnet_v2

        return load_syncnet_v2(args.syncnet_v2), f"SyncNetV2 {args.syncnet_v2}"
    return None, None
