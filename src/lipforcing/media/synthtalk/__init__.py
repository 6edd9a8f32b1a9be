"""SynthTalk: procedural talking faces with formant-synthesised speech, in exact sync.

The CPU-scale data source of the project: every clip is a pure function of its seed, comes with
exact 5-point landmarks (no detector needed) and per-frame mouth parameters, and its mouth
shapes follow the phonemes of its audio (see :mod:`.speech`).
"""

from lipforcing.media.synthtalk.clip import (
    SynthClip,
    clip_name,
    render_clip,
    write_clip,
    write_dataset,
)

__all__ = ["SynthClip", "clip_name", "render_clip", "write_clip", "write_dataset"]
