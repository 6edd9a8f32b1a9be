"""``lipforcing avatar report``: score an avatar on new footage of its person (never trained on).

The footage is scanned like ``avatar create``'s inputs (face track, usable frames, identity);
footage without a usable face, or of somebody else (farther than the identity threshold from
the identity stored on the avatar's card), is refused. The report is the held-out report
without the teacher comparison (an avatar does not carry its teacher).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from lipforcing.avatar.footage import FootageError


def report_on_footage(
    avatar_path: Path, video: Path, other_audio: Path, out: Path, seconds: float
) -> dict:
    from lipforcing import __version__
    from lipforcing.avatar.bundle import Avatar
    from lipforcing.avatar.config import FootageLimits
    from lipforcing.avatar.footage import FootageReport, _check_video, scan_video
    from lipforcing.avatar.heldout import score_and_write, shard_clip
    from lipforcing.config import get_preset
    from lipforcing.errors import MediaError
    from lipforcing.media.io import read_audio
    from lipforcing.provenance import AVATAR_CODE, provenance

    avatar = Avatar.load(avatar_path)
    for p in (video, other_audio):
        if not p.is_file():
            raise MediaError(f"no such file: {p}")
    preset = get_preset(avatar.card.get("preset", "tiny"))
    limits = FootageLimits()
    with tempfile.TemporaryDirectory(prefix="lipforcing-avatar-") as tmp:
        scan = scan_video(video, video.stem, preset, limits, Path(tmp))
        _check_video(scan, limits)
        same_person(avatar, scan, limits)
        clip = shard_clip(scan.folder, video, 0, int(seconds * preset.media.fps))
        extra = {
            "avatar": avatar.name,
            "tool_version": __version__,
            "provenance": provenance(AVATAR_CODE),
            "footage": FootageReport([scan], [], limits).to_dict()["videos"],
        }
        other = (read_audio(other_audio), other_audio.name)
        return score_and_write(avatar.path, [clip], other, None, extra, out)


def same_person(avatar, scan, limits) -> None:
    """Refuse footage of somebody else than the avatar's person."""
    ref = avatar.card.get("identity")
    emb = scan.identity.valid()
    if ref is None or not len(emb):
        return
    d = float(np.median(np.linalg.norm(emb - np.asarray(ref)[None], axis=1)))
    if d > limits.max_identity_distance:
        raise FootageError(
            f"{Path(scan.source).name} shows a different person than the avatar {avatar.name} "
            f"(identity distance {d:.2f} > {limits.max_identity_distance})"
        )


__all__ = ["report_on_footage", "same_person"]
