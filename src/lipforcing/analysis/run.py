"""One trajectory-analysis run: clips -> paired samples -> scores -> CSV, figures, summary.

Output folder layout:
- ``config.json``: what was run (teacher, shards, codec, sync network, :class:`TrajectoryConfig`).
  A rerun into the same folder must match it, else it is refused (results would mix).
- ``clips/<clip id>.csv``: the rows of one finished clip, written atomically; a rerun skips
  clips whose file exists (resume by clip), so the second run recomputes nothing.
- ``trajectory.csv``: the rows of the selected clips, one row per clip, panel, arm, step and
  metric (columns :data:`COLUMNS`); then ``trajectory.png``, ``factorial.png``, ``sweep.png``
  and ``summary.md`` (see :mod:`lipforcing.analysis.summary`).
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path

import torch
from tqdm import tqdm

from lipforcing.analysis.scoring import Clip, MouthScorer, prepare_clip, select_windows
from lipforcing.analysis.trajectory import Sample, TrajectoryConfig, clip_noise, run_clip
from lipforcing.errors import CheckpointError, UserError

COLUMNS = ("clip", "panel", "s0", "s1", "drop_mode", "j", "t", "metric", "value")


def load_teacher(path, device="cpu", dtype=torch.float32):
    """The bidirectional teacher and its preset (``path``: a path or a WeightsSpec of any
    layout); a causal student is refused in one line."""
    from lipforcing.models.weights import WeightsSpec, resolve

    spec = WeightsSpec.of(path)
    if not spec.path.exists():
        raise CheckpointError(f"no teacher checkpoint at {spec.path}")
    _, preset, _ = resolve(spec, default_attention="bidirectional")
    if preset.model.attention != "bidirectional":
        raise CheckpointError(
            f"{spec.path} is a causal (block_causal) student; the analysis needs the "
            "bidirectional 50-step teacher"
        )
    from lipforcing.models.weights import load_model

    loaded = load_model(spec, device=device, dtype=dtype, default_attention="bidirectional")
    return loaded.model.eval().requires_grad_(False), loaded.preset


def score_samples(samples: Iterable[Sample], clip: Clip, scorer: MouthScorer, batch: int):
    """Rows of ``samples`` scored in groups of ``batch`` latents."""
    rows: list[dict] = []
    pending: list[Sample] = []

    def flush() -> None:
        scores = scorer.score(torch.stack([s.x0 for s in pending]).float().cpu(), clip)
        for s, sc in zip(pending, scores, strict=True):
            for metric, value in sc.items():
                rows.append(sample_row(clip.id, s, metric, value))
        pending.clear()

    for s in samples:
        pending.append(s)
        if len(pending) == batch:
            flush()
    if pending:
        flush()
    return rows


def sample_row(clip_id: str, s: Sample, metric: str, value: float) -> dict:
    return {
        "clip": clip_id,
        "panel": s.panel,
        "s0": s.s0,
        "s1": s.s1,
        "drop_mode": s.drop_mode,
        "j": s.j,
        "t": round(s.t, 6),
        "metric": metric,
        "value": value,
    }


def write_rows(path: Path, rows: list[dict]) -> None:
    """CSV with :data:`COLUMNS`, written to a temporary name and renamed (atomic)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS)
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)


def read_rows(path: str | Path) -> list[dict]:
    """Rows of a trajectory CSV with numeric fields parsed."""
    with Path(path).open(newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["s0"], r["s1"], r["t"], r["value"] = map(float, (r["s0"], r["s1"], r["t"], r["value"]))
        r["j"] = int(r["j"])
    return rows


def check_config(out: Path, config: dict) -> None:
    """Write ``config.json``, or refuse when the folder holds results of another config."""
    path = out / "config.json"
    config = json.loads(json.dumps(config))  # tuples -> lists, as read back
    if path.is_file():
        old = json.loads(path.read_text())
        if old != config:
            diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
            raise UserError(
                f"{out} holds results of another configuration (differs in {', '.join(diff)}); "
                "use a new --out"
            )
        return
    path.write_text(json.dumps(config, indent=2, sort_keys=True))


def clip_file(out: Path, clip_id: str) -> Path:
    return out / "clips" / (clip_id.replace("/", "_") + ".csv")


def analyze(
    model,
    dataset,
    codec,
    scorer: MouthScorer,
    cfg: TrajectoryConfig,
    out: str | Path,
    *,
    clips: int,
    pack: int,
    config: dict | None = None,
    score_batch: int = 8,
    progress: bool = True,
    context=None,
    mask_style: str = "rectangle",
) -> list[dict]:
    """Run (or resume) the analysis of ``clips`` windows of ``dataset``; returns all rows.

    Args:
        model: the teacher, ``model(x_t, t, cond) -> velocity``.
        dataset: a ShardDataset with the teacher's window length.
        codec: encodes the clips and decodes the x0 predictions.
        scorer: mouth-region metrics.
        cfg: arms, steps and noise seed.
        out: output folder (see the module docstring).
        clips: number of windows to analyse.
        pack: video frames per latent frame (the audio packing).
        config: run description stored in ``config.json`` (with ``cfg`` added).
        context: the teacher's fixed text context (:class:`~lipforcing.models.text.Context`).
        mask_style: the preset's ``media.mask_style``.
    """
    param = next(model.parameters(), None) if hasattr(model, "parameters") else None
    out = Path(out)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    check_config(out, {**(config or {}), "trajectory": dataclasses.asdict(cfg)})
    indices = select_windows(dataset, clips)
    if len(indices) < clips:
        print(f"note: {len(indices)} windows available, analysing all of them")
    rows: list[dict] = []
    bar = tqdm(indices, desc="clips", unit="clip", disable=not progress)
    for index in bar:
        window = dataset.windows[index]
        clip_id = f"{dataset.names[window.shard]}@{window.start}"
        path = clip_file(out, clip_id)
        if not path.is_file():
            clip = prepare_clip(dataset, index, codec, pack, context=context, mask_style=mask_style)
            noise, cond = clip_noise(cfg.seed, index, clip.x0.shape[1:]), clip.cond
            if param is not None:  # the teacher's device and dtype
                noise, cond = noise.to(param), cond.to(param)
            samples = run_clip(model, noise, cond, cfg)
            if progress:
                samples = tqdm(samples, desc=clip_id, unit="x0", leave=False, total=count(cfg))
            write_rows(path, score_samples(samples, clip, scorer, score_batch))
        rows += read_rows(path)
    write_rows(out / "trajectory.csv", rows)
    return rows


def write_report(out: str | Path, rows: list[dict], meta: dict) -> Path:
    """Figures and ``summary.md`` from the rows; ``out/notes.md`` (if any) is appended to it."""
    from lipforcing.analysis.plots import write_figures
    from lipforcing.analysis.summary import Results, recommend, summary_markdown
    from lipforcing.diffusion.schedules import shifted_timesteps

    out = Path(out)
    res = Results(rows)
    if not res.clips:
        raise UserError(f"{out}: no rows to report")
    num_steps = int(meta.get("num_steps", 50))
    taus = shifted_timesteps(num_steps, float(meta.get("shift", 5.0))).tolist()
    recs = {d: recommend(res, d) for d in res.drop_modes}
    write_figures(res, recs, num_steps, out)
    notes = out / "notes.md"
    text = summary_markdown(res, meta, taus, notes.read_text() if notes.is_file() else "")
    path = out / "summary.md"
    path.write_text(text)
    return path


def count(cfg: TrajectoryConfig) -> int:
    """Samples one clip yields (for the progress bar)."""
    from lipforcing.analysis.trajectory import trajectory_arms

    arms = trajectory_arms(cfg)
    scored = sum(a.scale in (1.0, cfg.cfg_scale) for a in arms)
    sweep = sum(a.scale in cfg.sweep_scales for a in arms)
    modes = len(cfg.drop_modes)
    per_landing = 1 + 3 * modes if cfg.cfg_scale != 1.0 else 1
    return scored * len(cfg.measured_steps) + sweep + per_landing * len(cfg.landing_steps)


__all__ = [
    "COLUMNS",
    "analyze",
    "check_config",
    "count",
    "load_teacher",
    "read_rows",
    "score_samples",
    "write_report",
    "write_rows",
]
