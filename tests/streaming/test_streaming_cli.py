"""`lipforcing sync` / `serve` command lines: a full offline run and one-line errors."""

from __future__ import annotations

import numpy as np
from streaming_inputs import speech_like

from lipforcing.cli.main import main


def test_sync_errors_are_one_line(tmp_path, capsys):
    import soundfile as sf
    from streaming_inputs import face_frames

    from lipforcing.media.io import write_video

    write_video(tmp_path / "v.mp4", face_frames(5)[0], 25.0)  # inputs that pass their checks
    sf.write(tmp_path / "a.wav", speech_like(0.5), 16_000)
    args = ["sync", "--video", str(tmp_path / "v.mp4"), "--audio", str(tmp_path / "a.wav")]
    assert main([*args, "--out", str(tmp_path / "o.gif")]) == 2
    assert "--out must be" in capsys.readouterr().err
    missing = str(tmp_path / "none.safetensors")
    assert main([*args, "--out", str(tmp_path / "o.mp4"), "--checkpoint", missing]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no student checkpoint") and "lipforcing train" in err


def test_serve_refuses_public_bind_without_token(capsys):
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    assert "needs --token" in capsys.readouterr().err


def test_sync_end_to_end(pipeline, tmp_path, shared_data, capsys):
    """A real clip (30 fps) re-voiced: source size and fps kept, new audio, same as offline;
    the report says which face was driven and in how many frames it was found."""
    import soundfile

    from lipforcing import codecs
    from lipforcing.media.io import read_video
    from lipforcing.models.checkpoints import save_checkpoint
    from lipforcing.streaming.offline import conform_fps, lipsync_offline
    from lipforcing.streaming.source import Source

    ckpt = tmp_path / "student.safetensors"
    save_checkpoint(ckpt, pipeline.model, pipeline.preset)
    codecs.save_codec(tmp_path / "codec.safetensors", pipeline.codec)
    video = shared_data / "clips" / "hdtf_RD_Radio10_0_clip_0.mp4"
    audio = speech_like(1.3, seed=9)
    soundfile.write(tmp_path / "speech.wav", audio, 16_000)
    out = tmp_path / "out.mp4"
    argv = ["sync", "--video", str(video), "--audio", str(tmp_path / "speech.wav")]
    assert main([*argv, "--out", str(out), "--checkpoint", str(ckpt)]) == 0
    src = read_video(video)
    got = read_video(out)
    assert got.frames.shape[1:] == src.frames.shape[1:]
    assert abs(got.fps - src.fps) < 0.01
    assert abs(len(got.frames) - round(1.3 * src.fps)) <= 1
    assert got.audio is not None and abs(len(got.audio) - len(audio)) < 0.05 * 16_000
    # the file's frames are the engine's offline frames (up to H.264 at crf 18)
    source = Source.from_file(video, pipeline.preset.media)
    said = f"face: largest; found in {source.frames_with_face} of {len(source)} frames"
    assert said in capsys.readouterr().out
    ref = conform_fps(lipsync_offline(pipeline, source, audio).frames, 25.0, src.fps)
    n = min(len(ref), len(got.frames))
    g, r = got.frames[:n].astype(int), ref[:n].astype(int)
    diff = np.abs(g - r).mean()
    # H.264 at crf 18 of a random network's noisy mouth costs ~4 grey levels on average; the
    # same frames one step out of alignment differ clearly more.
    assert diff < 6.0
    assert diff < 0.8 * np.abs(g[1:] - r[:-1]).mean()
