"""``lipforcing analyze``: one-line errors and a small end-to-end run through the CLI."""

from __future__ import annotations

import csv

import pytest
import torch
from analysis_helpers import PoolCodec, fake_shards, toy_preset, toy_teacher

import lipforcing.codecs
from lipforcing.cli.analyze import parse_indices
from lipforcing.cli.main import main
from lipforcing.evaluation.syncnet import LipSyncNet, save_syncnet
from lipforcing.models.checkpoints import save_checkpoint


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    preset = toy_preset()
    path = tmp_path_factory.mktemp("teacher") / "teacher.safetensors"
    save_checkpoint(path, toy_teacher(preset=preset), preset)
    return path


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    return err[0]


def analyze(*args: str) -> int:
    return main(["analyze", "trajectory", *map(str, args)])


def test_missing_teacher_is_one_line(tmp_path, capsys):
    rc = analyze(
        "--teacher", tmp_path / "nope.safetensors", "--shards", tmp_path, "--out", tmp_path
    )
    assert rc == 2 and "no teacher checkpoint" in error_line(capsys)


def test_causal_student_is_refused_as_teacher(tmp_path, capsys):
    preset = toy_preset().with_attention("block_causal")
    student = tmp_path / "student.safetensors"
    save_checkpoint(student, toy_teacher(preset=preset), preset)
    rc = analyze("--teacher", student, "--shards", tmp_path, "--out", tmp_path / "o")
    assert rc == 2 and "causal" in error_line(capsys)


def test_no_shards_is_one_line(teacher, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    rc = analyze("--teacher", teacher, "--shards", tmp_path / "empty", "--out", tmp_path / "o")
    assert rc == 2 and "no shards" in error_line(capsys)


def test_bad_step_list_is_one_line(teacher, tmp_path, capsys):
    rc = analyze("--teacher", teacher, "--shards", tmp_path, "--out", tmp_path, "--steps", "a:b")
    assert rc == 2 and "bad step list" in error_line(capsys)
    rc = analyze("--teacher", teacher, "--shards", tmp_path, "--out", tmp_path, "--steps", "0,50")
    assert rc == 2 and "steps must lie in" in error_line(capsys)


def test_step_lists_mix_indices_and_ranges():
    assert parse_indices("all") is None
    assert parse_indices("1:6:2,5,10:12") == (1, 3, 5, 10, 11)


def test_report_without_results_is_one_line(tmp_path, capsys):
    assert main(["analyze", "report", "--out", str(tmp_path)]) == 2
    assert "no finished clips" in error_line(capsys)


def test_cli_run_writes_csv_figures_summary_and_resumes(teacher, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(lipforcing.codecs, "load_codec", lambda path: PoolCodec(), raising=False)
    shards = fake_shards(tmp_path / "shards", toy_preset(), clips=2)
    codec = tmp_path / "codec.safetensors"
    codec.write_bytes(b"stand-in")
    torch.manual_seed(0)
    sync = tmp_path / "syncnet.safetensors"
    save_syncnet(LipSyncNet(), sync)
    out = tmp_path / "out"
    args = ["--teacher", teacher, "--shards", shards, "--codec", codec, "--syncnet", sync]
    args += ["--clips", 1, "--out", out, "--latent-frames", 3, "--steps", "0,25,49"]
    args += ["--landings", "10,30", "--sweep", "1,4.5", "--drop-modes", "audio", "--no-progress"]
    assert analyze(*args) == 0
    for name in ("trajectory.csv", "trajectory.png", "factorial.png", "sweep.png", "summary.md"):
        assert (out / name).is_file()
    with (out / "trajectory.csv").open() as f:
        rows = list(csv.DictReader(f))
    # (2 arms x 3 steps + 2 sweep endpoints + 4 schedules x 2 landings) x 4 metrics, one clip
    assert len(rows) == (2 * 3 + 2 + 4 * 2) * 4
    assert {r["drop_mode"] for r in rows} == {"none", "audio"}
    summary = (out / "summary.md").read_text()
    assert "lipforcing analyze trajectory" in summary and "LipSyncNet" in summary
    (out / "trajectory.csv").unlink()
    monkeypatch.setattr(lipforcing.codecs, "load_codec", lambda path: PoolCodec(), raising=False)
    assert analyze(*args) == 0  # resumed: the clip is read back from out/clips
    with (out / "trajectory.csv").open() as f:
        assert list(csv.DictReader(f)) == rows
    capsys.readouterr()
    (out / "trajectory.csv").unlink()
    assert main(["analyze", "report", "--out", str(out)]) == 0  # rebuilt from out/clips
    with (out / "trajectory.csv").open() as f:
        assert list(csv.DictReader(f)) == rows
