"""The memory table of docs/TRAINING.md is the one the code computes, and its counts hold."""

from __future__ import annotations

from pathlib import Path

from lipforcing.config import LoraConfig, get_preset
from lipforcing.distill.memory import (
    RUNS,
    estimate,
    options_table,
    param_count,
    table,
    trainable_count,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "TRAINING.md"


def test_the_documented_table_is_the_computed_one():
    assert table() in DOC.read_text() and options_table() in DOC.read_text()


def test_counts_and_sharding():
    p14, p13 = get_preset("wan-14b"), get_preset("wan-1.3b")
    assert 14.0e9 < param_count(p14) < 14.6e9 and 1.3e9 < param_count(p13) < 1.5e9
    assert trainable_count(p13, None) == param_count(p13)
    lora = trainable_count(p14, LoraConfig())
    assert lora < 0.05 * param_count(p14)
    one, four = estimate(RUNS[0]), estimate(RUNS[0].__class__(**{**RUNS[0].__dict__, "gpus": 1}))
    key = "student AdamW moments (fp32, sharded)"
    assert one[key] * 4 == four[key] == 8 * param_count(p13)  # two fp32 moments, / 4 GPUs
    assert one["teacher (bf16, whole, frozen)"] == 2 * param_count(p14)
