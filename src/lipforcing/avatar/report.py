"""The held-out report of an avatar: report.json, report.md, contact_sheet.png, lip_sync.png.

Design choices:
- Scores of each held-out clip come from :func:`lipforcing.avatar.scoring.score_clip`; with
  several clips (the held-out end spans videos) every number is the frame-weighted mean.
- Targets (issue 20) are evaluated in the report itself, each with its value, its threshold
  and by how much it is met or missed: mouth PSNR within 3 dB of the codec's reconstruction;
  Sync-C >= 60% of the real footage's with the best offset within +-1; lip-envelope
  correlation >= half the real footage's; with another utterance, Sync-C >= 2x the unmodified
  source's; the engine at >= 25 FPS.
- The teacher (50 Euler steps with CFG) and the student (2 causal steps) are compared side by
  side on the same held-out windows with the same noise
  (:func:`lipforcing.distill.evaluate.evaluate`): mouth PSNR, the SyncNet confidence at offset
  0 (the reward R) and frames per second including the codec decode.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lipforcing.avatar.bundle import json_default
from lipforcing.avatar.scoring import mouth_region

WEIGHTED = ("mouth_psnr", "mouth_ssim", "mouth_lpips", "sync_c", "sync_d", "lip_r", "engine_fps")
ENTRIES = ("real", "codec", "own", "other", "source_other")
OTHER = ("other", "source_other")  # entries scored on the other utterance's frames only
TARGET_FPS = 25.0
SHEET_COLUMNS = 12
SHEET_TILE = 120


def summarise(clips: list[dict]) -> dict:
    """Frame-weighted means over clips of every scalar score; offsets and lags per clip."""
    out: dict = {}
    for key in (k for k in ENTRIES if k in clips[0]):
        rows = [c[key] for c in clips]
        weights = np.array(
            [c["other_frames"] if key in OTHER else c["frames"] for c in clips], float
        )
        entry = {}
        for metric in WEIGHTED:
            vals = [r.get(metric) for r in rows]
            if all(v is not None for v in vals):
                entry[metric] = float(np.average(vals, weights=weights))
        for metric in ("offset", "lip_lag"):
            if all(metric in r for r in rows):
                entry[metric] = [int(r[metric]) for r in rows]
        out[key] = entry
    return out


def targets(summary: dict) -> dict:
    """Each target of issue 20: value, threshold, met, and the margin (positive = met by)."""
    s = summary
    gap = s["codec"]["mouth_psnr"] - s["own"]["mouth_psnr"]
    syncc = _ratio(s["own"]["sync_c"], s["real"]["sync_c"])
    lip = _ratio(s["own"]["lip_r"], s["real"]["lip_r"])
    dub = _ratio(s["other"]["sync_c"], s["source_other"]["sync_c"])
    offset = max(abs(o) for o in s["own"]["offset"])
    fps = s["own"]["engine_fps"]
    rows = {
        "mouth_psnr_gap_db": (gap, 3.0, gap <= 3.0, 3.0 - gap),
        "sync_c_share_of_real": (syncc, 0.6, syncc >= 0.6, syncc - 0.6),
        "best_offset_frames": (offset, 1, offset <= 1, 1 - offset),
        "lip_r_share_of_real": (lip, 0.5, lip >= 0.5, lip - 0.5),
        "other_sync_c_over_source": (dub, 2.0, dub >= 2.0, dub - 2.0),
        "engine_fps": (fps, TARGET_FPS, fps >= TARGET_FPS, fps - TARGET_FPS),
    }
    return {
        k: {"value": _num(v), "target": t, "met": bool(m), "margin": _num(d)}
        for k, (v, t, m, d) in rows.items()
    }


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b > 0 else float("nan")


def _num(x) -> float:
    return round(float(x), 4)


def side_by_side(cache: dict, paths: dict, codec, syncnet, preset, windows: int) -> dict:
    """Teacher (50 steps, CFG) vs student (2 steps) on the first held-out windows."""
    import torch

    from lipforcing.distill.evaluate import evaluate, generate_student, generate_teacher
    from lipforcing.distill.latents import make_batch
    from lipforcing.distill.recipe import sync_function
    from lipforcing.models.checkpoints import load_checkpoint

    n = min(windows, cache["x0"].shape[0])
    idx = torch.arange(n)
    batch = make_batch(cache, idx, preset.model.audio_pack_frames)
    gt, mask, sync = cache["video"][idx], cache["mask"], sync_function(syncnet)
    teacher, tp = load_checkpoint(paths["teacher"])
    student, sp = load_checkpoint(paths["student"])
    cfg = tp.schedule.teacher_cfg
    with torch.no_grad():
        t = evaluate(
            lambda c, z: generate_teacher(teacher, c, z, tp, cfg), codec, batch, gt, mask, sync
        )
        s = evaluate(lambda c, z: generate_student(student, c, z, sp), codec, batch, gt, mask, sync)
    return {
        "windows": n,
        "teacher": {**t, "steps": tp.schedule.num_steps, "cfg": cfg},
        "student": {**s, "steps": len(sp.causal.student_steps)},
        "speedup": s["fps"] / t["fps"],
    }


def build_report(clips: list[dict], extra: dict) -> dict:
    """The JSON report: per-clip scores (without series / crops), summary, targets, extra."""
    summary = summarise(clips)
    per_clip = [
        {k: v for k, v in c.items() if k not in ("series", "crops")} | {"name": c.get("name")}
        for c in clips
    ]
    return {"summary": summary, "targets": targets(summary), "clips": per_clip, **extra}


def write_report(report: dict, clips: list[dict], preset, out: Path) -> None:
    """report.json, report.md, contact_sheet.png and lip_sync.png into ``out``."""
    from lipforcing.media.contact_sheet import write_png

    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2, default=json_default))
    (out / "report.md").write_text(markdown(report))
    write_png(out / "contact_sheet.png", mouth_sheet(clips[0], preset))
    lip_plot(clips[0], out / "lip_sync.png")


def mouth_sheet(clip: dict, preset) -> np.ndarray:
    """Mouths over time: real, codec reconstruction, generated (own audio), generated (other
    utterance), at ``SHEET_COLUMNS`` evenly spaced held-out frames."""
    import cv2

    from lipforcing.media.contact_sheet import labelled_grid

    crops = clip["crops"]
    n = min(len(crops["codec"]), len(crops["other"]), len(crops["real"]))
    idx = np.linspace(0, n - 1, min(SHEET_COLUMNS, n)).round().astype(int)
    names = ("real", "codec reconstruction", "generated, own audio", "generated, other speech")
    keys = ("real", "codec", "own", "other")
    rows = [
        [cv2.resize(m, None, fx=2, fy=2) for m in mouth_region(crops[k][idx], preset)] for k in keys
    ]
    fps = preset.media.fps
    header = (
        f"held-out {clip.get('name', '')}: frames at "
        + ", ".join(f"{i / fps:.1f}" for i in idx)
        + " s"
    )
    return labelled_grid(rows, names, SHEET_TILE, header)


def lip_plot(clip: dict, path: Path) -> None:
    """Inner-lip opening over time (real, generated) beside the speech envelope."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = clip["series"]
    fig, axes = plt.subplots(2, 1, figsize=(10, 5), sharex=False)
    for ax, (title, pairs, env) in zip(
        axes,
        (
            ("own audio", (("real", "real"), ("own", "generated")), s["real"]["envelope"]),
            (
                "other utterance",
                (("source_other", "unmodified source"), ("other", "generated")),
                s["other"]["envelope"],
            ),
        ),
    ):
        for key, label in pairs:
            ax.plot(s[key]["opening"], label=label)
        twin = ax.twinx()
        twin.plot(env, color="0.75", lw=0.8, label="speech envelope (dB)")
        ax.set_title(f"inner-lip opening, {title}")
        ax.set_ylabel("opening / eye distance")
        ax.legend(loc="upper left", fontsize=8)
    axes[-1].set_xlabel("frame")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def markdown(report: dict) -> str:
    """The human-readable report."""
    s, t = report["summary"], report["targets"]
    lines = [
        f"# Avatar held-out report: {report.get('avatar', '')}",
        "",
        _provenance(report),
        "",
        "## Held-out footage, own audio and another utterance",
        "",
        "| video | mouth PSNR (dB) | SSIM | LPIPS | Sync-C | Sync-D | offset "
        "| lip-envelope r (lag) |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    names = {
        "real": "real footage, own audio",
        "codec": "codec reconstruction",
        "own": "generated, own audio",
        "other": "generated, other utterance",
        "source_other": "unmodified source, other utterance",
    }
    for key, label in names.items():
        lines.append(_row(label, s[key]))
    lines += [
        "",
        "## Targets",
        "",
        "| target | value | threshold | met | margin |",
        "|---|---:|---:|---|---:|",
    ]
    for k, v in t.items():
        met = "yes" if v["met"] else "NO"
        lines.append(f"| {k} | {v['value']:.3f} | {v['target']} | {met} | {v['margin']:+.3f} |")
    sbs = report.get("side_by_side")
    if sbs:
        te, st = sbs["teacher"], sbs["student"]
        lines += [
            "",
            f"## Teacher vs student ({sbs['windows']} held-out windows, same noise)",
            "",
            "| model | steps | mouth PSNR (dB) | SyncNet R at offset 0 | FPS (incl. decode) |",
            "|---|---:|---:|---:|---:|",
            _model_row(f"teacher (CFG {te['cfg']})", te),
            _model_row("student", st),
            "",
            f"Student / teacher speed: {sbs['speedup']:.1f}x.",
        ]
    seen = report.get("seen")
    if seen:
        lines += [
            "",
            f"## Diagnostic: footage it was trained on ({', '.join(seen['clips'])})",
            "",
            "The same measures on as many frames of the training footage, driven by their own "
            "audio: the gap to the held-out rows above is what the model did not generalise.",
            "",
            "| video | mouth PSNR (dB) | SSIM | LPIPS | Sync-C | Sync-D | offset "
            "| lip-envelope r (lag) |",
            "|---|---:|---:|---:|---:|---:|---|---|",
        ]
        for key, label in (("real", "real footage"), ("codec", "codec reconstruction")):
            lines.append(_row(label, seen["summary"][key]))
        lines.append(_row("generated, own audio", seen["summary"]["own"]))
    lines += ["", "![mouths over time](contact_sheet.png)", "", "![lip opening](lip_sync.png)", ""]
    return "\n".join(lines)


def _model_row(label: str, r: dict) -> str:
    sync = r.get("sync", float("nan"))
    return f"| {label} | {r['steps']} | {r['mouth_psnr']:.2f} | {sync:.3f} | {r['fps']:.1f} |"


def _row(label: str, r: dict) -> str:
    def f(key, fmt):
        return format(r[key], fmt) if key in r else "-"

    off = ", ".join(map(str, r["offset"])) if "offset" in r else "-"
    lip = f"{r['lip_r']:.3f} ({', '.join(map(str, r['lip_lag']))})" if "lip_r" in r else "-"
    return (
        f"| {label} | {f('mouth_psnr', '.2f')} | {f('mouth_ssim', '.3f')} | "
        f"{f('mouth_lpips', '.3f')} | {f('sync_c', '.3f')} | {f('sync_d', '.3f')} | {off} | {lip} |"
    )


def _provenance(report: dict) -> str:
    p = report.get("provenance", {})
    other = report.get("other_utterance", {})
    return (
        f"Held out: {report.get('heldout_seconds', 0):.1f} s never trained on "
        f"({', '.join(report.get('heldout_clips', []))}); other utterance: "
        f"{other.get('label', '?')}. SyncNet: the person's own (trained on the training part "
        f"only). Tool {report.get('tool_version', '?')}, commit {p.get('commit', '?')}."
    )


__all__ = ["build_report", "markdown", "side_by_side", "summarise", "targets", "write_report"]
