"""Held-out footage for the report: clips of frames never trained on, the other utterance, and
the report writer that ``avatar create`` (on the held-out end) and ``avatar report`` (on new
footage of the person) share.

Design choices:
- A held-out clip's frames are decoded again from the source video (conformed to the media
  rate); crops, transforms, the usable mask and the audio come from its shard, so the report
  scores exactly the frames the split set aside. At most ``report_seconds`` are scored.
- The other utterance is a given audio file, or by default the stretch of the person's own
  training audio, as long as the held-out clip, with the most speech: words the held-out frames
  never said, in the person's voice.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lipforcing.avatar.scoring import HeldOutClip


def decode_frames(video: Path, start: int, stop: int, fps: float) -> np.ndarray:
    """Frames [start, stop) of ``video`` conformed to ``fps``, (T, H, W, 3) uint8."""
    from lipforcing.media.io import iter_frames

    out = []
    for k, (_, frame) in enumerate(iter_frames(video, fps)):
        if k >= stop:
            break
        if k >= start:
            out.append(frame)
    return np.stack(out)


def shard_clip(shard: Path, video: Path, start: int, max_frames: int) -> HeldOutClip:
    """A clip of a shard's first ``max_frames`` frames; ``start`` = its first frame in ``video``."""
    from lipforcing.data.preprocess import load_shard

    arrays, meta = load_shard(shard)
    fps, sr = float(meta["fps"]), int(meta["sample_rate"])
    n = min(int(meta["frames"]), max_frames)
    frames = decode_frames(video, start, start + n, fps)
    n = min(n, len(frames))
    spf = int(round(sr / fps))
    audio = np.zeros(n * spf, np.float32)
    have = np.asarray(arrays["audio"][: n * spf], np.float32)
    audio[: len(have)] = have
    return HeldOutClip(
        name=shard.name,
        frames=frames[:n],
        crops=np.asarray(arrays["crops"][:n]),
        transforms=np.asarray(arrays["transforms"][:n]),
        usable=np.asarray(arrays.get("usable", arrays["found"])[:n], bool),
        audio=audio,
        fps=fps,
        start_s=start / fps,
    )


def heldout_clips(report, held_dir: Path, max_seconds: float, fps: float) -> list[HeldOutClip]:
    """The held-out segments of a footage report as clips (``max_seconds`` in all)."""
    scans = {s.name: s for s in report.scans}
    budget = int(max_seconds * fps)
    clips = []
    for g in (g for g in report.segments if g.part == "heldout"):
        if budget <= 0:
            break
        clip = shard_clip(held_dir / g.name, Path(scans[g.name].source), g.start, budget)
        clips.append(clip)
        budget -= len(clip)
    return clips


def other_utterance(given: Path | None, train_dir: Path, frames: int, fps: float, limits):
    """(16 kHz audio of ``frames`` frames or fewer, label) of the other utterance."""
    from lipforcing.avatar.footage import speech_frames
    from lipforcing.data.preprocess import find_shards, load_shard
    from lipforcing.media.io import read_audio

    if given is not None:
        return read_audio(given), Path(given).name
    best = None
    for shard in find_shards([train_dir]):
        arrays, meta = load_shard(shard)
        speech = speech_frames(np.asarray(arrays["loudness"]), limits).astype(float)
        n = min(frames, len(speech))
        share = np.convolve(speech, np.ones(n), "valid") / n
        s = int(np.argmax(share))
        if best is None or share[s] > best[0]:
            best = (share[s], shard, s, n, meta)
    _, shard, s, n, meta = best
    spf = int(round(meta["sample_rate"] / meta["fps"]))
    audio = np.asarray(load_shard(shard)[0]["audio"][s * spf : (s + n) * spf], np.float32)
    start = meta.get("start_frame", 0) + s
    label = (
        f"the person's own speech from the training part ({Path(meta['source']).name}, "
        f"{start / fps:.1f}-{(start + n) / fps:.1f} s)"
    )
    return audio, label


def score_and_write(avatar_dir: Path, clips, other, sbs, extra: dict, out: Path, seen=()) -> dict:
    """Score ``clips`` with the avatar's networks and write the report into ``out``; ``seen``:
    clips of training footage, scored with their own audio as a diagnostic."""
    from lipforcing.avatar.report import build_report, summarise, write_report
    from lipforcing.avatar.scoring import Networks, score_clip
    from lipforcing.evaluation.lpips import LPIPS
    from lipforcing.evaluation.syncnet import load_syncnet
    from lipforcing.streaming.pipeline import Pipeline

    pipe = Pipeline.load(avatar_dir / "student.safetensors", avatar_dir / "codec.safetensors")
    syncnet = load_syncnet(avatar_dir / "syncnet.safetensors")
    nets = Networks(pipe, syncnet, LPIPS("alex"))
    audio, label = other
    scores = [score_clip(nets, c, audio) | {"name": c.name} for c in clips]
    extra = {
        **extra,
        "other_utterance": {"label": label},
        "heldout_clips": [f"{c.name} from {c.start_s:.1f} s" for c in clips],
        "heldout_seconds": sum(len(c) for c in clips) / clips[0].fps,
    }
    if sbs is not None:
        extra["side_by_side"] = sbs(pipe.codec, syncnet)
    if seen:
        seen_scores = [score_clip(nets, c, None) for c in seen]
        extra["seen"] = {
            "clips": [f"{c.name} from {c.start_s:.1f} s" for c in seen],
            "summary": summarise(seen_scores),
        }
    report = build_report(scores, extra)
    write_report(report, scores, pipe.preset, out)
    return report


def write_heldout_report(
    avatar_dir, name, report, held_dir, held_cache, paths, cfg, preset, other_path, out
) -> dict:
    """The create-time report on the held-out end (teacher vs student included)."""
    from lipforcing.avatar.report import side_by_side
    from lipforcing.provenance import AVATAR_CODE, provenance

    fps = preset.media.fps
    clips = heldout_clips(report, held_dir, cfg.report_seconds, fps)
    longest = max(len(c) for c in clips)
    other = other_utterance(other_path, held_dir.parent / "train", longest, fps, cfg.footage)

    def sbs(codec, syncnet):
        return side_by_side(held_cache, paths, codec, syncnet, preset, cfg.report_windows)

    from lipforcing import __version__

    extra = {"avatar": name, "tool_version": __version__, "provenance": provenance(AVATAR_CODE)}
    extra["init"] = cfg.init
    seen = seen_clips(report, held_dir.parent / "train", sum(len(c) for c in clips))
    return score_and_write(avatar_dir, clips, other, sbs, extra, out, seen)


def seen_clips(report, train_dir: Path, frames: int) -> list[HeldOutClip]:
    """As many frames of training footage as were held out: the end of the last training
    segment (the footage nearest to the held-out end)."""
    scans = {s.name: s for s in report.scans}
    g = [g for g in report.segments if g.part == "train"][-1]
    n = min(frames, g.stop - g.start)
    clip = shard_clip(train_dir / g.name, Path(scans[g.name].source), g.start, g.stop - g.start)
    return [_tail(clip, n)]


def _tail(clip: HeldOutClip, n: int) -> HeldOutClip:
    spf = len(clip.audio) // len(clip)
    k = len(clip) - n
    return HeldOutClip(
        clip.name,
        clip.frames[k:],
        clip.crops[k:],
        clip.transforms[k:],
        clip.usable[k:],
        clip.audio[k * spf :],
        clip.fps,
        clip.start_s + k / clip.fps,
    )


__all__ = [
    "decode_frames",
    "heldout_clips",
    "other_utterance",
    "score_and_write",
    "shard_clip",
    "write_heldout_report",
]
