"""``lipforcing avatar create``: from a person's footage to a ``NAME.avatar`` folder.

Stages (each resumable; a rerun of the same command continues where it stopped):

1. footage: scan every video (face track, crops, audio features, footage measures), print the
   footage report, refuse unusable footage, split off the held-out end;
2. estimate: time one step of every stage on this machine, size the trained stages' steps to
   the time budget (``avatar.budget``; stored in ``settings.json`` for resumes) and print the
   total;
3. codec, 4. SyncNet: fine-tuned (``--init builtin``) or trained (``scratch``) on the person;
5. latents: the training windows (overlapping) and the held-out windows, encoded once;
6. teacher, 7. Stage 1, 8. Stage 2 with the person's SyncNet as the reward;
9. avatar: the idle base, the held-out report, the card, then one rename into place.

Everything is built in ``NAME.avatar.partial/`` beside the output; the finished folder appears
only at the final rename. ``partial`` keeps every stage's output so an interrupted run
resumes; it is removed after success (``keep_work`` keeps it) and after footage is refused.
"""

from __future__ import annotations

import json
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np

from lipforcing.avatar.budget import TimeBudget
from lipforcing.avatar.config import AvatarConfig
from lipforcing.avatar.footage import FootageError
from lipforcing.errors import MediaError, UserError

PRESET = "tiny"  # the CPU scale: the only preset an avatar is trained at
PLAN_KEY = "plan"  # settings.json's entry with the steps every trained stage runs


STAGES = ("footage", "estimate", "codec", "syncnet", "latents", "teacher", "stage1", "stage2")
STAGES += ("avatar",)


class Run:
    """Stage headers, wall times (kept across resumes in ``timings.json``), the log, and
    ``progress.json`` (the current stage, when it started, its estimate and the estimates of
    the stages after it) for anyone watching the build (the server's page)."""

    def __init__(self, work: Path, log=print) -> None:
        self.work, self.log, self.index = work, log, 0
        self.path = work / "timings.json"
        self.timings = json.loads(self.path.read_text()) if self.path.is_file() else {}
        self.estimate: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str, what: str):
        import os

        self.index += 1
        est = self.estimate.get(name)
        note = f" (estimate {est / 60:.1f} min)" if est else ""
        self.log(f"[{self.index}/{len(STAGES)}] {name}: {what}{note}")
        later = STAGES[STAGES.index(name) + 1 :]
        progress = {
            "stage": name,
            "index": self.index,
            "stages": len(STAGES),
            "what": what,
            "started": time.time(),
            "estimate_s": est,
            "later_s": sum(self.estimate.get(s, 0.0) for s in later) if self.estimate else None,
        }
        _write_json(self.work / "progress.json", progress)
        start = time.perf_counter()
        yield
        spent = time.perf_counter() - start
        self.timings[name] = self.timings.get(name, 0.0) + spent
        self.timings.setdefault("load_average", {})[name] = round(os.getloadavg()[0], 2)
        self.path.write_text(json.dumps(self.timings, indent=2))


def _write_json(path: Path, data: dict) -> None:
    import os

    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def read_progress(work: Path) -> dict | None:
    """The build's current stage with ``elapsed_s`` and ``left_s`` (None before it starts)."""
    path = work / "progress.json"
    try:
        p = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    elapsed = time.time() - p["started"]
    if p.get("estimate_s") is not None and p.get("later_s") is not None:
        p["left_s"] = max(p["estimate_s"] - elapsed, 0.0) + p["later_s"]
    p["elapsed_s"] = elapsed
    return p


def output_path(out: str | Path) -> Path:
    from lipforcing.avatar.bundle import SUFFIX

    out = Path(out)
    if out.suffix != SUFFIX:
        raise UserError(f"--out must name a {SUFFIX} folder (e.g. me{SUFFIX}), got {out.name}")
    if out.exists():
        raise UserError(f"{out} already exists; choose another name or remove it")
    return out


def input_paths(inputs: list[str | Path]) -> list[Path]:
    paths = [Path(p) for p in inputs]
    if not paths:
        raise UserError("give at least one video of the person speaking")
    for p in paths:
        if not p.is_file():
            raise MediaError(f"no such video: {p}")
    return paths


def open_work(
    out: Path,
    inputs: list[Path],
    cfg: AvatarConfig,
    other: Path | None,
    budget: TimeBudget | None = None,
) -> Path:
    """The partial build folder; refused when it holds a build with other settings (the steps
    a budget chose, ``settings.json``'s ``"plan"``, are the build's own and kept)."""
    work = out.with_name(out.name + ".partial")
    settings = {
        "inputs": [{"path": str(p.resolve()), "bytes": p.stat().st_size} for p in inputs],
        "config": json.loads(cfg.to_json()),
        "other_audio": str(other.resolve()) if other else None,
        "budget": asdict(budget) if budget is not None else None,
    }
    path = work / "settings.json"
    if path.is_file():
        held = json.loads(path.read_text())
        held.pop(PLAN_KEY, None)
        if held != settings:
            raise UserError(
                f"{work} holds a partial build with other inputs or settings; rerun with the "
                "same ones to resume it, or remove it to start afresh"
            )
        return work
    work.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2))
    return work


def create_avatar(
    inputs: list[str | Path],
    out: str | Path,
    cfg: AvatarConfig,
    *,
    budget: TimeBudget | None = None,
    other_audio: str | Path | None = None,
    keep_work: bool = False,
    log=print,
) -> Path:
    """Build ``out`` (a ``NAME.avatar`` folder) from ``inputs``; returns its path.

    With ``budget`` the trained stages' steps are sized to its wall time after the calibration
    (``avatar.budget``); without, they are ``cfg``'s."""
    from lipforcing.avatar import footage as ft
    from lipforcing.avatar import train
    from lipforcing.config import get_preset

    out, paths = output_path(out), input_paths(inputs)
    other = Path(other_audio) if other_audio else None
    if other is not None and not other.is_file():
        raise MediaError(f"no such audio file: {other}")
    preset = get_preset(PRESET)
    work = open_work(out, paths, cfg, other, budget)
    run = Run(work, log)
    started = time.perf_counter()
    try:
        with run.stage("footage", f"scanning {len(paths)} video(s)"):
            report = ft.FootageReport([], [], cfg.footage)
            report.scans = ft.scan_footage(paths, preset, cfg.footage, work / "scan")
            report.segments = ft.split(report.scans, cfg.holdout)
            log(report.table())
            ft.check_footage(report)
    except FootageError:
        shutil.rmtree(work, ignore_errors=True)  # nothing worth resuming
        raise
    train_dir, held_dir = (_part(report, p, work / p) for p in ("train", "heldout"))
    with run.stage("estimate", "timing one step of every stage on this machine"):
        cal = _calibration(cfg, preset, train_dir, report, work)
        spent = time.perf_counter() - started  # the scan, the parts and the calibration
        cfg, steps = _steps(cfg, cal, budget, spent, work, log)
        est = _stage_seconds(cfg, cal)  # a resume skips the stages it has finished:
        run.estimate = {k: v for k, v in est.items() if k not in run.timings}
        total = sum(run.estimate.values())
        log(
            f"estimated time: {(spent + total) / 60:.1f} min in all ({spent / 60:.1f} min spent "
            f"on the footage scan and calibration, {total / 60:.1f} min from now"
            + (f"; budget {budget.minutes:g} min" if budget is not None else "")
            + "; stages below show their estimates)"
        )
    with run.stage("codec", f"{cfg.init} codec, {cfg.codec.steps} steps on the person's crops"):
        codec = train.person_codec(train_dir, cfg, preset, work / "codec")
    with run.stage("syncnet", f"{cfg.init} SyncNet, {cfg.syncnet.steps} steps"):
        syncnet = train.person_syncnet(train_dir, cfg, preset, work / "syncnet")
    with run.stage("latents", "encoding the training and held-out windows"):
        cache = train.latent_cache(train_dir, codec, cfg, work / "latents_train.pt", train=True)
        held = train.latent_cache(held_dir, codec, cfg, work / "latents_heldout.pt", train=False)
        log(f"{cache['x0'].shape[0]} training windows, {held['x0'].shape[0]} held-out windows")
    reward = train.reward_fn(codec, syncnet, cfg)
    rc = cfg.recipe
    with run.stage("teacher", f"{rc.teacher.optim.steps} steps"):
        paths_ = {"teacher": train.distill_teacher(cache, cfg, preset, work)}
    with run.stage("stage1", f"Diffusion Forcing, {rc.stage1.optim.steps} steps"):
        paths_["stage1"] = train.distill_stage1(cache, paths_["teacher"], cfg, work)
    with run.stage("stage2", f"Self-Forcing DMD with the reward, {rc.stage2.optim.steps} updates"):
        paths_["student"] = train.distill_stage2(cache, paths_, cfg, work, reward)
    with run.stage("avatar", "idle base, held-out report, card"):
        staged = _stage_avatar(work, out, report, train_dir, held_dir, held, paths_, cfg, other)
        card = _card(out, paths, report, cfg, run, started, staged)
        card["steps"] = steps
        from lipforcing.avatar.bundle import finalise

        finalise(staged, out, card)
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    log(f"wrote {out} in {(time.perf_counter() - started) / 60:.1f} min")
    return out


def _part(report, part: str, dest: Path) -> Path:
    from lipforcing.avatar.footage import write_part

    if not (dest / "part.json").is_file():
        shutil.rmtree(dest, ignore_errors=True)
        write_part(report, part, dest)
    return dest


def _calibration(cfg, preset, train_dir: Path, report, work: Path) -> dict:
    """Seconds per step of every stage (timed once per build, cached for resumes) with the
    build's training windows and held-out frames."""
    from lipforcing.avatar.estimate import calibrate
    from lipforcing.data.datasets import ShardDataset

    path = work / "estimate.json"
    if path.is_file():
        held = json.loads(path.read_text())
        if "rates" in held:
            return held
    frames = cfg.recipe.teacher.latent_frames
    windows = len(ShardDataset(train_dir, latent_frames=frames, stride=cfg.window_stride))
    held = int(round(report.part_seconds("heldout") * preset.media.fps))
    cal = {"rates": calibrate(cfg, preset), "train_windows": windows, "heldout_frames": held}
    _write_json(path, cal)
    return cal


def _stage_seconds(cfg, cal: dict) -> dict[str, float]:
    """Estimated seconds of every stage after the calibration (``avatar`` = the report)."""
    from lipforcing.avatar.estimate import plan

    stages = plan(cfg, cal["rates"], cal["train_windows"], cal["heldout_frames"])
    est = {s.name: s.seconds for s in stages}
    est["avatar"] = est.pop("report")
    return est


def _steps(cfg, cal: dict, budget, spent: float, work: Path, log):
    """``cfg`` with the steps this build runs, and a card entry saying how each was chosen.

    The first run chooses them (``budget``'s plan, or ``cfg``'s own steps) and stores them in
    ``settings.json``; a resumed run reads them back."""
    from lipforcing.avatar.budget import TRAINED, budget_plan, config_steps, with_steps

    path = work / "settings.json"
    settings = json.loads(path.read_text())
    fixed = config_steps(cfg)
    if PLAN_KEY not in settings:
        if budget is None:
            chosen = {"steps": fixed, "why": dict.fromkeys(TRAINED, "the fixed config's steps")}
        else:
            est = _stage_seconds(cfg, cal)
            bp = budget_plan(budget, cfg, cal["rates"], spent, est["latents"] + est["avatar"])
            why = {s: bp.why(s, budget.shares) for s in TRAINED}
            chosen = {"steps": bp.steps, "why": why, "budget": bp.to_dict()}
        settings[PLAN_KEY] = chosen
        _write_json(path, settings)
    chosen = settings[PLAN_KEY]
    if budget is not None:
        cfg = with_steps(cfg, chosen["steps"])
    card = {}
    for s in TRAINED:
        log(f"  {s}: {chosen['why'][s]} (fixed config: {fixed[s]})")
        card[s] = {"steps": chosen["steps"][s], "config_steps": fixed[s], "why": chosen["why"][s]}
    if "budget" in chosen:
        card["budget"] = chosen["budget"]
    return cfg, card


def _stage_avatar(work, out, report, train_dir, held_dir, held_cache, paths, cfg, other):
    """Assemble the avatar's files in ``work/avatar`` (rebuilt from scratch on a resume)."""
    from lipforcing.avatar.heldout import write_heldout_report
    from lipforcing.config import get_preset

    preset = get_preset(PRESET)
    staged = work / "avatar"
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir()
    student = Path(paths["student"])
    for src, name in (
        (student, "student.safetensors"),
        (student.with_suffix(".json"), "student.json"),
        (work / "codec" / "codec.safetensors", "codec.safetensors"),
        (work / "syncnet" / "syncnet.safetensors", "syncnet.safetensors"),
        (work / "syncnet" / "syncnet.json", "syncnet.json"),
    ):
        shutil.copy2(src, staged / name)
    _write_base(report, train_dir, cfg, preset, staged / "source")
    (staged / "footage.json").write_text(json.dumps(report.to_dict(), indent=2))
    name = out.name[: -len(out.suffix)]
    write_heldout_report(
        staged, name, report, held_dir, held_cache, paths, cfg, preset, other, staged / "report"
    )
    return staged


def _write_base(report, train_dir: Path, cfg, preset, dest: Path) -> None:
    """The calmest ``base_seconds`` of the longest training segment as the idle base."""
    from lipforcing.avatar.bundle import pick_base, write_base
    from lipforcing.data.preprocess import load_shard

    segs = [g for g in report.segments if g.part == "train"]
    seg = max(segs, key=lambda g: g.stop - g.start)
    arrays, meta = load_shard(train_dir / seg.name)
    fps = preset.media.fps
    a, b = pick_base(
        np.asarray(arrays["found"]),
        np.asarray(arrays["landmarks"]),
        int(cfg.base_seconds * fps),
        fps,
    )
    scan = next(s for s in report.scans if s.name == seg.name)
    info = write_base(
        Path(scan.source),
        seg.start + a,
        seg.start + b,
        np.asarray(arrays["transforms"][a:b]),
        np.asarray(arrays["found"][a:b]),
        preset.media,
        dest,
    )
    (dest / "base.json").write_text(json.dumps(info, indent=2))


def _card(out: Path, inputs, report, cfg, run: Run, started: float, staged: Path) -> dict:
    import datetime
    import os

    from lipforcing import __version__
    from lipforcing.avatar.bundle import file_digest
    from lipforcing.avatar.footage import _part_embeddings
    from lipforcing.avatar.identity import medoid
    from lipforcing.cli.bench import provenance

    held = json.loads((staged / "report" / "report.json").read_text())
    fp = report.to_dict()
    emb = _part_embeddings(report, "train")
    return {
        "name": out.name[: -len(".avatar")],
        "tool_version": __version__,
        "provenance": provenance(),
        "created": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "preset": PRESET,
        "init": cfg.init,
        "trained_on": {
            "videos": [
                {"path": str(p), **file_digest(p), "seconds": r["seconds"]}
                for p, r in zip(inputs, fp["videos"])
            ],
            "train_seconds": fp["train_seconds"],
            "heldout_seconds": fp["heldout_seconds"],
            "segments": fp["segments"],
        },
        "config": asdict(cfg),
        "heldout": {"summary": held["summary"], "targets": held["targets"]},
        "identity": medoid(emb).round(5).tolist() if len(emb) else None,
        "base": json.loads((staged / "source" / "base.json").read_text()),
        "timings_s": {**run.timings, "total_this_run": time.perf_counter() - started},
        "estimate_s": run.estimate,
        "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg()},
    }


__all__ = ["STAGES", "create_avatar", "input_paths", "open_work", "output_path", "read_progress"]
