import dataclasses

import pytest

from lipforcing.config import PRESETS, PresetConfig, get_preset


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_round_trip_through_json(name):
    cfg = get_preset(name)
    assert PresetConfig.from_dict(cfg.to_dict()) == cfg


def test_model_sizes_are_derived_from_the_sections_that_define_them():
    cfg = get_preset("tiny")
    stale = dataclasses.replace(
        cfg.model, audio_feature_dim=3, latent_channels=8, audio_pack_frames=2, chunk_frames=1
    )
    p = dataclasses.replace(cfg, model=stale)
    assert p.model.audio_feature_dim == p.audio.feature_dim == 32 * 5 * 4
    assert p.model.latent_channels == p.codec.latent_channels
    assert p.model.audio_pack_frames == p.codec.temporal_stride
    assert p.model.chunk_frames == p.causal.chunk_frames
    wan = get_preset("wan-14b").model
    assert wan.audio_feature_dim == 768 * 14  # wav2vec2: last state + 13 hidden states


def test_sync_window_bounds_derive_from_the_schedule_and_old_files_still_load():
    cfg = get_preset("tiny")
    assert cfg.schedule.window_lo == pytest.approx(5 / 9)  # tau_40 on the N=50, shift-5 grid
    assert cfg.schedule.window_hi == pytest.approx(15 / 17)  # tau_20
    old = cfg.to_dict()
    old["schedule"] |= {"window_lo": 0.556, "window_hi": 0.882}  # stored by older versions
    assert PresetConfig.from_dict(old) == cfg


def test_recipes():
    from lipforcing.config import RECIPES, get_recipe

    for name in RECIPES:
        rc = get_recipe(name)
        assert get_preset(rc.preset)
    r14 = get_recipe("release-14b")
    assert r14.stage2.iterations == 600 and r14.stage2.roles.count("critic") == 4
    assert r14.stage2.optim.batch_size == 16 and r14.stage1.optim.batch_size == 16
    assert r14.stage2.lora.rank == 128 and r14.stage2.lora.alpha == 64
    assert get_recipe("release-1.3b").stage2.optim.batch_size == 64
    paper = get_recipe("paper")
    assert paper.stage2.iterations == 600 * 6 and paper.stage2.roles[-1] == "student"
    assert paper.stage2.ema == r14.stage2.ema == 0.9999
    with pytest.raises(ValueError, match="unknown recipe"):
        get_recipe("nope")


def test_invariants_are_checked():
    cfg = get_preset("tiny")
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("nope")
    with pytest.raises(ValueError, match="1 \\+ 4"):
        cfg.codec.latent_frames(10)
    assert cfg.codec.latent_frames(81) == 21 and cfg.codec.video_frames(21) == 81


def test_wan_presets_have_paper_shapes():
    assert get_preset("wan-1.3b").model.head_dim == 128
    assert get_preset("wan-14b").model.head_dim == 128
    assert get_preset("wan-1.3b").model.in_channels == 65
    assert get_preset("wan-1.3b").tokens_per_frame == 32 * 32
