"""The engine on issue 19's probes: frames without a face come out untouched, the patch follows
the track across a hard cut, the chosen face is the one driven; the silence gate's equivalences.

Faces are SynthTalk renders tracked by dlib (no known landmarks), the student is the random
tiny one of conftest.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from streaming_inputs import speech_like

import face_scenes
from lipforcing.config import tiny
from lipforcing.errors import UserError
from lipforcing.media.composite import paste_back
from lipforcing.media.faces import track_faces
from lipforcing.media.synthtalk.clip import render_clip
from lipforcing.media.vad import SilenceGateConfig
from lipforcing.streaming.engine import ChunkEngine
from lipforcing.streaming.offline import lipsync_offline
from lipforcing.streaming.source import Source

MEDIA = tiny().media
OFF = SilenceGateConfig(enabled=False)


def run(pipeline, source, seconds=None, audio=None, gate=None):
    audio = speech_like(seconds or len(source) / 25, seed=3) if audio is None else audio
    return lipsync_offline(pipeline, source, audio, silence_gate=gate)


def pasted_by_the_library(source, result, k):
    """Output frame k as composite.paste_back makes it from the source's own track."""
    i = int(result.source_index[k])
    w = float(source.paste_weights[i])
    return paste_back(source.frames[i], result.crops[k], source.transforms[i], MEDIA, w)


@pytest.fixture(scope="module")
def leaving():
    """A SynthTalk face that slides out of the right edge from frame 16; black from frame 42."""
    frames = render_clip(2, 2.0, size=160).frames
    out = np.zeros_like(frames)
    for i, frame in enumerate(frames):
        dx = max(0, i - 16) * 6
        if dx < 160:
            out[i, :, dx:] = frame[:, : 160 - dx]
    return Source.from_frames(out, MEDIA, name="leaving")


def test_frames_without_a_face_are_the_source_frames_bit_for_bit(pipeline, leaving):
    assert leaving.found[:16].all() and not leaving.found[42:].any()
    result = run(pipeline, leaving)
    none = [
        k for k in range(len(result.frames)) if leaving.paste_weights[result.source_index[k]] == 0
    ]
    assert len(none) >= 10
    for k in none:
        assert np.array_equal(result.frames[k], leaving.frames[result.source_index[k]]), k
    face = [k for k in range(16) if not np.array_equal(result.frames[k], leaving.frames[k])]
    assert len(face) == 16  # frames with the face are pasted
    for k in range(len(result.frames)):  # every frame, fades included, is the library's paste
        assert np.array_equal(result.frames[k], pasted_by_the_library(leaving, result, k)), k
    assert "found in" in leaving.face_report() and leaving.frames_with_face < len(leaving)


def test_a_hard_cut_pastes_on_the_new_persons_track(pipeline):
    a = render_clip(1, 1.2, size=160).frames
    b = render_clip(3, 1.2, size=160).frames
    source = Source.from_frames(np.concatenate([a, b]), MEDIA)
    assert source.cuts.tolist() == [len(a)]
    alone = track_faces(b, MEDIA).transforms
    result = run(pipeline, source)
    for k in range(len(a), len(a) + 6):  # right after the cut: b's own track, nothing of a's
        i = int(result.source_index[k])
        w = float(source.paste_weights[i])
        ref = paste_back(source.frames[i], result.crops[k], alone[i - len(a)], MEDIA, w)
        assert np.abs(result.frames[k].astype(int) - ref).max() <= 1, k


@pytest.fixture(scope="module")
def three_faces():
    return face_scenes.three_faces(0.5)


@pytest.mark.parametrize(
    "face, span, said", [(None, (0, 200), "largest"), ("center", (200, 360), "center"),
                         (2, (400, 560), "index 2 from the left")],
)  # fmt: skip
def test_the_chosen_face_is_the_one_driven(pipeline, three_faces, face, span, said):
    source = Source.from_frames(three_faces, MEDIA, face=face)
    assert source.face == said and said in source.face_report()
    result = run(pipeline, source)
    changed = np.any(result.frames != source.frames[result.source_index], axis=(0, 1, 3))
    xs = np.flatnonzero(changed)
    assert len(xs) and span[0] <= xs.min() and xs.max() < span[1]


def test_gate_on_loud_speech_changes_nothing(pipeline, source):
    t = np.arange(int(0.84 * 16_000)) / 16_000
    loud = (0.2 * sum(np.sin(2 * np.pi * 220 * k * t) / k for k in range(1, 6))).astype(np.float32)
    on = run(pipeline, source, audio=loud)
    off = run(pipeline, source, audio=loud, gate=OFF)
    assert np.array_equal(on.frames, off.frames)


def test_gated_quiet_noise_is_digital_silence(pipeline, source):
    """Room noise under the gate's floor drives the student exactly as digital zeros do."""
    rng = np.random.default_rng(0)
    hum = 10 ** (-70 / 20) * rng.standard_normal(int(0.84 * 16_000)).astype(np.float32)
    gated = run(pipeline, source, audio=hum)
    zeros = run(pipeline, source, audio=np.zeros_like(hum), gate=OFF)
    ungated = run(pipeline, source, audio=hum, gate=OFF)
    assert np.array_equal(gated.frames, zeros.frames)
    assert not np.array_equal(ungated.frames, zeros.frames)  # the oracle can fail


def test_gate_reach_must_fit_the_audio_margin(pipeline, source):
    with pytest.raises(UserError, match="audio margin"):
        ChunkEngine(pipeline).open(source, silence_gate=SilenceGateConfig(hang_frames=9))
    ChunkEngine(pipeline).open(source, silence_gate=SilenceGateConfig(enabled=False, hang_frames=9))


@pytest.fixture(scope="module")
def whole_pipeline(tmp_path_factory):
    """The tiny student on the release's offline audio: a tiny wav2vec2 over the whole clip."""
    import dataclasses

    transformers = pytest.importorskip("transformers")
    import torch

    from lipforcing.media.audio import Wav2Vec2Features
    from lipforcing.streaming.pipeline import Pipeline

    config = transformers.Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
    )  # fmt: skip
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("w2v")
    transformers.Wav2Vec2Model(config).save_pretrained(folder)
    preset = tiny()
    audio = dataclasses.replace(
        preset.audio, kind="wav2vec2", wav2vec2_dim=32, wav2vec2_states=4, offline_features="whole"
    )
    pipe = Pipeline.random(dataclasses.replace(preset, audio=audio), seed=0)
    pipe.wav2vec2 = Wav2Vec2Features(folder)
    return pipe


def test_the_gate_also_holds_for_whole_clip_features(whole_pipeline, source):
    """The release's whole-clip features: quiet room noise (which the clip normalisation
    amplifies) drives the student as a silent clip does; loud speech is left alone."""
    rng = np.random.default_rng(0)
    hum = 10 ** (-70 / 20) * rng.standard_normal(int(0.84 * 16_000)).astype(np.float32)
    gated = run(whole_pipeline, source, audio=hum)
    zeros = run(whole_pipeline, source, audio=np.zeros_like(hum), gate=OFF)
    ungated = run(whole_pipeline, source, audio=hum, gate=OFF)
    assert np.array_equal(gated.frames, zeros.frames)
    assert not np.array_equal(ungated.frames, zeros.frames)  # the oracle can fail
    t = np.arange(len(hum)) / 16_000
    loud = (0.2 * sum(np.sin(2 * np.pi * 220 * k * t) / k for k in range(1, 6))).astype(np.float32)
    on = run(whole_pipeline, source, audio=loud)
    assert np.array_equal(on.frames, run(whole_pipeline, source, audio=loud, gate=OFF).frames)
