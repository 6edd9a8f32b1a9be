"""Measure the silence gate with the shipped tiny checkpoint: mouth opening on silent stretches.

Speech with two inserted 2 s pauses (frames 50-100 and 150-200 of 8 s) whose "silence" is
digital zero, SynthTalk's own -50 dBFS white floor, room rumble (brown noise) at -35 dBFS, or a
distant talker (another utterance) at -40 dBFS. The built-in SynthTalk face speaks it with the
gate off and on; dlib's inner-lip opening over inter-ocular distance
(:mod:`lipforcing.evaluation.lip_envelope`) is read on the pause frames away from their edges
and on the speech frames, next to the face's closed-mouth opening (its own frames where
SynthTalk's mouth parameter is 0), plus the lip-envelope correlation of the whole clip.

Speech: new SynthTalk speech (always), and the real English read
``shared/data/audio/musetalk_eng.wav`` (5-13 s) when ``../shared/data`` is present.

    .venv/bin/python scripts/silence_gate.py --out docs/eval/silence-gate
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

SR, FPS, SECONDS = 16_000, 25, 8.0
PAUSES = ((2.0, 4.0), (6.0, 8.0))  # seconds
EDGE = 5  # frames left out at each edge of a pause (the gate's ramp, the mouth closing)
KINDS = ("zero", "white-50", "brown-35", "talker-40")


def compose(speech: np.ndarray, kind: str, rng: np.random.Generator, other: np.ndarray):
    """``speech`` with its pauses replaced by ``kind``."""
    out = speech[: int(SECONDS * SR)].copy()
    for a, b in PAUSES:
        sl = slice(int(a * SR), int(b * SR))
        n = sl.stop - sl.start
        if kind == "zero":
            out[sl] = 0
        elif kind == "white-50":
            out[sl] = 10 ** (-50 / 20) * rng.standard_normal(n)
        elif kind == "brown-35":
            walk = np.cumsum(rng.standard_normal(n))
            walk -= np.convolve(walk, np.ones(400) / 400, "same")  # drift removed below 40 Hz
            out[sl] = 10 ** (-35 / 20) * walk / walk.std()
        elif kind == "talker-40":
            part = other[sl]
            out[sl] = 10 ** (-40 / 20) * part / np.sqrt(np.mean(other**2))
    return out.astype(np.float32)


def frames_of(spans, edge: int) -> np.ndarray:
    return np.concatenate([np.arange(int(a * FPS) + edge, int(b * FPS) - edge) for a, b in spans])


def measure(pipe, source, audio, gate) -> dict:
    from lipforcing.evaluation.lip_envelope import (
        inner_lip_opening,
        lip_envelope_sync,
        lip_landmarks,
    )
    from lipforcing.streaming.offline import lipsync_offline

    result = lipsync_offline(pipe, source, audio, silence_gate=gate)
    points = lip_landmarks(result.frames)
    opening = inner_lip_opening(points)
    pause = frames_of(PAUSES, EDGE)
    speech = frames_of(((0.0, 2.0), (4.0, 6.0)), EDGE)
    sync = lip_envelope_sync(None, audio, SR, FPS, points68=points)
    return {
        "pause_opening_mean": float(np.nanmean(opening[pause])),
        "pause_opening_p90": float(np.nanpercentile(opening[pause], 90)),
        "speech_opening_mean": float(np.nanmean(opening[speech])),
        "lip_envelope_r": sync.correlation,
        "lip_envelope_lag": sync.lag,
    }


def closed_opening(seed: int) -> float:
    """The face's own inner-lip opening where SynthTalk renders a closed mouth."""
    from lipforcing.evaluation.lip_envelope import inner_lip_opening, lip_landmarks
    from lipforcing.media.synthtalk import render_clip

    clip = render_clip(seed, SECONDS)
    opening = inner_lip_opening(lip_landmarks(clip.frames))
    return float(np.nanmean(opening[clip.mouth[:, 0] < 0.02]))


def speeches(shared: Path) -> dict[str, np.ndarray]:
    from lipforcing.media.synthtalk import render_clip

    out = {"synthtalk": render_clip(920_003, SECONDS).audio}
    wav = shared / "audio" / "musetalk_eng.wav"
    if wav.is_file():
        from lipforcing.media.io import read_audio

        out["musetalk_eng"] = read_audio(wav)[5 * SR : 13 * SR]
    return out


def main() -> None:
    from lipforcing.media.synthtalk import render_clip
    from lipforcing.media.vad import SilenceGateConfig
    from lipforcing.streaming.builtin import DEMO_IDENTITY_SEED, builtin_sample
    from lipforcing.streaming.pipeline import Pipeline, shipped_checkpoint

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--shared", default="../shared/data")
    args = parser.parse_args()
    pipe = Pipeline.load(shipped_checkpoint())
    source = builtin_sample(pipe.preset, seconds=SECONDS).source
    other = render_clip(920_004, SECONDS).audio
    gates = {"off": SilenceGateConfig(enabled=False), "on": SilenceGateConfig()}
    rows = []
    for name, speech in speeches(Path(args.shared)).items():
        for kind in KINDS:
            audio = compose(speech, kind, np.random.default_rng(0), other)
            for label, gate in gates.items():
                t0 = time.perf_counter()
                row = {
                    "speech": name,
                    "pause": kind,
                    "gate": label,
                    **measure(pipe, source, audio, gate),
                }
                rows.append(row)
                print(json.dumps(row), f"({time.perf_counter() - t0:.0f} s)", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    closed = closed_opening(DEMO_IDENTITY_SEED)
    gate = gates["on"]
    (out / "silence_gate.json").write_text(
        json.dumps({"closed_mouth_opening": closed, "gate": gate.__dict__, "rows": rows}, indent=1)
    )
    (out / "report.md").write_text(report(rows, closed, gate))
    print(f"closed-mouth opening of the face: {closed:.3f}")


def report(rows: list[dict], closed: float, gate) -> str:
    """The table of ``rows``: pause and speech opening, r, gate off vs on."""
    import subprocess

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    lines = [
        "# Silence gate: mouth opening on silent stretches (shipped tiny checkpoint)",
        "",
        f"`.venv/bin/python scripts/silence_gate.py --out docs/eval/silence-gate` at {commit}, "
        "CPU. Opening = dlib inner-lip gap / inter-ocular distance of the output frames; the "
        f"built-in face's closed mouth reads {closed:.3f}. Gate: {gate.low_db:g} / "
        f"{gate.high_db:g} dBFS in band, lead {gate.lead_frames}, hang {gate.hang_frames}, "
        f"ramp +-{gate.smooth_frames} frames.",
        "",
        "| speech | pause filled with | gate | pause opening (mean / p90) | speech opening "
        "| lip-envelope r (lag) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['speech']} | {r['pause']} | {r['gate']} | {r['pause_opening_mean']:.3f} / "
            f"{r['pause_opening_p90']:.3f} | {r['speech_opening_mean']:.3f} | "
            f"{r['lip_envelope_r']:.3f} ({r['lip_envelope_lag']:+d}) |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
