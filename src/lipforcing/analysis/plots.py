"""Figures of the trajectory analysis in the paper's layout (mean lines, shaded +-1 SE bands).

- ``trajectory.png`` (panel a): one column per drop mode, one row per metric; the CFG arm and
  the no-CFG arm against the step j.
- ``factorial.png`` (panel b): the four (s_0, s_1) schedules against the landing j_1, plus the
  joint score; the plateau shaded, the joint optimum starred, the paper's j_1 = 30 dotted.
- ``sweep.png``: fidelity (LPIPS) against sync (Sync-C; SSIM without a SyncNet) of the fixed-CFG
  sweep endpoints, with the no-CFG -> CFG operating point at the recommended landing.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lipforcing.analysis.summary import (  # noqa: E402
    LABELS,
    PAPER,
    Curve,
    Recommendation,
    Results,
    joint_scores,
    mean_se,
)
from lipforcing.analysis.trajectory import NO_DROP  # noqa: E402

COLORS = {(1.0, 1.0): "tab:blue", "mixed": "tab:green", "rev": "tab:orange", "cfg": "tab:red"}


def band(ax, c: Curve, label: str, color: str, **kw) -> None:
    """Mean line with a shaded +-1 SE band (no band where SE is undefined)."""
    ax.plot(c.j, c.mean, color=color, label=label, lw=1.5, **kw)
    se = np.nan_to_num(c.se, nan=0.0)
    ax.fill_between(c.j, c.mean - se, c.mean + se, color=color, alpha=0.2, lw=0)


def combo_style(combo: tuple[float, float]) -> tuple[str, str]:
    a, b = combo
    if a == b == 1.0:
        return "no-CFG -> no-CFG", COLORS[(1.0, 1.0)]
    if a == 1.0:
        return f"no-CFG -> CFG {b:g}", COLORS["mixed"]
    if b == 1.0:
        return f"CFG {a:g} -> no-CFG", COLORS["rev"]
    return f"CFG {a:g} -> CFG {b:g}", COLORS["cfg"]


def plot_trajectory(res: Results, path: Path) -> None:
    s = res.cfg_scale
    fig, axes = _grid(len(res.metrics), len(res.drop_modes))
    for col, d in enumerate(res.drop_modes):
        for row, m in enumerate(res.metrics):
            ax = axes[row][col]
            band(ax, res.curve("trajectory", 1.0, 1.0, NO_DROP, m), "s = 1 (no CFG)", "tab:blue")
            band(ax, res.curve("trajectory", s, s, d, m), f"s = {s:g} (CFG)", "tab:red")
            ax.set_ylabel(LABELS[m])
            if row == 0:
                ax.set_title(f"(a) drop {d}")
            if row == len(res.metrics) - 1:
                ax.set_xlabel("step j (x0 prediction)")
    axes[0][0].legend(fontsize=8)
    _save(fig, path, f"Paired trajectories, {len(res.clips)} clips, mean ± 1 SE")


def plot_factorial(res: Results, recs: dict[str, Recommendation], path: Path) -> None:
    rows = [*res.metrics, "score"]
    fig, axes = _grid(len(rows), len(res.drop_modes))
    for col, d in enumerate(res.drop_modes):
        r, scores = recs[d], joint_scores(res, d).curves
        for row, m in enumerate(rows):
            ax = axes[row][col]
            for combo in res.combos(d):
                label, color = combo_style(combo)
                c = scores[combo] if m == "score" else res.curve("factorial", *combo, d, m)
                band(ax, c, label, color)
            ax.axvspan(r.plateau[0] - 0.5, r.plateau[1] + 0.5, color="0.85", zorder=0)
            ax.axvline(PAPER["landing"], color="0.4", ls=":", lw=1)
            s0, s1, j1 = r.optimum
            c = scores[(s0, s1)] if m == "score" else res.curve("factorial", s0, s1, d, m)
            ax.plot([j1], [c.at(j1)[0]], marker="*", ms=13, color="k", ls="none")
            ax.set_ylabel("joint score" if m == "score" else LABELS[m])
            if row == 0:
                ax.set_title(f"(b) drop {d}: plateau [{r.plateau[0]}, {r.plateau[1]}]")
            if row == len(rows) - 1:
                ax.set_xlabel("landing index j_1")
    axes[0][0].legend(fontsize=7)
    _save(fig, path, "One Euler step (s_0) to j_1, x0 prediction with s_1; ★ joint optimum")


def plot_sweep(res: Results, recs: dict[str, Recommendation], num_steps: int, path: Path) -> None:
    ym = "sync_c" if res.has_sync else "ssim"
    s = res.cfg_scale
    fig, axes = plt.subplots(1, len(res.drop_modes), figsize=(5 * len(res.drop_modes), 4))
    axes = np.atleast_1d(axes)
    for ax, d in zip(axes, res.drop_modes, strict=True):
        pts = [(sc, _point(res, "sweep", (sc, sc, d), num_steps, ym)) for sc in res.sweep]
        xs = [p[0][0] for _, p in pts]
        ys = [p[1][0] for _, p in pts]
        ax.plot(xs, ys, color="tab:purple", lw=1, zorder=1)
        for sc, ((x, xe), (y, ye)) in pts:
            ax.errorbar(x, y, xerr=_se(xe), yerr=_se(ye), fmt="o", color="tab:purple", capsize=2)
            ax.annotate(f"s = {sc:g}", (x, y), textcoords="offset points", xytext=(4, 4))
        j1 = recs[d].landing
        (x, xe), (y, ye) = _point(res, "factorial", (1.0, s, d), j1, ym)
        ax.errorbar(
            x,
            y,
            xerr=_se(xe),
            yerr=_se(ye),
            fmt="*",
            ms=14,
            color="tab:green",
            label=f"no-CFG -> CFG {s:g} @ j_1 = {j1}",
        )
        ax.set_xlabel(LABELS["lpips"] + " (lower is better)")
        ax.set_ylabel(LABELS[ym] + " (higher is better)")
        ax.set_title(f"fixed-CFG sweep, drop {d}")
        ax.legend(fontsize=8)
    _save(fig, path, "Sweep endpoints (50 steps) vs the two-call operating point")


def _point(res: Results, panel: str, arm: tuple, j: int, ym: str):
    def stat(m):
        return mean_se(list(res.per_clip(panel, *arm, m).get(j, {}).values()))

    return stat("lpips"), stat(ym)


def _se(v: float) -> float | None:
    return None if np.isnan(v) else v


def _grid(rows: int, cols: int):
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 2.3 * rows), sharex=True, squeeze=False)
    return fig, axes


def _save(fig, path: Path, title: str) -> None:
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_figures(res: Results, recs: dict[str, Recommendation], num_steps: int, out: Path):
    """The three PNGs into ``out``; returns their paths."""
    paths = [out / "trajectory.png", out / "factorial.png", out / "sweep.png"]
    plot_trajectory(res, paths[0])
    plot_factorial(res, recs, paths[1])
    plot_sweep(res, recs, num_steps, paths[2])
    return paths


__all__ = ["plot_factorial", "plot_sweep", "plot_trajectory", "write_figures"]
