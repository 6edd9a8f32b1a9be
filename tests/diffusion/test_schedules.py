import pytest
import torch

from lipforcing.config import ScheduleConfig
from lipforcing.diffusion.guidance import sync_window_scale
from lipforcing.diffusion.schedules import (
    ShiftedGrid,
    add_noise,
    shift_time,
    shifted_timesteps,
    unshift_time,
    velocity_target,
    x0_from_velocity,
)


def test_grid_check_values_from_the_paper():
    tau = shifted_timesteps(50, 5.0)
    assert tau.shape == (51,)
    expected = {0: 1.0, 13: 0.934, 20: 0.882, 25: 0.833, 30: 0.769, 37: 0.637, 40: 0.556, 50: 0.0}
    for j, value in expected.items():
        assert abs(tau[j].item() - value) < 1e-3, (j, tau[j].item())
    assert torch.all(tau[1:] < tau[:-1])


def test_grid_index_inverts_the_grid():
    grid = ShiftedGrid(50, 5.0)
    j = grid.index(grid.times())
    assert torch.allclose(j, torch.arange(51, dtype=torch.float64), atol=1e-9)
    assert grid.nearest(0.769) == 30 and grid.nearest(0.882) == 20
    u = torch.rand(100, dtype=torch.float64)
    assert torch.allclose(unshift_time(shift_time(u, 5.0), 5.0), u, atol=1e-12)


def test_grid_object_is_the_preset_schedule():
    from lipforcing.config import ScheduleConfig

    grid = ShiftedGrid.from_config(ScheduleConfig(num_steps=20, shift=3.0))
    assert (grid.num_steps, grid.shift) == (20, 3.0)
    assert grid.taus == tuple(shifted_timesteps(20, 3.0).tolist())
    assert grid.tau(0) == 1.0 and grid.tau(20) == 0.0
    assert ShiftedGrid(20, 3.0) == grid and ShiftedGrid(20, 5.0) != grid
    with pytest.raises(ValueError):
        ShiftedGrid(0, 5.0)


def test_flow_matching_identities():
    x0, eps = torch.randn(2, 16, 3, 4, 4), torch.randn(2, 16, 3, 4, 4)
    t = torch.tensor([0.3, 0.8])
    x_t = add_noise(x0, eps, t)
    assert torch.allclose(x0_from_velocity(x_t, velocity_target(x0, eps), t), x0, atol=1e-6)
    per_frame = torch.tensor([[0.1, 0.5, 0.9], [1.0, 0.0, 0.4]])
    x_f = add_noise(x0, eps, per_frame)
    assert torch.allclose(x_f[1, :, 0], eps[1, :, 0]) and torch.allclose(x_f[1, :, 1], x0[1, :, 1])


@pytest.mark.parametrize(
    ("t", "scale"), [(0.9, 1.0), (0.882, 4.5), (0.7, 4.5), (0.556, 4.5), (0.55, 1.0), (0.1, 1.0)]
)
def test_sync_window_scale(t, scale):
    s = ScheduleConfig()
    assert sync_window_scale(t, s.window_lo, s.window_hi, s.window_scale) == scale
    got = sync_window_scale(torch.tensor([t]), s.window_lo, s.window_hi, s.window_scale)
    assert got.item() == scale


def test_sync_window_matches_grid_steps_20_to_40():
    tau = shifted_timesteps(50, 5.0)
    s = ScheduleConfig()
    assert (round(s.window_lo, 3), round(s.window_hi, 3)) == (0.556, 0.882)  # paper's band
    inside = [
        j
        for j in range(51)
        if sync_window_scale(tau[j].item(), s.window_lo, s.window_hi, 4.5) == 4.5
    ]
    assert inside == list(range(20, 41))
