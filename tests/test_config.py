import dataclasses

import pytest

from lipforcing.config import PRESETS, PresetConfig, get_preset


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_round_trip_through_json(name):
    cfg = get_preset(name)
    assert PresetConfig.from_dict(cfg.to_dict()) == cfg


def test_invariants_are_checked():
    cfg = get_preset("tiny")
    with pytest.raises(ValueError, match="audio_feature_dim"):
        dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, audio_feature_dim=3))
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
