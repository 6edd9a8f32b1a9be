"""The analysis run end to end on stand-ins: CSV schema, resume by clip, figures and summary."""

from __future__ import annotations

import csv

import pytest
import torch
from analysis_helpers import PoolCodec, fake_shards, toy_preset, toy_teacher

from lipforcing.analysis.run import COLUMNS, analyze, count, read_rows, write_report
from lipforcing.analysis.scoring import MouthScorer
from lipforcing.analysis.trajectory import TrajectoryConfig
from lipforcing.data.datasets import ShardDataset
from lipforcing.errors import UserError
from lipforcing.evaluation.lpips import LPIPS
from lipforcing.evaluation.syncnet import LipSyncNet

CFG = TrajectoryConfig(num_steps=4, drop_modes=("all",), sweep_scales=(1.0, 4.5), max_batch=8)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    preset = toy_preset()
    shards = fake_shards(tmp_path_factory.mktemp("shards"), preset, clips=2)
    torch.manual_seed(0)
    scorer = MouthScorer(PoolCodec(), LPIPS("alex"), LipSyncNet().eval())
    return preset, ShardDataset(shards, latent_frames=3), scorer


def run(setup, out, model=None, clips=2, cfg=CFG):
    preset, dataset, scorer = setup
    model = model or toy_teacher(preset=preset)
    return analyze(
        model, dataset, PoolCodec(), scorer, cfg, out, clips=clips, pack=4, progress=False
    )


def test_csv_schema_and_one_row_per_clip_sample_metric(setup, tmp_path):
    rows = run(setup, tmp_path)
    with (tmp_path / "trajectory.csv").open() as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == COLUMNS
        raw = list(reader)
    assert len(raw) == len(rows) == 2 * count(CFG) * 4  # clips x samples x metrics
    keys = {
        (r["clip"], r["panel"], r["s0"], r["s1"], r["drop_mode"], r["j"], r["metric"]) for r in raw
    }
    assert len(keys) == len(raw)  # no duplicates
    assert {r["metric"] for r in raw} == {"lpips", "ssim", "sync_c", "sync_d"}
    assert {r["panel"] for r in raw} == {"trajectory", "factorial", "sweep"}
    assert {r["clip"] for r in raw} == {"clip0@0", "clip1@0"}  # round-robin over shards
    parsed = read_rows(tmp_path / "trajectory.csv")
    assert all(-1 <= r["value"] <= 1 for r in parsed if r["metric"] == "ssim")


def test_resume_skips_done_clips_and_reproduces_them(setup, tmp_path):
    first = run(setup, tmp_path)

    def refuse(*a, **k):
        raise AssertionError("a finished clip was recomputed")

    assert run(setup, tmp_path, model=refuse) == first  # all clips done: no network call
    (tmp_path / "clips" / "clip1@0.csv").unlink()
    again = run(setup, tmp_path)  # recomputes clip1 only, same numbers
    assert [r["value"] for r in again] == pytest.approx([r["value"] for r in first], abs=1e-6)
    more = run(setup, tmp_path, clips=3)  # a larger --clips adds clips, keeps the old ones
    assert more[: len(first)] == first and {r["clip"] for r in more} > {r["clip"] for r in first}


def test_rerun_with_other_settings_is_refused(setup, tmp_path):
    run(setup, tmp_path, clips=1)
    other = TrajectoryConfig(num_steps=4, drop_modes=("all",), sweep_scales=(1.0,))
    with pytest.raises(UserError, match="another configuration"):
        run(setup, tmp_path, clips=1, cfg=other)


def test_report_writes_figures_and_summary(setup, tmp_path):
    rows = run(setup, tmp_path)
    (tmp_path / "notes.md").write_text("Hand-written comparison paragraph.")
    path = write_report(tmp_path, rows, {"teacher": "toy", "num_steps": 4, "shift": 5.0})
    text = path.read_text()
    for name in ("trajectory.png", "factorial.png", "sweep.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    assert "student landing **j_1 = " in text and "plateau j_1 in [" in text
    assert "Hand-written comparison paragraph." in text
