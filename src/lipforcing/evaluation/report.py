"""Write evaluation results: metrics.json, metrics.csv (one row per video) and metrics.md, a
markdown table in the paper's Table 1 layout (FVD, FID, SSIM, LPIPS, CSIM, Sync-C, Sync-D, FPS,
TTFF) plus LMD, then one row per video and the notes (which networks scored what).
Metrics that were not computed are shown as "-" with the reason in ``result["missing"]``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

TABLE = [
    ("FVD", "fvd"),
    ("FID", "fid"),
    ("SSIM", "ssim"),
    ("LPIPS", "lpips"),
    ("CSIM", "csim"),
    ("Sync-C", "sync_c"),
    ("Sync-D", "sync_d"),
    ("FPS", "fps"),
    ("TTFF (s)", "ttff_s"),
    ("LMD", "lmd"),
]
VIDEO_TABLE = [
    ("frames", "frames"),
    ("SSIM", "ssim"),
    ("PSNR", "psnr"),
    ("LPIPS", "lpips"),
    ("CSIM", "csim"),
    ("LMD", "lmd"),
    ("Sync-C", "sync_c"),
    ("Sync-D", "sync_d"),
    ("offset", "sync_offset"),
    ("FVD clips", "fvd_clips"),
    ("face", "face_ratio"),
]


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def _table(head: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def markdown_table(summary: dict, label: str) -> str:
    """One-row summary table in Table 1's column order."""
    head = ["method"] + [n for n, _ in TABLE]
    return _table(head, [[label] + [summary.get(k) for _, k in TABLE]])


def video_table(rows: list[dict]) -> str:
    head = ["video"] + [n for n, _ in VIDEO_TABLE]
    return _table(head, [[r["video"]] + [r.get(k) for _, k in VIDEO_TABLE] for r in rows])


def write_report(out: str | Path, result: dict, label: str = "prediction") -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=2, default=float))
    rows = result["videos"]
    keys = ["video"] + sorted({k for r in rows for k in r} - {"video"})
    with open(out / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    notes = "".join(f"- {n}\n" for n in result.get("notes", []))
    missing = "".join(f"- {k}: not computed ({v})\n" for k, v in result.get("missing", {}).items())
    md = markdown_table(result["summary"], label) + "\n" + video_table(rows) + "\n" + notes
    (out / "metrics.md").write_text(md + missing)


__all__ = ["TABLE", "VIDEO_TABLE", "markdown_table", "video_table", "write_report"]
