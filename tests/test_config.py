"""Presets: named configurations whose measured figures README and benchmarks/results quote."""

from __future__ import annotations

import pytest

from spert.config import PRESETS, ConfigError, SpertConfig, preset


def test_paper_preset_is_the_defaults():
    assert preset("paper") == SpertConfig()


def test_fast_preset_is_the_cpu_recipe_chosen_on_conll04_dev():
    # benchmarks/results/ablations/cpu_recipe measured it; README quotes its figures.
    fast = preset("fast")
    assert (fast.train_batch_size, fast.length_bucketing, fast.epochs, fast.lr) == (
        8,
        True,
        30,
        7e-5,
    )
    assert fast.bf16 and fast.freeze_word_embeddings
    assert not fast.eval_every_epoch and not fast.calibrate
    # The model it trains, and how that model predicts, are the paper's: only training options
    # differ.
    assert fast.model_config() == SpertConfig().model_config()
    assert fast.inference_config() == SpertConfig().inference_config()


def test_earlier_recipes_keep_their_measured_options():
    # benchmarks/results/accuracy_conll04_fast.md and the ablation grids were measured with it.
    v1 = preset("fast-v1")
    assert (v1.train_batch_size, v1.length_bucketing, v1.epochs, v1.lr) == (8, True, 10, 1e-4)
    assert not (v1.bf16 or v1.freeze_word_embeddings or v1.eval_every_epoch)
    small = preset("small-encoder")
    assert small == v1.replace(word_shape_dim=16)


def test_unknown_preset_names_the_known_ones():
    with pytest.raises(ConfigError, match="unknown preset 'quick'.*fast-v1"):
        preset("quick")
    assert {"paper", "demo", "fast", "fast-v1", "small-encoder"} <= set(PRESETS)


def test_frozen_word_embeddings_need_a_pretrained_encoder():
    with pytest.raises(ConfigError, match="freeze_word_embeddings.*random"):
        preset("fast").replace(encoder_init="random")
    assert preset("fast").replace(encoder_init="frozen").freeze_word_embeddings
