"""Aggregate trajectory rows over clips and derive the recommended student landing and CFG window.

Per-step statistics are the mean over clips and the standard error ``std(ddof=1) / sqrt(n)``
(NaN with one clip). Differences between arms are paired: taken per clip, then averaged.

Recommendation (our rule; the paper reads its figures by eye):
1. Joint score of a factorial sample: every metric is put on a common 0..1 scale by the min and
   max of its per-step means over the whole factorial of that drop mode; fidelity is the mean of
   ``-LPIPS`` and ``SSIM``, sync the mean of ``Sync-C`` and ``-Sync-D``; score = fidelity + sync
   (fidelity alone when no SyncNet was given). Scores are computed per clip, then mean +- SE.
2. Joint optimum: the (s_0, s_1, j_1) with the highest mean score.
   A metric whose per-point means spread (std) no more than twice its paired noise (median SE
   of the clip-centred values) carries no signal and is left out of the score (reported; when
   no metric has signal, all are used and the summary says the result is unsupported).
3. Plateau: the contiguous j_1 around the optimum (same s_0, s_1) whose paired difference to the
   optimum, mean over clips of score(j_1) - score(j*), is within ``max(its SE, 0.05)``.
4. Recommended landing: the optimum's j_1 when it is an unguided-first schedule (s_0 = 1, the
   student's first call has no CFG); otherwise the best j_1 of the (1, s) schedule.
5. CFG window: with s_0 = 1, the gain of guiding the second call, score(1, s) - score(1, 1),
   per j_1 (paired); the window is the contiguous j_1 range around the largest mean gain where
   the gain is at least half of it (none when guiding never helps).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from lipforcing.analysis.trajectory import NO_DROP

HIGHER_IS_BETTER = {"lpips": False, "ssim": True, "sync_c": True, "sync_d": False}
LABELS = {"lpips": "LPIPS (mouth)", "ssim": "SSIM (mouth)", "sync_c": "Sync-C", "sync_d": "Sync-D"}
PLATEAU_TOL = 0.05  # minimum plateau tolerance in joint-score units
SIGNAL_RATIO = 2.0  # a metric enters the joint score when its spread exceeds this x its noise
PAPER = {"landing": 30, "plateau": (25, 32), "window": (20, 40)}


def mean_se(values) -> tuple[float, float]:
    """Mean and standard error (sample std / sqrt(n)); SE is NaN for fewer than 2 values."""
    v = np.asarray(values, np.float64)
    if v.size == 0:
        return float("nan"), float("nan")
    se = v.std(ddof=1) / np.sqrt(v.size) if v.size > 1 else float("nan")
    return float(v.mean()), float(se)


@dataclass(frozen=True)
class Curve:
    """Per-step mean and SE over clips."""

    j: np.ndarray  # (n,) grid indices
    mean: np.ndarray  # (n,)
    se: np.ndarray  # (n,)
    clips: int

    def at(self, j: int) -> tuple[float, float]:
        k = int(np.nonzero(self.j == j)[0][0])
        return float(self.mean[k]), float(self.se[k])


class Results:
    """Rows of ``trajectory.csv`` indexed as ``(panel, s0, s1, drop, metric) -> j -> clip``."""

    def __init__(self, rows: list[dict]) -> None:
        self.data: dict[tuple, dict[int, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
        for r in rows:
            key = (r["panel"], float(r["s0"]), float(r["s1"]), r["drop_mode"], r["metric"])
            self.data[key][int(r["j"])][r["clip"]] = float(r["value"])
        self.clips = sorted({r["clip"] for r in rows})
        self.metrics = [m for m in HIGHER_IS_BETTER if any(k[4] == m for k in self.data)]
        self.drop_modes = sorted({k[3] for k in self.data} - {NO_DROP})
        guided = {k[2] for k in self.data if k[0] == "trajectory"} - {1.0}
        self.cfg_scale = max(guided) if guided else 1.0
        self.sweep = sorted({k[1] for k in self.data if k[0] == "sweep"})

    @property
    def has_sync(self) -> bool:
        return "sync_c" in self.metrics

    def per_clip(self, panel: str, s0: float, s1: float, drop: str, metric: str):
        """``{j: {clip: value}}`` of one arm; an unguided arm is found under ``"none"``."""
        if s0 == 1.0 and s1 == 1.0:
            drop = NO_DROP
        return self.data.get((panel, float(s0), float(s1), drop, metric), {})

    def curve(self, panel: str, s0: float, s1: float, drop: str, metric: str) -> Curve:
        table = self.per_clip(panel, s0, s1, drop, metric)
        js = np.array(sorted(table), dtype=int)
        stats = [mean_se(list(table[j].values())) for j in js]
        mean = np.array([m for m, _ in stats])
        se = np.array([s for _, s in stats])
        return Curve(js, mean, se, len(self.clips))

    def combos(self, drop: str) -> list[tuple[float, float]]:
        s = self.cfg_scale
        return [(1.0, 1.0), (1.0, s), (s, 1.0), (s, s)]


@dataclass(frozen=True)
class Scores:
    """Joint scores of the factorial of one drop mode."""

    table: dict[tuple[float, float], dict[int, dict[str, float]]]  # combo -> j1 -> clip -> score
    curves: dict[tuple[float, float], Curve]  # combo -> mean +- SE over clips
    metrics: tuple[str, ...]  # metrics that entered the score
    flat: tuple[str, ...]  # metrics left out: no signal above the paired noise

    def paired(self, a: tuple, ja: int, b: tuple, jb: int) -> tuple[float, float]:
        """Mean +- SE over clips of score(a, ja) - score(b, jb)."""
        ta, tb = self.table[a][ja], self.table[b][jb]
        return mean_se([ta[c] - tb[c] for c in ta if c in tb])


def signal(res: Results, drop: str, metric: str) -> tuple[float, float, float, float]:
    """(lo, hi, spread, noise) of a metric over the factorial: the min, max and std of its
    per-point means, and the median SE of its clip-centred values (paired noise: clip offsets
    removed). Pure noise gives spread ~ noise."""
    tables = [res.per_clip("factorial", a, b, drop, metric) for a, b in res.combos(drop)]
    clips = res.clips
    values = np.array([[t[j].get(c, np.nan) for c in clips] for t in tables for j in sorted(t)])
    means = np.nanmean(values, axis=1)
    centred = values - np.nanmean(values, axis=0, keepdims=True)
    se = np.array([mean_se(row[~np.isnan(row)])[1] for row in centred])
    noise = float(np.nanmedian(se)) if np.isfinite(se).any() else float("nan")  # 1 clip: NaN
    return float(np.nanmin(means)), float(np.nanmax(means)), float(np.nanstd(means)), noise


def joint_scores(res: Results, drop: str) -> Scores:
    """Per-clip joint score of every factorial schedule (see the module docstring, step 1)."""
    candidates = [m for m in res.metrics if res.has_sync or m in ("lpips", "ssim")]
    ranges, flat, every = {}, [], {}
    for m in candidates:
        lo, hi, spread, noise = signal(res, drop, m)
        every[m] = (lo, hi - lo if hi > lo else 1.0)
        if hi > lo and not spread <= SIGNAL_RATIO * noise:  # NaN noise (one clip): keep it
            ranges[m] = every[m]
        else:
            flat.append(m)
    if not ranges:  # nothing beats the noise: score on everything, reported as unsupported
        ranges = every
    table, curves = {}, {}
    for combo in res.combos(drop):
        tables = {m: res.per_clip("factorial", *combo, drop, m) for m in candidates}
        table[combo] = {
            j: {c: joint_value(tables, ranges, j, c) for c in tables["lpips"][j]}
            for j in sorted(tables["lpips"])
        }
        js = np.array(sorted(table[combo]))
        stats = [mean_se(list(table[combo][j].values())) for j in js]
        curves[combo] = Curve(js, *(np.array(x) for x in zip(*stats)), len(res.clips))
    return Scores(table, curves, tuple(m for m in ranges if m not in flat), tuple(flat))


def joint_value(tables: dict, ranges: dict, j: int, clip: str) -> float:
    """Fidelity + sync of one clip at one landing, each metric scaled to 0..1 (higher better)."""

    def z(m: str) -> float | None:
        if m not in ranges:
            return None
        lo, span = ranges[m]
        v = (tables[m][j][clip] - lo) / span
        return v if HIGHER_IS_BETTER[m] else -v

    def avg(*ms: str) -> float:
        zs = [v for v in map(z, ms) if v is not None]
        return float(np.mean(zs)) if zs else 0.0

    return avg("lpips", "ssim") + avg("sync_c", "sync_d")


@dataclass(frozen=True)
class Recommendation:
    """What the data says for one drop mode."""

    drop_mode: str
    optimum: tuple[float, float, int]  # (s0, s1, j1) with the best joint score
    optimum_score: tuple[float, float]  # mean, SE
    plateau: tuple[int, int]  # j1 range around the optimum, paired-indistinguishable from it
    landing: int  # recommended student landing j1 (unguided first call)
    window: tuple[int, int] | None  # j1 range where guiding the second call helps
    window_gain: tuple[float, float]  # largest mean gain of guiding the second call, SE
    gap_closed: dict[int, float]  # j1 -> fraction of the sync gap the (1, s) schedule closes
    metrics: tuple[str, ...]  # metrics in the joint score
    flat: tuple[str, ...]  # metrics left out of it (no signal)


def contiguous(js: np.ndarray, ok: np.ndarray, centre: int) -> tuple[int, int]:
    """The run of consecutive ``ok`` entries of ``js`` that contains index ``centre``."""
    lo = hi = centre
    while lo > 0 and ok[lo - 1]:
        lo -= 1
    while hi < len(js) - 1 and ok[hi + 1]:
        hi += 1
    return int(js[lo]), int(js[hi])


def recommend(res: Results, drop: str) -> Recommendation:
    """Joint optimum, plateau, landing and CFG window of one drop mode (module docstring)."""
    s = res.cfg_scale
    sc = joint_scores(res, drop)
    combo, k = max(
        ((c, k) for c, cur in sc.curves.items() for k in range(len(cur.j))),
        key=lambda ck: sc.curves[ck[0]].mean[ck[1]],
    )
    cur = sc.curves[combo]
    j_best = int(cur.j[k])
    diffs = [sc.paired(combo, int(j), combo, j_best) for j in cur.j]
    ok = np.array([m >= -max(np.nan_to_num(e, nan=0.0), PLATEAU_TOL) for m, e in diffs])
    mixed, base = (1.0, s), (1.0, 1.0)
    landing = j_best if combo[0] == 1.0 else int(cur.j[int(np.argmax(sc.curves[mixed].mean))])
    gains = [sc.paired(mixed, int(j), base, int(j)) for j in sc.curves[mixed].j]
    gain = np.array([g for g, _ in gains])
    g = int(np.argmax(gain))
    window = contiguous(sc.curves[mixed].j, gain >= 0.5 * gain[g], g) if gain[g] > 0 else None
    return Recommendation(
        drop_mode=drop,
        optimum=(combo[0], combo[1], j_best),
        optimum_score=(float(cur.mean[k]), float(cur.se[k])),
        plateau=contiguous(cur.j, ok, k),
        landing=landing,
        window=window,
        window_gain=gains[g],
        gap_closed=gap_closed(res, drop, sorted({landing, PAPER["landing"]})),
        metrics=sc.metrics,
        flat=sc.flat,
    )


def gap_closed(res: Results, drop: str, landings: list[int]) -> dict[int, float]:
    """Sync-C gap closed by (1, s) between (1, 1) and (s, s): per landing, from the means.

    NaN where the gap itself is not above the paired noise (|mean| <= 2 SE over clips): a ratio
    of noise to noise says nothing (and can read 800%).
    """
    if not res.has_sync:
        return {}
    s = res.cfg_scale
    c = {combo: res.curve("factorial", *combo, drop, "sync_c") for combo in res.combos(drop)}
    out = {}
    for j1 in landings:
        if j1 not in c[(1.0, 1.0)].j:
            continue
        lo, mixed, hi = (c[x].at(j1)[0] for x in ((1.0, 1.0), (1.0, s), (s, s)))
        gap, se = paired_difference(res, "factorial", (s, s, drop), (1.0, 1.0, drop), "sync_c", j1)
        real = hi != lo and not np.isnan(se) and abs(gap) > 2 * se
        out[j1] = (mixed - lo) / (hi - lo) if real else float("nan")
    return out


def paired_difference(res: Results, panel: str, a: tuple, b: tuple, metric: str, j: int):
    """Mean +- SE over clips of arm a minus arm b at step j; arms are (s0, s1, drop)."""
    ta, tb = res.per_clip(panel, *a, metric).get(j, {}), res.per_clip(panel, *b, metric).get(j, {})
    return mean_se([ta[c] - tb[c] for c in ta if c in tb])


# ----------------------------------------------------------------------------- markdown


def pct(x: float) -> str:
    return "n/a (no gap above the paired noise)" if np.isnan(x) else f"{100 * x:.0f}%"


def fmt(mean: float, se: float, digits: int = 3) -> str:
    if np.isnan(mean):
        return "-"
    return f"{mean:.{digits}f}" if np.isnan(se) else f"{mean:.{digits}f} ± {se:.{digits}f}"


def _row(res: Results, panel: str, arm: tuple, j: int, label: str) -> str:
    cells = []
    for m in res.metrics:
        table = res.per_clip(panel, *arm, m).get(j)
        cells.append(fmt(*mean_se(list(table.values()))) if table else "-")
    return f"| {label} | " + " | ".join(cells) + " |"


def _header(res: Results, first: str) -> list[str]:
    names = [LABELS[m] + (" ↓" if not HIGHER_IS_BETTER[m] else " ↑") for m in res.metrics]
    return [f"| {first} | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]


def summary_markdown(res: Results, meta: dict, taus: list[float], notes: str = "") -> str:
    """The ``summary.md`` text: setup, recommendation, panel tables, comparison with the paper."""
    s = res.cfg_scale
    recs = {d: recommend(res, d) for d in res.drop_modes}
    last = int(max(res.curve("trajectory", 1.0, 1.0, NO_DROP, "lpips").j))
    lines = [
        f"# Trajectory analysis: {meta.get('teacher', 'teacher')}",
        "",
        f"Clips: {len(res.clips)} held-out windows ({', '.join(res.clips)}), paired (same noise,",
        "reference frames and conditions in every arm). Values: mean ± 1 SE over clips.",
        f"Teacher preset {meta.get('preset', '?')}, {meta.get('num_steps', 50)}-step grid "
        f"(shift {meta.get('shift', 5.0)}); CFG arm s = {s:g}; drop modes: "
        f"{', '.join(res.drop_modes)}; sync network: "
        f"{meta.get('syncnet') or ('given' if res.has_sync else 'none')}.",
        f"Command: `{meta.get('command', '')}`" if meta.get("command") else "",
        "",
    ]
    if not res.has_sync:
        lines += [
            "**No SyncNet was given: Sync-C / Sync-D are skipped and the recommendation below "
            "rests on fidelity alone** (which always favours no CFG).",
            "",
        ]
    lines += ["## Recommendation", ""]
    for d, r in recs.items():
        s0, s1, j1 = r.optimum
        window = (
            f"j in [{r.window[0]}, {r.window[1]}] (t in [{taus[r.window[1]]:.3f}, "
            f"{taus[r.window[0]]:.3f}]), largest joint-score gain {fmt(*r.window_gain)} "
            f"at the peak"
            if r.window
            else f"none (guiding the second call never raises the joint score; best gain "
            f"{fmt(*r.window_gain)})"
        )
        closed = ", ".join(f"j_1 = {j}: {pct(g)}" for j, g in r.gap_closed.items())
        flat = (
            (
                f" Left out of the joint score (no signal above the paired noise): "
                f"{', '.join(r.flat)}."
                if r.metrics
                else " **No metric varies above the paired noise across the factorial: the joint "
                "score uses all of them, and this recommendation is not supported by the data.**"
            )
            if r.flat
            else ""
        )
        lines += [
            f"- **drop mode `{d}`**: student landing **j_1 = {r.landing}** (t = "
            f"{taus[r.landing]:.3f}); joint optimum (s_0, s_1) = ({s0:g}, {s1:g}) at j_1 = {j1} "
            f"(score {fmt(*r.optimum_score)}); plateau j_1 in [{r.plateau[0]}, {r.plateau[1]}]; "
            f"CFG window {window}."
            + (f" Sync-C gap closed by no-CFG -> CFG: {closed}." if closed else "")
            + flat,
        ]
    lines += [
        "",
        f"Paper: landing j_1 = {PAPER['landing']}, plateau j_1 in {list(PAPER['plateau'])}, "
        f"Sync-Window j in {list(PAPER['window'])}, optimum no-CFG -> CFG.",
        "",
        "## Panel (a): CFG vs no CFG along the trajectory",
        "",
    ]
    for d in res.drop_modes:
        lines += _header(res, f"drop `{d}`: arm @ step j")
        for j in sorted({0, min(20, last), min(30, last), last}):
            lines.append(_row(res, "trajectory", (1.0, 1.0, d), j, f"s = 1 @ j = {j}"))
            lines.append(_row(res, "trajectory", (s, s, d), j, f"s = {s:g} @ j = {j}"))
        lines.append("")
    lines += ["## Panel (b): Euler-step factorial", ""]
    for d, r in recs.items():
        lines += _header(res, f"drop `{d}`: (s_0, s_1) @ j_1")
        for j1 in sorted({13, 25, 30, 37, r.landing} & set(_landings(res))):
            for a, b in res.combos(d):
                lines.append(_row(res, "factorial", (a, b, d), j1, f"({a:g}, {b:g}) @ {j1}"))
        lines.append("")
    lines += ["## Fixed-CFG sweep endpoints vs the no-CFG -> CFG operating point", ""]
    for d, r in recs.items():
        lines += _header(res, f"drop `{d}`")
        for sc in res.sweep:
            lines.append(_row(res, "sweep", (sc, sc, d), meta.get("num_steps", 50), f"s = {sc:g}"))
        lines.append(
            _row(res, "factorial", (1.0, s, d), r.landing, f"1 -> {s:g} @ j_1 = {r.landing}")
        )
        lines.append("")
    lines += ["## Against the paper's findings (computed)", ""]
    lines += comparison_lines(res, recs, last)
    if notes:
        lines += ["", "## Comparison with the paper", "", notes.strip()]
    return "\n".join(lines).replace("\n\n\n", "\n\n") + "\n"


def _landings(res: Results) -> list[int]:
    return sorted(res.per_clip("factorial", 1.0, 1.0, NO_DROP, "lpips"))


def comparison_lines(res: Results, recs: dict[str, Recommendation], last: int) -> list[str]:
    """Each of the paper's claims, checked on our numbers (paired differences at the end)."""
    s = res.cfg_scale
    out = []
    for d, r in recs.items():
        cfg, base = (s, s, d), (1.0, 1.0, d)
        parts = []
        for m in res.metrics:
            mu, se = paired_difference(res, "trajectory", cfg, base, m, last)
            verdict = (
                "equal" if mu == 0 else "better" if (mu > 0) == HIGHER_IS_BETTER[m] else "worse"
            )
            sig = not np.isnan(se) and abs(mu) > 2 * se
            parts.append(
                f"{LABELS[m]} {mu:+.3f} ± {se:.3f} ({verdict}{'' if sig else ', within 2 SE'})"
            )
        out.append(f"- `{d}`: CFG minus no-CFG at the last step j = {last}: " + "; ".join(parts))
        if res.has_sync:
            g30 = r.gap_closed.get(PAPER["landing"])
            if g30 is not None and np.isnan(g30):
                out.append(
                    "  - at j_1 = 30 the (1, 1) -> (s, s) Sync-C gap is not above the paired "
                    "noise, so the share the mixed no-CFG -> CFG schedule closes is undefined "
                    "(paper: most of it)."
                )
            elif g30 is not None:
                out.append(
                    f"  - mixed no-CFG -> CFG at j_1 = 30 closes {pct(g30)} of the "
                    "(1, 1) -> (s, s) Sync-C gap (paper: most of it)."
                )
        lo, hi = r.plateau
        overlap = max(0, min(hi, PAPER["plateau"][1]) - max(lo, PAPER["plateau"][0]) + 1)
        out.append(
            f"  - plateau [{lo}, {hi}] vs the paper's [25, 32]: {overlap} landings in common; "
            f"joint optimum ({r.optimum[0]:g}, {r.optimum[1]:g}) at j_1 = {r.optimum[2]} "
            f"({'matches' if r.optimum[:2] == (1.0, s) else 'differs from'} the paper's "
            "no-CFG -> CFG)."
        )
    return out
