"""Write evaluation results: metrics.json, metrics.csv (one row per video) and a markdown table
in the paper's Table 1 layout (FVD, FID, SSIM, LPIPS, CSIM, Sync-C, Sync-D, FPS, TTFF).
Metrics that were not computed are shown as "-" with the reason in metrics.json."""

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
]


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def markdown_table(summary: dict, label: str) -> str:
    head = "| method | " + " | ".join(n for n, _ in TABLE) + " |"
    rule = "|---|" + "---|" * len(TABLE)
    row = f"| {label} | " + " | ".join(_fmt(summary.get(k)) for _, k in TABLE) + " |"
    return "\n".join([head, rule, row]) + "\n"


def write_report(out: str | Path, result: dict, label: str = "prediction") -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=2, default=float))
    rows = result["videos"]
    keys = sorted({k for r in rows for k in r})
    with open(out / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    notes = "".join(f"- {n}\n" for n in result.get("notes", []))
    (out / "metrics.md").write_text(markdown_table(result["summary"], label) + "\n" + notes)


__all__ = ["TABLE", "markdown_table", "write_report"]
