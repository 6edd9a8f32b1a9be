"""Training plumbing: exact resume, 1 vs 2 gloo processes, Stage-1 times, losses and attention
windows, CFG dropout."""

from __future__ import annotations

import dataclasses

import torch
import torch.multiprocessing as mp
from distill_helpers import dist_worker, toy_batch, toy_model, train_toy

from lipforcing.config import (
    RELEASE_WINDOWS,
    CausalConfig,
    DiffusionForcingConfig,
    OptimConfig,
    ScheduleConfig,
)
from lipforcing.diffusion.losses import flow_matching_loss
from lipforcing.diffusion.schedules import shifted_timesteps
from lipforcing.distill.diffusion_forcing import (
    chunk_times,
    diffusion_forcing_step,
    drop_conditions,
    time_set,
)
from lipforcing.distill.draws import Draws

CFG = OptimConfig(lr=1e-3, warmup_steps=2, batch_size=2, micro_batch=1, steps=5)


def test_resumed_run_reproduces_the_uninterrupted_loss_trace(tmp_path):
    full_model = toy_model()
    full = train_toy(full_model, CFG, tmp_path / "a", save_every=1)
    part_model = toy_model()
    first = train_toy(part_model, CFG, tmp_path / "b", save_every=1, stop_at=2)
    resumed_model = toy_model(seed=5)  # fresh weights: everything must come from the state
    trace = train_toy(resumed_model, CFG, tmp_path / "b", save_every=1)
    assert first == full[:2]
    assert trace == full  # bit-exact
    for a, b in zip(full_model.parameters(), resumed_model.parameters()):
        assert torch.equal(a, b)


def test_step_seconds_get_each_iteration_run_in_this_call(tmp_path):
    import time

    times: list[float] = []
    train_toy(toy_model(), CFG, tmp_path, save_every=1, stop_at=2, step_seconds=times)
    assert len(times) == 2
    resumed: list[float] = []
    start = time.perf_counter()
    train_toy(toy_model(), CFG, tmp_path, save_every=1, step_seconds=resumed)
    wall = time.perf_counter() - start
    assert len(resumed) == CFG.steps - 2  # only the iterations this call ran
    assert all(t > 0 for t in resumed) and sum(resumed) <= wall


def test_two_gloo_processes_equal_one_process_with_the_same_global_batch(tmp_path):
    out = tmp_path / "dist.pt"
    mp.spawn(dist_worker, args=(2, str(tmp_path / "init"), str(out)), nprocs=2, join=True)
    two = torch.load(out)
    model = toy_model()
    cfg = OptimConfig(lr=1e-3, warmup_steps=0, batch_size=4, micro_batch=2, steps=2)
    one = train_toy(model, cfg)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(
            two["params"][k], v, rtol=1e-4, atol=1e-5
        )  # float summation order
    assert abs(one[0] - two["losses"][0]) < 1e-5 and abs(one[1] - two["losses"][1]) < 1e-5
    assert not torch.equal(
        model.state_dict()["head.head.weight"], toy_model().state_dict()["head.head.weight"]
    )


def test_stage1_times_are_per_chunk_from_the_student_grid():
    d = Draws.for_micro_batch(0, 0, 0, 64)
    times = time_set(DiffusionForcingConfig(), CausalConfig(), ScheduleConfig())
    t = chunk_times(times, 9, 3, d)  # (B, F)
    taus = shifted_timesteps(50, 5.0)
    grid = {round(float(taus[0]), 6), round(float(taus[30]), 6)}
    assert t.shape == (64, 9)
    assert {round(float(v), 6) for v in t.unique()} == grid
    chunks = t.view(64, 3, 3)
    assert torch.all(chunks == chunks[:, :, :1])  # frames in a chunk share t
    assert 0.3 < float((t == 1.0).float().mean()) < 0.7  # both values drawn


def test_release_stage1_times_are_0999_0769_and_clean_context():
    cfg = DiffusionForcingConfig(times="grid_and_clean")
    times = time_set(cfg, CausalConfig(), ScheduleConfig())
    assert [round(float(v), 3) for v in times] == [0.999, 0.769, 0.0]  # the release's t_list
    t = chunk_times(times, 21, 3, Draws.for_micro_batch(0, 0, 0, 300))
    assert abs(float((t == 0).float().mean()) - 1 / 3) < 0.05  # a third of chunks are clean


def stage1_draws(cfg: DiffusionForcingConfig, batch: dict, step: int = 0):
    """The per-frame times and noise :func:`diffusion_forcing_step` draws at ``step``."""
    d = Draws.for_micro_batch(0, step, 0, batch["x0"].shape[0])
    times = time_set(cfg, CausalConfig(), ScheduleConfig())
    t = chunk_times(times, batch["x0"].shape[2], CausalConfig().chunk_frames, d)
    return t, d.randn(batch["x0"].shape[1:])


def stage1_loss(model, batch: dict, cfg: DiffusionForcingConfig, step: int = 0) -> torch.Tensor:
    d = Draws.for_micro_batch(0, step, 0, batch["x0"].shape[0])
    return diffusion_forcing_step(model, batch, cfg, CausalConfig(), ScheduleConfig(), d)[0]


@torch.no_grad()
def test_release_stage1_loss_is_half_the_x0_error_that_is_t2_times_the_velocity_error():
    """The release's loss 0.5 * mean (x0_pred - x0)^2 written through the velocity: x0_pred - x0
    = -t (v - (noise - x0)), so it is 0.5 * mean t^2 (v - v_target)^2; clean chunks add 0."""
    model, batch = toy_model(), toy_batch(2, 6)
    cfg = DiffusionForcingConfig(times="grid_and_clean", loss="x0")
    t, noise = stage1_draws(cfg, batch)
    assert (t == 0).any() and (t > 0).any()  # a clean chunk and a noisy one in the batch
    x0 = batch["x0"]
    tt = t[:, None, :, None, None]
    v = model((1 - tt) * x0 + tt * noise, t, batch["cond"])
    want = 0.5 * (tt.square() * (v - (noise - x0)).square()).mean()
    torch.testing.assert_close(stage1_loss(model, batch, cfg), want)
    paper = dataclasses.replace(cfg, loss="velocity")
    velocity = flow_matching_loss(model, x0, t, noise, batch["cond"])
    torch.testing.assert_close(stage1_loss(model, batch, paper), velocity)


@torch.no_grad()
def test_stage1_attention_windows_go_through_the_model_s_windowed_mask():
    """A (sink, window) of the list is the model's mask_window for the step's forward (the same
    loss as a model built with it; not the full block-causal one), one draw shared by every
    micro-batch of a step, every window drawn over steps, and the model's config restored."""
    model, batch = toy_model(), toy_batch(1, 12)  # 4 chunks: a window of 1 + 3 drops history
    cfg = DiffusionForcingConfig(attention_windows=((1, 3),))
    t, noise = stage1_draws(cfg, batch)
    windowed = toy_model()
    windowed.cfg = dataclasses.replace(windowed.cfg, mask_window=(1, 3))
    want = flow_matching_loss(windowed, batch["x0"], t, noise, batch["cond"])
    got = stage1_loss(model, batch, cfg)
    torch.testing.assert_close(got, want)
    full = stage1_loss(model, batch, dataclasses.replace(cfg, attention_windows=()))
    assert abs(float(full - got)) > 1e-6
    assert model.cfg.mask_window is None  # restored
    seen: list = []
    model.register_forward_pre_hook(lambda m, args: seen.append(m.cfg.mask_window))
    release = DiffusionForcingConfig(attention_windows=RELEASE_WINDOWS)
    for step in range(40):
        for first in (0, 1):  # two micro-batches (or processes) of the same step
            d = Draws.for_micro_batch(0, step, first, 1)
            diffusion_forcing_step(model, batch, release, CausalConfig(), ScheduleConfig(), d)
    assert seen[0::2] == seen[1::2]  # one window per step, whatever the micro-batch
    assert set(seen) == set(RELEASE_WINDOWS)
    assert model.cfg.mask_window is None


def test_cfg_dropout_rates_and_modes():
    cond = toy_batch(4000, 1)["cond"]
    d = drop_conditions(cond, 0.1, 0.1, Draws.for_micro_batch(0, 0, 0, 4000))
    audio_gone = d.audio.flatten(1).abs().sum(1) == 0
    refs_gone = d.ref.flatten(1).abs().sum(1) == 0
    assert torch.all(d.ref_seq.flatten(1).abs().sum(1)[refs_gone] == 0)
    assert torch.all(audio_gone[refs_gone])  # "all" drops audio too
    assert abs(float(refs_gone.float().mean()) - 0.1) < 0.02
    assert abs(float((audio_gone & ~refs_gone).float().mean()) - 0.1) < 0.02
    assert torch.equal(d.masked, cond.masked)


def test_per_block_recomputation_gives_the_same_gradients():
    from lipforcing.distill.distributed import shard_model

    grads = []
    for recompute in (False, True):
        model = shard_model(toy_model("bidirectional"), recompute)
        batch = toy_batch(2, 3)
        t = torch.tensor([0.3, 0.8])
        model(batch["x0"], t, batch["cond"]).square().mean().backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    assert grads[0].keys() == grads[1].keys()  # parameter names unchanged
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], msg=n)


def test_evaluation_leaves_the_global_rng_alone():
    from lipforcing.config import tiny
    from lipforcing.distill.evaluate import evaluate, generate_student

    preset = tiny()
    model, batch = toy_model(), toy_batch(1, 3)
    batch["audio"] = torch.zeros(1, 9, 6)

    class Codec:
        def decode(self, z):
            return z[:, :3].repeat_interleave(4, dim=2)[:, :, 3:]

    before = torch.get_rng_state()
    gt = torch.zeros(1, 3, 9, 4, 4, dtype=torch.uint8)
    out = evaluate(
        lambda c, z: generate_student(model, c, z, preset),
        Codec(),
        batch,
        gt,
        torch.ones(4, 4),
        None,
    )
    assert torch.equal(torch.get_rng_state(), before) and out["fps"] > 0
