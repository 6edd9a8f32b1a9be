"""Conformance: docs/INSTALL.md's commands, run as written on the release's stand-ins.

Each command is taken from the page (:mod:`install_doc`), its release paths mapped to the
stand-ins (``conftest.standins``: 1.3B width in ``make test``, 14B width in the slow run), with
only the size knobs added: ``sync`` (a valid video, frame count and A/V as for the tiny
preset), one ``serve`` WebSocket session, ``eval --syncnet-v2``, ``bench --mode student``,
``convert``, the training procedure (preprocess, latent cache, Stage 1, Stage 2, conversion of
the trained student) on one short clip, and (slow) ``preprocess`` + ``analyze trajectory``.
"""

from __future__ import annotations

import json
import math
import shutil
import socket
import threading
import time

import numpy as np
import pytest
import torch
from install_doc import documented

from lipforcing.cli.main import main

TRAIN_SECONDS = 7.0  # two 81-frame windows: the least a shard needs (a window + references)


@pytest.fixture(scope="module")
def release(standins, clip, tmp_path_factory):
    """The context file (the page's encode-prompt) and the map from the page's paths to the
    stand-ins, the clip and this module's outputs."""
    s = standins
    out = tmp_path_factory.mktemp(f"install-{s['family']}")
    paths = {
        "W/lipforcing_14b.pth": s["student"],
        "W/teacher/omniavatar_ls_14b.pt": s["adapter"],
        "W/Wan2.1-T2V-14B": s["base"],
        "W/wav2vec2-base-960h": s["wav2vec2"],
        "W/taew2_1.pth": s["taehv"],
        "W/mask.png": s["mask"],
        "W/syncnet_v2.model": s["syncnet_v2"],
        "W/context.safetensors": str(out / "context.safetensors"),
        "W/student.safetensors": str(out / "student.safetensors"),
        "face.mp4": str(next(clip.glob("*.mp4"))),
        "speech.wav": str(next(clip.glob("*.wav"))),
        "heldout": str(clip),
        "synced.mp4": str(out / "synced.mp4"),
        "eval": str(out / "eval"),
        "bench.json": str(out / "bench.json"),
        "shards": str(out / "shards"),
        "analysis": str(out / "analysis"),
    }
    family = s["family"]
    assert main(documented("encode-prompt", paths, family)) == 0
    yield {"paths": paths, "family": family, "out": out}
    shutil.rmtree(out, ignore_errors=True)


def test_sync_then_eval_with_syncnet_v2(release):
    from lipforcing.media.io import read_audio, read_video

    paths, family = release["paths"], release["family"]
    assert main(documented("sync", paths, family)) == 0
    video, audio = read_video(paths["synced.mp4"]), read_audio(paths["speech.wav"])
    source = read_video(paths["face.mp4"])
    n = math.ceil(len(audio) / 640)  # as the tiny preset: one frame per 40 ms of audio
    assert len(video.frames) == n and video.frames.shape[1:] == source.frames.shape[1:]
    assert video.audio is not None and abs(len(video.audio) - len(audio)) <= 1024  # AAC frame
    assert main(documented("eval", paths, family)) == 0
    metrics = json.loads((release["out"] / "eval" / "metrics.json").read_text())
    row = metrics["summary"]
    assert np.isfinite(row["sync_c"]) and np.isfinite(row["sync_d"])
    assert "SyncNetV2" in json.dumps(metrics["networks"])


def test_text_embedding_of_the_wrong_width_is_one_line(release, capsys):
    """``sync`` as documented with a context of another width: exit 2, one line naming the
    file, the tensor and both shapes, nothing written."""
    from safetensors.torch import save_file

    paths = dict(release["paths"])
    wrong = release["out"] / "narrow_context.safetensors"
    save_file({"context": torch.zeros(1, 7, 32)}, str(wrong))
    paths["W/context.safetensors"] = str(wrong)
    paths["synced.mp4"] = str(release["out"] / "not_written.mp4")
    assert main(documented("sync", paths, release["family"])) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "narrow_context.safetensors: context has shape (1, 7, 32)" in err
    assert "(1, <=512, " in err and not (release["out"] / "not_written.mp4").exists()


def test_serve_one_websocket_session(release, monkeypatch):
    """``lipforcing serve`` as documented; one session over the WebSocket, then shut down."""
    import uvicorn

    from lipforcing.streaming import server

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = {}

    def serve_once(app, host, port_):
        srv = uvicorn.Server(uvicorn.Config(app, host=host, port=port_, log_level="warning"))
        thread = threading.Thread(target=srv.run, daemon=True)
        thread.start()
        while not srv.started:
            time.sleep(0.05)
        try:
            result.update(one_session(f"{host}:{port_}"))
        finally:
            srv.should_exit = True
            thread.join(timeout=20)

    monkeypatch.setattr(server, "serve", serve_once)
    argv = documented("serve", release["paths"], release["family"]) + ["--port", str(port)]
    assert main(argv) == 0
    assert result["ready"]["type"] == "ready" and result["frames"] >= 25
    assert result["done"]["speech_frames_out"] == 25


def one_session(address: str) -> dict:
    from websockets.sync.client import connect

    from lipforcing.streaming.server import decode_frame

    t = np.arange(16000) / 16000
    pcm = np.round(0.3 * np.sin(2 * np.pi * 180 * t) * 32767).astype("<i2").tobytes()
    with connect(f"ws://{address}/ws", max_size=2**24) as ws:
        ws.send(json.dumps({"type": "start", "realtime": False, "seed": 0}))
        ready = json.loads(ws.recv(timeout=300))
        for i in range(0, len(pcm), 3200):
            ws.send(pcm[i : i + 3200])
        ws.send(json.dumps({"type": "close"}))
        frames, done = 0, None
        deadline = time.monotonic() + 600
        while done is None and time.monotonic() < deadline:
            msg = ws.recv(timeout=deadline - time.monotonic())
            if isinstance(msg, bytes):
                decode_frame(msg)
                frames += 1
            elif json.loads(msg)["type"] == "done":
                done = json.loads(msg)["stats"]
    return {"ready": ready, "frames": frames, "done": done}


def test_bench_student_on_the_released_weights(release):
    paths = release["paths"]
    assert main(documented("bench", paths, release["family"])) == 0
    result = json.loads((release["out"] / "bench.json").read_text())
    assert result["layers"] == 4 and result["student"]["fps"] > 0
    assert "DiT weights from" in result["methodology"]


def test_convert_as_documented(release):
    from safetensors.torch import load_file

    paths = release["paths"]
    assert main(documented("convert", paths, release["family"])) == 0
    again = str(release["out"] / "again.safetensors")
    assert main(["convert", paths["W/student.safetensors"], "--out", again]) == 0
    a, b = load_file(paths["W/student.safetensors"]), load_file(again)
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


@pytest.mark.slow  # ~2.5 CPU minutes: 50-step teacher trajectories + Wan VAE / SyncNet scoring
def test_preprocess_and_analyze_as_documented(release):
    """The teacher = Wan base shards + the OmniAvatar-LS adapter; shards preprocessed with the
    release's alignment, mask and wav2vec2; the release's full-drop CFG with the negative
    prompt; one clip, two steps."""
    paths, family = release["paths"], release["family"]
    assert main(documented("preprocess", paths, family)) == 0
    meta = json.loads(next((release["out"] / "shards").glob("*/meta.json")).read_text())
    assert meta["crop_size"] == 32 and meta["audio_kind"] == "wav2vec2"
    assert main(documented("analyze", paths, family)) == 0
    out = release["out"] / "analysis"
    rows = (out / "trajectory.csv").read_text().splitlines()
    steps = {int(r.split(",")[5]) for r in rows[1:] if r.split(",")[1] == "trajectory"}
    assert steps == {0, 49}
    assert {r.split(",")[4] for r in rows[1:]} >= {"release"}
    assert all(p.is_file() for p in (out / "summary.md", out / "trajectory.png"))


def test_train_as_documented(release):
    """Preprocess, latent cache, Stage 1, Stage 2 and the conversion of the trained student, as
    the page writes them (one process, one step each) on the release's stand-ins and one clip
    of two 81-frame windows (the release's window length is kept)."""
    from safetensors.torch import load_file

    from lipforcing.distill.latents import load_cache
    from lipforcing.media.synthtalk import write_dataset

    out, family = release["out"], release["family"]
    write_dataset(out / "train", 1, TRAIN_SECONDS, 11)  # one 81-frame window and its references
    for extra in [*(out / "train").glob("*.npz"), out / "train" / "index.json"]:
        extra.unlink(missing_ok=True)
    paths = release["paths"] | {
        "train": str(out / "train"),
        "train_shards": str(out / "train_shards"),
        "latents_train.pt": str(out / "latents_train.pt"),
        "runs": str(out / "runs"),
        "my_student.safetensors": str(out / "my_student.safetensors"),
    }
    for name in ("preprocess-train", "latents", "stage1", "stage2", "convert-trained"):
        assert main(documented(name, paths, family)) == 0, name
    cache = load_cache(paths["latents_train.pt"])
    assert cache["x0"].shape[2] == 21 and cache["wave"].shape[1] == 81 * 640
    stage1 = load_file(str(out / "runs" / "stage1" / "student.safetensors"))
    stage2 = load_file(str(out / "runs" / "stage2" / "student.safetensors"))
    lora = [k for k in stage2 if "lora_B" in k]
    assert lora and stage1.keys() == stage2.keys()
    assert any(not torch.equal(stage1[k], stage2[k]) for k in lora)  # Stage 2 trained the LoRA
    student = load_file(paths["my_student.safetensors"])
    assert not any("lora" in k for k in student) and "patch_embedding.weight" in student
    ema = load_file(str(out / "runs" / "stage2" / "student_ema.safetensors"))
    trained = [k for k in ema if k.startswith(("audio_", "patch_embedding."))]
    assert trained and all(torch.equal(student[k], ema[k].bfloat16()) for k in trained)
