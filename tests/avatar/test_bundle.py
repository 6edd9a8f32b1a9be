"""avatar.bundle: a finished folder loads; a missing, changed, foreign, newer or half-written
folder is refused with one message naming the problem."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lipforcing.avatar.bundle import Avatar, finalise, list_avatars, pick_base
from lipforcing.errors import CheckpointError


def staged(tmp_path, name="work"):
    d = tmp_path / name
    (d / "source").mkdir(parents=True)
    (d / "student.safetensors").write_bytes(b"weights" * 100)
    np.save(d / "source" / "crops.npy", np.zeros((2, 4, 4, 3), np.uint8))
    return d


def made(tmp_path, name="me.avatar"):
    return finalise(staged(tmp_path, name + ".partial"), tmp_path / name, {"name": "me"})


def test_finished_folder_loads_and_lists(tmp_path):
    out = made(tmp_path)
    assert not (tmp_path / "me.avatar.partial").exists()
    a = Avatar.load(out)
    assert a.name == "me" and set(a.card["files"]) == {"student.safetensors", "source/crops.npy"}
    assert [x.name for x in list_avatars(tmp_path)] == ["me"]


def test_changed_or_missing_files_are_refused(tmp_path):
    out = made(tmp_path)
    (out / "student.safetensors").write_bytes(b"Weights" * 100)  # same size, other bytes
    with pytest.raises(CheckpointError, match="corrupt: student.safetensors changed"):
        Avatar.load(out)
    (out / "student.safetensors").unlink()
    with pytest.raises(CheckpointError, match="incomplete: student.safetensors is missing"):
        Avatar.load(out)


def test_foreign_newer_broken_and_partial_folders_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no such avatar folder"):
        Avatar.load(tmp_path / "nope.avatar")
    partial = staged(tmp_path, "half.avatar.partial")
    with pytest.raises(CheckpointError, match="not a lipforcing avatar"):
        Avatar.load(partial)
    out = made(tmp_path)
    card = json.loads((out / "card.json").read_text())
    (out / "card.json").write_text(json.dumps({**card, "format": "someone-else"}))
    with pytest.raises(CheckpointError, match="another tool"):
        Avatar.load(out)
    (out / "card.json").write_text(json.dumps({**card, "version": 99}))
    with pytest.raises(CheckpointError, match="newer lipforcing"):
        Avatar.load(out)
    (out / "card.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt"):
        Avatar.load(out)
    assert list_avatars(tmp_path) == []


def test_pick_base_takes_the_calmest_fully_usable_stretch():
    t, fps = 200, 25.0
    marks = np.cumsum(np.random.default_rng(0).normal(0, 2, (t, 5, 2)), 0)
    marks[100:150] = marks[100]  # still from frame 100 to 149
    usable = np.ones(t, bool)
    usable[110] = False  # ... but frame 110 has no usable face
    start, stop = pick_base(usable, marks, 25, fps)
    assert stop - start == 25 and usable[start:stop].all()
    assert start == 125  # the still stretch after the gap (searched at 1 s steps)
    assert pick_base(usable[:20], marks[:20], 25, fps) == (0, 20)
