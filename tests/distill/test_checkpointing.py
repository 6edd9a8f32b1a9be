"""Resuming a run never executes code from its folder: a crafted state.pt is refused unrun."""

from __future__ import annotations

import builtins
import pickle

import pytest
import torch
from distill_helpers import toy_model, train_toy

from lipforcing.cli.main import main
from lipforcing.config import OptimConfig
from lipforcing.distill.checkpointing import load_state, save_state, saved_step
from lipforcing.errors import CheckpointError

CFG = OptimConfig(lr=1e-3, warmup_steps=2, batch_size=2, micro_batch=1, steps=3)


class RunsCode:
    """Unpickling this calls ``exec`` with a payload that writes ``marker``."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.exec, (f"open({self.marker!r}, 'w').write('pwned')",)


def crafted_state(run_dir, marker):
    """A state.pt with every key a real one has, and a payload hidden in ``extra``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    model = toy_model()
    state = {
        "step": 1,
        "models": {"model": model.state_dict()},
        "optimizers": {},
        "schedulers": {},
        "generators": {},
        "torch_rng": torch.get_rng_state(),
        "extra": {"losses": [], "payload": RunsCode(marker)},
    }
    torch.save(state, run_dir / "state.pt")
    return run_dir / "state.pt"


def test_the_payload_really_runs_when_unpickled_unsafely(tmp_path):
    """The oracle: the crafted file does execute code under weights_only=False."""
    path = crafted_state(tmp_path / "run", tmp_path / "marker")
    torch.load(path, weights_only=False)
    assert (tmp_path / "marker").read_text() == "pwned"


def test_resume_refuses_crafted_distributed_checkpoints_without_running_them(tmp_path):
    """The training loop's resume path (a DCP folder + trainer.json): a payload in the pickled
    DCP metadata, or in a tensor file, is refused unrun with one line."""
    marker = tmp_path / "marker"
    run = tmp_path / "run"
    train_toy(toy_model(), CFG, run, save_every=1, stop_at=1)  # a real checkpoint
    meta = run / "checkpoint" / ".metadata"
    meta.write_bytes(pickle.dumps(RunsCode(marker)))
    with pytest.raises(CheckpointError) as err:
        train_toy(toy_model(), CFG, run)
    message = str(err.value)
    assert "\n" not in message and "refused to resume" in message and "exec" in message
    assert not marker.exists()
    run2 = tmp_path / "run2"
    train_toy(toy_model(), CFG, run2, save_every=1, stop_at=1)
    shard = next((run2 / "checkpoint").glob("*.distcp"))
    torch.save({"payload": RunsCode(marker)}, shard)
    with pytest.raises(CheckpointError) as err:
        train_toy(toy_model(), CFG, run2)
    message = str(err.value)
    assert "\n" not in message and "refused to resume" in message
    assert "weights_only=False" not in message  # never advise the unsafe load
    assert not marker.exists()


def test_reading_the_saved_step_refuses_it_too(tmp_path):
    """`train codec` peeks at the saved step before resuming: the same safe read."""
    marker = tmp_path / "marker"
    path = crafted_state(tmp_path / "run", marker)
    with pytest.raises(CheckpointError, match="refused to resume"):
        saved_step(path)
    assert not marker.exists()
    assert saved_step(tmp_path / "absent.pt") is None


def test_resume_through_the_cli_is_one_error_line(tmp_path, capsys):
    """`lipforcing train codec` resumes from state.pt in its --out folder."""
    marker = tmp_path / "marker"
    out = tmp_path / "codec_run"
    crafted_state(out, marker)
    shards = tmp_path / "shards"
    _tiny_shard(shards / "clip")
    code = main(["train", "codec", str(shards), "--out", str(out), "--steps", "2"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "refused to resume" in err
    assert len(err.splitlines()) == 1
    assert not marker.exists()


def _tiny_shard(path):
    """A minimal preprocessed shard the codec trainer accepts."""
    import json

    import numpy as np

    from lipforcing.config import get_preset

    path.mkdir(parents=True)
    t, s = 24, get_preset("tiny").codec.image_size
    rng = np.random.default_rng(0)
    np.save(path / "crops.npy", rng.integers(0, 255, (t, s, s, 3), dtype=np.uint8))
    np.save(path / "found.npy", np.ones(t, bool))
    (path / "meta.json").write_text(json.dumps({"frames": t, "crop_size": s, "fps": 25.0}))


def test_truncated_and_foreign_files_are_one_clear_error(tmp_path):
    model = toy_model()
    opt = torch.optim.AdamW(model.parameters())
    good = tmp_path / "state.pt"
    save_state(good, step=4, models={"m": model}, optimizers={"o": opt})
    assert load_state(good, models={"m": model}, optimizers={"o": opt})[0] == 4
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:200])
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    for path in (cut, foreign):
        with pytest.raises(CheckpointError) as err:
            load_state(path, models={"m": model}, optimizers={"o": opt})
        assert "\n" not in str(err.value) and str(path) in str(err.value)
