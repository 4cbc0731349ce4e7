"""Presets (named configurations whose measured figures README and benchmarks/results quote),
the split of SpertConfig into its parts, and the defaults of the deployment settings."""

from __future__ import annotations

import pytest

from spert.config import (
    INFERENCE_OPTIONS,
    MODEL_OPTIONS,
    PRESETS,
    TRAINING_OPTIONS,
    ConfigError,
    InferenceConfig,
    ModelConfig,
    RayExtractSettings,
    RayServeSettings,
    ServeSettings,
    SpertConfig,
    preset,
)


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


def test_paper_and_fast_presets_keep_the_unmeasured_options_off():
    # span_boundary, relation_type_dim, ema_decay and rdrop_alpha came after these presets were
    # measured (benchmarks/grids/beyond_paper_dev*.toml): the presets train as they did without.
    beyond = {"span_boundary": False, "relation_type_dim": 0, "ema_decay": 0.0, "rdrop_alpha": 0.0}
    for name in ("paper", "fast"):
        assert set(beyond).isdisjoint(PRESETS[name])
        assert {k: v for k, v in preset(name).to_dict().items() if k in beyond} == beyond
    assert {"span_boundary", "relation_type_dim"} <= set(MODEL_OPTIONS)
    assert {"ema_decay", "rdrop_alpha"} <= set(TRAINING_OPTIONS)


def test_earlier_recipes_keep_their_measured_options():
    # benchmarks/results/accuracy_conll04_fast.md and the ablation grids were measured with it.
    v1 = preset("fast-v1")
    assert (v1.train_batch_size, v1.length_bucketing, v1.epochs, v1.lr) == (8, True, 10, 1e-4)
    assert not (v1.bf16 or v1.freeze_word_embeddings or v1.eval_every_epoch)
    small = preset("small-encoder")
    assert small == v1.replace(word_shape_dim=16)


def test_fast_long_is_fast_trained_twice_as_long():
    assert preset("fast-long") == preset("fast").replace(epochs=60)


def test_unknown_preset_names_the_known_ones():
    with pytest.raises(ConfigError, match="unknown preset 'quick'.*fast-v1"):
        preset("quick")
    assert {"paper", "demo", "fast", "fast-long", "fast-v1", "small-encoder"} <= set(PRESETS)


def test_frozen_word_embeddings_need_a_pretrained_encoder():
    with pytest.raises(ConfigError, match="freeze_word_embeddings.*random"):
        preset("fast").replace(encoder_init="random")
    assert preset("fast").replace(encoder_init="frozen").freeze_word_embeddings


def test_inference_settings_are_their_own_object_and_part_of_spert_config():
    config = SpertConfig(eval_batch_size=3, relation_threshold=0.2, max_span_size=4)
    assert config.inference_config() == InferenceConfig(eval_batch_size=3, relation_threshold=0.2)
    assert config.model_config() == ModelConfig(max_span_size=4)
    assert set(MODEL_OPTIONS).isdisjoint(INFERENCE_OPTIONS)
    assert set(SpertConfig().to_dict()) == {*MODEL_OPTIONS, *INFERENCE_OPTIONS, *TRAINING_OPTIONS}
    for bad, match in (
        ({"eval_batch_size": 0}, "eval_batch_size must be at least 1"),
        ({"relation_threshold": 1.5}, r"relation_threshold must lie in \[0, 1\]"),
        ({"max_relations_per_sentence": -1}, "max_relations_per_sentence must not be negative"),
    ):
        with pytest.raises(ConfigError, match=match):
            InferenceConfig(**bad)
        with pytest.raises(ConfigError, match=match):
            SpertConfig(**bad)
    with pytest.raises(ConfigError, match="unknown option.*max_span_size"):
        InferenceConfig.from_dict({"max_span_size": 4})


def test_ray_defaults_live_in_the_settings_classes():
    """The command lines and the Python functions take their Ray defaults from one place."""
    import argparse
    import inspect

    from spert.cli import build_parser
    from spert.runtime.ray import extract_shards
    from spert.serve.cli import add_arguments
    from spert.serve.ray_serve import build_app, serve_ray

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    serve_args = vars(parser.parse_args([]))
    extract_args = vars(build_parser().parse_args(["extract", "--input", "i", "--out", "o"]))
    for settings, args, functions in (
        (RayServeSettings(), serve_args, (build_app, serve_ray)),
        (RayExtractSettings(), extract_args, (extract_shards,)),
    ):
        for name, default in settings.to_dict().items():
            assert args[name] == default, name
            for function in functions:
                assert inspect.signature(function).parameters[name].default == default, name
    assert {k: serve_args[k] for k in ServeSettings.field_names()} == ServeSettings().to_dict()
    with pytest.raises(ConfigError, match="replicas must be at least 1"):
        RayServeSettings(replicas=0)
    with pytest.raises(ConfigError, match="must not be negative"):
        RayServeSettings(num_gpus=-1.0)
