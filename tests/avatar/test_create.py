"""`lipforcing avatar create` end to end at smoke size on SynthTalk footage (a few steps per
stage): the chain runs, resumes after an interruption without redoing finished stages, and the
avatar loads, streams through the product engine and carries its held-out report. Unusable
footage is refused with one message and leaves nothing behind."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from avatar_helpers import leaving, no_face, silent, talking

from lipforcing.avatar.bundle import Avatar
from lipforcing.cli.main import main
from lipforcing.streaming.session import StreamSession

TARGETS = {
    "mouth_psnr_gap_db",
    "sync_c_share_of_real",
    "best_offset_frames",
    "lip_r_share_of_real",
    "other_sync_c_over_source",
    "engine_fps",
}


RATES = ("codec", "syncnet", "teacher", "stage1", "critic", "student", "encode", "forward")


def create(video, out, *extra):
    return main(["avatar", "create", str(video), "--out", str(out), "--quick", *extra])


@pytest.mark.timeout(1200)
def test_quick_create_resumes_then_loads_streams_and_reports(tmp_path, monkeypatch, capsys):
    from lipforcing.avatar import estimate, train

    video = talking(tmp_path / "in" / "me.mp4", seconds=24.0)
    out = tmp_path / "me.avatar"
    work = tmp_path / "me.avatar.partial"

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    budget = ("--keep-work", "--minutes", "0.05")  # 3 s: spent by the scan, 1 step a stage
    with monkeypatch.context() as m:  # interrupted in Stage 1: nothing looks finished
        m.setattr(train, "distill_stage1", interrupted)
        assert create(video, out, *budget) == 130
    assert not out.exists() and (work / "teacher" / "teacher.safetensors").is_file()
    with pytest.raises(Exception, match="not a lipforcing avatar"):
        Avatar.load(work)
    first = capsys.readouterr().out
    assert "budget 0.05 min" in first and "estimated time:" in first
    sized = json.loads((work / "settings.json").read_text())["plan"]["sized"]
    assert list(sized) == ["codec", "syncnet", "teacher"]  # each fixed when it started
    assert "s/step timed in its own loop" in first
    done = {p: p.stat().st_mtime_ns for p in work.glob("*/*.safetensors")}
    (work / "estimate.json").unlink()  # recalibrated on a machine that now looks very fast:
    with monkeypatch.context() as m:  # the resumed build keeps its first run's steps
        m.setattr(estimate, "calibrate", lambda cfg, preset: dict.fromkeys(RATES, 1e-9))
        assert create(video, out, *budget) == 0
    assert all(p.stat().st_mtime_ns == t for p, t in done.items())  # finished stages kept
    log = capsys.readouterr().out
    assert "estimated time:" in log and "| me.mp4 | 24.0 | 100% |" in log
    assert "minutes planned/actual: footage -/" in log and "of 0.05" in log
    assert not (work / "probe" / "stage2").exists()  # timing runs leave nothing

    avatar = Avatar.load(out)
    card = avatar.card
    assert card["trained_on"]["heldout_seconds"] == pytest.approx(3.6)
    assert card["trained_on"]["train_seconds"] == pytest.approx(20.4)
    assert card["init"] == "builtin" and card["tool_version"] and len(card["identity"]) == 128
    steps = {s: v["steps"] for s, v in card["steps"].items() if s != "budget"}
    assert steps == dict.fromkeys(("codec", "syncnet", "teacher", "stage1", "stage2"), 1)
    assert card["steps"]["teacher"]["config_steps"] == 2  # --quick's steps are the caps
    assert card["config"]["recipe"]["stage1"]["optim"]["steps"] == 1  # what Stage 1 ran
    budget = card["steps"]["budget"]
    assert budget["minutes"] == 0.05
    for s in ("codec", "syncnet", "teacher"):  # fixed before the interruption: kept
        assert budget["sized"][s] == sized[s]
    for s in steps:  # each stage timed its own steps (warm-up 1 + 3 timed) in its real loop
        assert card["steps"][s]["timed_s_per_step"] > 0 and card["steps"][s]["timing_run_s"] > 0
        assert card["steps"][s]["planned_steps"] == 1  # the plan up front: budget spent
        assert budget["actual_s"][s] > 0 and budget["planned_s"][s] > 0
    for name in ("student.safetensors", "codec.safetensors", "syncnet.safetensors"):
        assert name in card["files"]
    report = json.loads((out / "report" / "report.json").read_text())
    assert set(report["targets"]) == TARGETS
    assert all(math.isfinite(v["value"]) for v in report["targets"].values())
    assert report["summary"]["real"]["lip_r"] > 0.3  # SynthTalk mouths follow their speech
    assert report["side_by_side"]["teacher"]["steps"] == 50
    assert report["seen"]["clips"] == ["me from 16.8 s"]  # as many frames as held out (3.6 s)
    assert report["seen"]["summary"]["own"]["mouth_psnr"] > 0
    for name in ("report.md", "contact_sheet.png", "lip_sync.png"):
        assert (out / "report" / name).stat().st_size > 0

    pipe = avatar.pipeline()
    source = avatar.source(pipe.preset.media)
    assert len(source) == 50 and source.frames.shape[1:] == (128, 128, 3)
    session = StreamSession(pipe, source, seed=0)
    session.push_audio(np.zeros(16_000, np.float32))
    session.close()
    frames = [f.image for f in session.frames()][:25]
    assert len(frames) == 25 and frames[0].shape == (128, 128, 3)

    assert main(["avatar", "list", str(tmp_path)]) == 0
    assert "me\t" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: silent(p), "speech in only"),
        (lambda p: talking(p, seconds=10.0), "only 10.0 s of footage with a usable face"),
        (lambda p: no_face(p), "face found in only 0%"),
        (lambda p: leaving(p), "leaves the frame in 48% of the frames (at 12.5-24.0 s)"),
    ],
    ids=["silence", "short", "no-face", "leaves-frame"],
)
def test_unusable_footage_is_refused_and_leaves_nothing(tmp_path, capsys, make, message):
    video = make(tmp_path / "clip.mp4")
    assert create(video, tmp_path / "x.avatar") == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bars
    assert last.startswith("error: ") and message in last
    assert not (tmp_path / "x.avatar").exists() and not (tmp_path / "x.avatar.partial").exists()


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    video = talking(tmp_path / "me.mp4", seconds=2.0)
    (tmp_path / "c.avatar").mkdir()
    cases = [
        (
            ["avatar", "create", str(tmp_path / "nope.mp4"), "--out", str(tmp_path / "a.avatar")],
            "no such video",
        ),
        (["avatar", "create", str(video), "--out", str(tmp_path / "a.folder")], ".avatar folder"),
        (["avatar", "create", str(video), "--out", str(tmp_path / "c.avatar")], "already exists"),
        (["avatar", "info", str(tmp_path)], "not a lipforcing avatar"),
        (
            ["avatar", "create", str(video), "--out", str(tmp_path / "a.avatar"), "--minutes", "0"],
            "--minutes must be positive",
        ),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        assert message in capsys.readouterr().err
    both = ["--minutes", "5", "--steps-from-config"]  # argparse's own usage error
    with pytest.raises(SystemExit) as exit_:
        main(["avatar", "create", str(video), "--out", str(tmp_path / "a.avatar"), *both])
    assert exit_.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    work = tmp_path / "b.avatar.partial"
    work.mkdir()
    (work / "settings.json").write_text(json.dumps({"inputs": []}))
    assert main(["avatar", "create", str(video), "--out", str(tmp_path / "b.avatar")]) == 2
    assert "partial build with other inputs" in capsys.readouterr().err
