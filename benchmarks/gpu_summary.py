"""Summarise a ``benchmarks/gpu_check.sh`` run: one JSON and one markdown table.

Reads the step files the script leaves in its output folder (``<step>.json`` from
``lipforcing bench --out``, ``<step>.status`` = "ok|failed <seconds>", ``environment.txt``) and
writes ``summary.json`` and ``summary.md`` beside them, with the issue's targets marked met or
not. Usage: ``python benchmarks/gpu_summary.py DIR``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TARGETS = {  # issue 17, one H100/H200
    "wan-1.3b student FPS": 110.0,
    "wan-1.3b student TTFF s (max)": 0.100,
    "wan-14b student FPS": 25.0,
    "4 concurrent 1.3B sessions, FPS each": 25.0,
}
STUDENT_STEPS = (
    "student-eager",
    "student-compile",
    "student-graphs",
    "student-fp8",
)


def _load(folder: Path, name: str) -> dict | None:
    path = folder / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _status(folder: Path, name: str) -> tuple[str, float | None]:
    path = folder / f"{name}.status"
    if not path.is_file():
        return "not run", None
    state, seconds = path.read_text().split()
    return state, float(seconds)


def student_row(name: str, r: dict) -> dict:
    s = r["student"]
    return {
        "step": name,
        "preset": r["preset"],
        "methodology": r["methodology"],
        "fps": s["fps"],
        "ttff_ms": 1e3 * s["ttff_s"],
        "engine_fps": s["engine_fps"],
        "engine_ttff_ms": 1e3 * s["engine_ttff_s"],
        "peak_memory_mb": s["peak_memory_mb"],
        "ran": {k: v for k, v in s["execution"]["ran"].items() if v not in (False, "auto")},
        "notes": s["execution"]["notes"],
    }


def session_rows(r: dict) -> list[dict]:
    rows = []
    for n, m in r["sessions"]["counts"].items():
        t, live = m["throughput"], m["live"]
        rows.append(
            {
                "sessions": int(n),
                "fps_per_session_min": t["fps_per_session_min"],
                "latency_p50_ms": None
                if live["latency_p50_s"] is None
                else 1e3 * live["latency_p50_s"],
                "latency_p95_ms": None
                if live["latency_p95_s"] is None
                else 1e3 * live["latency_p95_s"],
                "peak_memory_mb": m.get("peak_memory_mb"),
            }
        )
    return rows


def summarise(folder: Path) -> dict:
    steps = {}
    for path in sorted(folder.glob("*.status")):
        state, seconds = _status(folder, path.stem)
        steps[path.stem] = {"status": state, "seconds": seconds}
    students = [student_row(n, r) for n in STUDENT_STEPS if (r := _load(folder, n))]
    teacher = _load(folder, "teacher")
    big = _load(folder, "student-large")
    sessions = _load(folder, "sessions")
    out = {
        "environment": (folder / "environment.txt").read_text().strip()
        if (folder / "environment.txt").is_file()
        else "unknown",
        "steps": steps,
        "students_1_3b": students,
        "student_14b": student_row("student-large", big) if big else None,
        "teacher_1_3b_fps": teacher["teacher"]["fps"] if teacher else None,
        "sessions_1_3b": session_rows(sessions) if sessions else [],
        "sessions_preset": sessions["preset"] if sessions else None,
    }
    any_run = next((r for n in (*STUDENT_STEPS, "student-large") if (r := _load(folder, n))), None)
    if any_run:
        out.update({k: any_run[k] for k in ("device", "commit", "date", "torch") if k in any_run})
    if students and out["teacher_1_3b_fps"]:
        out["speedup_1_3b"] = students[0]["fps"] / out["teacher_1_3b_fps"]
    out["targets"] = _targets(out)
    return out


def _targets(s: dict) -> dict:
    """Each target with its value and whether it is met; None where the run measured another
    preset (a smoke run) or did not measure it."""
    out = {k: {"value": None, "target": v, "met": None} for k, v in TARGETS.items()}

    def put(name: str, value: float, met: bool) -> None:
        out[name].update(value=value, met=met)

    students = [r for r in s["students_1_3b"] if r["preset"] == "wan-1.3b"]
    if students:
        best = max(students, key=lambda r: r["fps"])
        put("wan-1.3b student FPS", best["fps"], best["fps"] >= TARGETS["wan-1.3b student FPS"])
        ttff = best["ttff_ms"] / 1e3
        put("wan-1.3b student TTFF s (max)", ttff, ttff <= TARGETS["wan-1.3b student TTFF s (max)"])
    big = s["student_14b"]
    if big and big["preset"] == "wan-14b":
        put("wan-14b student FPS", big["fps"], big["fps"] >= TARGETS["wan-14b student FPS"])
    four = next((r for r in s["sessions_1_3b"] if r["sessions"] == 4), None)
    if four and s.get("sessions_preset") == "wan-1.3b":
        fps, goal = four["fps_per_session_min"], TARGETS["4 concurrent 1.3B sessions, FPS each"]
        put("4 concurrent 1.3B sessions, FPS each", fps, fps >= goal)
    return out


def markdown(s: dict) -> str:
    lines = [
        f"# GPU check: {s.get('device', '?')}, commit {s.get('commit', '?')}, {s.get('date', '?')}",
        "",
        f"Environment: {s['environment']}",
        "",
        "| step | status | seconds |",
        "|---|---|---:|",
    ]
    lines += [f"| {k} | {v['status']} | {v['seconds']} |" for k, v in s["steps"].items()]
    lines += [
        "",
        "| student | FPS | TTFF ms | engine FPS | engine TTFF ms | peak MB | ran | notes |",
    ]
    lines += ["|---|---:|---:|---:|---:|---:|---|---|"]
    for r in s["students_1_3b"] + ([s["student_14b"]] if s["student_14b"] else []):
        notes = "; ".join(r["notes"])
        lines.append(
            f"| {r['step']} | {r['fps']:.1f} | {r['ttff_ms']:.0f} | {r['engine_fps']:.1f} | "
            f"{r['engine_ttff_ms']:.0f} | {r['peak_memory_mb']:.0f} | {r['ran']} | {notes} |"
        )
    if s.get("teacher_1_3b_fps"):
        lines += [
            "",
            f"Teacher: {s['teacher_1_3b_fps']:.2f} FPS; "
            f"speed-up {s.get('speedup_1_3b', 0):.1f}x (eager student / teacher)",
        ]
    if s["sessions_1_3b"]:
        lines += [
            "",
            "| sessions | min FPS per session | latency p50 ms | p95 ms |",
            "|---:|---:|---:|---:|",
        ]
        for r in s["sessions_1_3b"]:
            p50 = "-" if r["latency_p50_ms"] is None else f"{r['latency_p50_ms']:.0f}"
            p95 = "-" if r["latency_p95_ms"] is None else f"{r['latency_p95_ms']:.0f}"
            lines.append(f"| {r['sessions']} | {r['fps_per_session_min']:.1f} | {p50} | {p95} |")
    lines += ["", "| target | value | goal | met |", "|---|---:|---:|---|"]
    for k, t in s["targets"].items():
        if t["value"] is None:
            lines.append(
                f"| {k} | not measured (another preset, or a step failed) | {t['target']:g} | - |"
            )
            continue
        met = "yes" if t["met"] else "no"
        lines.append(f"| {k} | {t['value']:.3g} | {t['target']:g} | {met} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python benchmarks/gpu_summary.py DIR", file=sys.stderr)
        return 2
    folder = Path(args[0])
    summary = summarise(folder)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (folder / "summary.md").write_text(markdown(summary))
    failed = [k for k, v in summary["steps"].items() if v["status"] != "ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
