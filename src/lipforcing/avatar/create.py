"""``lipforcing avatar create``: from a person's footage to a ``NAME.avatar`` folder.

Stages (each resumable; a rerun of the same command continues where it stopped):

1. footage: scan every video (face track, crops, audio features, footage measures), print the
   footage report, refuse unusable footage, split off the held-out end;
2. estimate: time one step of every stage on this machine, plan the trained stages' steps to
   the time budget (``avatar.budget``) and print the total;
3. codec, 4. SyncNet: fine-tuned (``--init builtin``) or trained (``scratch``) on the person;
5. latents: the training windows (overlapping) and the held-out windows, encoded once;
6. teacher, 7. Stage 1, 8. Stage 2 with the person's SyncNet as the reward;
   with a budget each trained stage first times its own steps and fixes its step count to
   its share of the budget left (``avatar.sizing``; kept in ``settings.json`` for resumes);
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
from lipforcing.avatar.sizing import PLAN_KEY, StageSteps
from lipforcing.errors import MediaError, UserError

PRESET = "tiny"  # the CPU scale: the only preset an avatar is trained at


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
        self.current: tuple[str, float] | None = None  # the running stage and its start

    def spent_s(self) -> float:
        """Seconds the build has spent in its stages, over every run, the current one included."""
        done = sum(self.timings.get(s, 0.0) for s in STAGES)
        return done + (time.perf_counter() - self.current[1] if self.current else 0.0)

    def expect(self, name: str, seconds: float | None) -> None:
        """A stage's estimate, revised once its steps are fixed (progress.json follows)."""
        if seconds is None:
            return
        self.estimate[name] = seconds
        path = self.work / "progress.json"
        if path.is_file():
            progress = json.loads(path.read_text())
            if progress.get("stage") == name:
                _write_json(path, {**progress, "estimate_s": seconds})

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
        self.current = (name, start)
        try:
            yield
        finally:  # an interrupted stage's time counts too (the budget of a resumed build)
            self.current = None
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

    With ``budget`` the trained stages' steps are sized to its wall time, each stage's when it
    starts (``avatar.budget``, ``avatar.sizing``); without, they are ``cfg``'s."""
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
    steps = StageSteps(work, cfg, budget, log)
    with run.stage("estimate", "timing one step of every stage on this machine"):
        cal = _calibration(cfg, preset, train_dir, report, work)
        spent = run.spent_s()  # the scan and the calibration (all runs)
        cfg = steps.start(cal["rates"], spent, lambda c: _stage_seconds(c, cal))
        est = _stage_seconds(cfg, cal)  # a resume skips the stages it has finished:
        run.estimate = {k: steps.seconds(k) or v for k, v in est.items() if k not in run.timings}
        total = sum(run.estimate.values())
        note = "stages below show their estimates"
        if budget is not None:
            note = (
                f"budget {budget.minutes:g} min; {note}; each trained stage times its own "
                "steps when it starts and fixes them to its share of the budget left"
            )
        log(
            f"estimated time: {(spent + total) / 60:.1f} min in all ({spent / 60:.1f} min spent "
            f"on the footage scan and calibration, {total / 60:.1f} min from now; {note})"
        )

    def sized(stage: str, probe, ahead: tuple[str, ...] = ("avatar",)):
        def left() -> float:
            return budget.minutes * 60 - run.spent_s()

        ahead_s = sum(run.estimate.get(s, 0.0) for s in ahead)
        got = steps.size(stage, probe, left, ahead_s)
        run.expect(stage, steps.seconds(stage))
        return got

    early = ("latents", "avatar")  # the untrained stages still ahead of the codec and SyncNet
    with run.stage("codec", f"{cfg.init} codec on the person's crops"):
        cfg = sized("codec", lambda c, d, t: train.person_codec(train_dir, c, preset, d, t), early)
        codec = train.person_codec(train_dir, cfg, preset, work / "codec")
    with run.stage("syncnet", f"{cfg.init} SyncNet on the person's speech"):
        cfg = sized(
            "syncnet", lambda c, d, t: train.person_syncnet(train_dir, c, preset, d, t), early
        )
        syncnet = train.person_syncnet(train_dir, cfg, preset, work / "syncnet")
    with run.stage("latents", "encoding the training and held-out windows"):
        cache = train.latent_cache(train_dir, codec, cfg, work / "latents_train.pt", train=True)
        held = train.latent_cache(held_dir, codec, cfg, work / "latents_heldout.pt", train=False)
        log(f"{cache['x0'].shape[0]} training windows, {held['x0'].shape[0]} held-out windows")
    reward = train.reward_fn(codec, syncnet, cfg)
    with run.stage("teacher", "bidirectional teacher"):
        cfg = sized("teacher", lambda c, d, t: train.distill_teacher(cache, c, preset, d, t))
        paths_ = {"teacher": train.distill_teacher(cache, cfg, preset, work)}
    with run.stage("stage1", "Diffusion Forcing"):
        teacher = paths_["teacher"]
        cfg = sized("stage1", lambda c, d, t: train.distill_stage1(cache, teacher, c, d, t))
        paths_["stage1"] = train.distill_stage1(cache, paths_["teacher"], cfg, work)
    with run.stage("stage2", "Self-Forcing DMD with the reward (steps: student updates)"):
        done = dict(paths_)
        cfg = sized("stage2", lambda c, d, t: train.distill_stage2(cache, done, c, d, reward, t))
        paths_["student"] = train.distill_stage2(cache, paths_, cfg, work, reward)
    with run.stage("avatar", "idle base, held-out report, card"):
        staged = _stage_avatar(work, out, report, train_dir, held_dir, held, paths_, cfg, other)
        card = _card(out, paths, report, cfg, run, started, staged)
        card["steps"] = steps.card(run.timings)
        from lipforcing.avatar.bundle import finalise

        finalise(staged, out, card)
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    _log_times(card["steps"].get("budget"), run.timings, log)
    log(f"wrote {out} in {(time.perf_counter() - started) / 60:.1f} min")
    return out


def _log_times(budget: dict | None, actual: dict, log) -> None:
    """Planned (up front) vs actual minutes of every stage of a budgeted create."""
    if budget is None:
        return
    planned = budget["planned_s"]
    rows = [
        f"{s} {planned[s] / 60:.1f}/{actual.get(s, 0.0) / 60:.1f}"
        if s in planned
        else f"{s} -/{actual.get(s, 0.0) / 60:.1f}"
        for s in STAGES
    ]
    total = sum(actual.get(s, 0.0) for s in STAGES)
    log(f"minutes planned/actual: {', '.join(rows)}; {total / 60:.1f} of {budget['minutes']:g}")


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
    from lipforcing.provenance import AVATAR_CODE, provenance

    held = json.loads((staged / "report" / "report.json").read_text())
    fp = report.to_dict()
    emb = _part_embeddings(report, "train")
    return {
        "name": out.name[: -len(".avatar")],
        "tool_version": __version__,
        "provenance": provenance(AVATAR_CODE),
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
