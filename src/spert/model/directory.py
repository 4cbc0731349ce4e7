"""The model directory: what a saved model needs to predict, and nothing else.

``spert.json`` (layout version, spert version, the model's options: its architecture and its
inference settings in one ``config`` object, types), ``encoder/`` (the Hugging
Face encoder and its tokenizer), ``heads.safetensors`` (everything outside the encoder) and,
once ``spert calibrate`` has run, ``calibration.json`` (see :mod:`spert.model.calibration`).
Training options (learning rate, epochs, ...) are the training run's record, not the model's.

An ensemble directory (``spert ensemble``) holds ``ensemble.json`` (layout version and the
member folders), one model directory per member (``member_1/``, ...; their own calibrations
are not kept) and the ensemble's own ``calibration.json``; it loads like a model directory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from transformers import AutoModel, PreTrainedTokenizerBase

from spert.config import (
    INFERENCE_OPTIONS,
    TRAINING_OPTIONS,
    ConfigError,
    InferenceConfig,
    ModelConfig,
)
from spert.data import DataError, Types
from spert.model.calibration import CALIBRATION_FILE, Calibration, CalibrationError
from spert.model.encoding import load_tokenizer
from spert.model.modeling import SpertEnsemble, SpertModel, members
from spert.utils import UserError, atomic_replace_dir, atomic_write_text, recover_replaced_dir
from spert.version import __version__

#: Version of the model directory layout; a directory of another version is refused.
FORMAT_VERSION = 1
META_FILE = "spert.json"
ENSEMBLE_FILE = "ensemble.json"
HEADS_FILE = "heads.safetensors"
ENCODER_DIR = "encoder"


class ModelError(UserError, RuntimeError):
    """A model directory that cannot be loaded."""


@dataclass
class SavedModel:
    """The parts of a model directory, loaded."""

    model: SpertModel | SpertEnsemble
    tokenizer: PreTrainedTokenizerBase
    types: Types
    config: ModelConfig
    inference: InferenceConfig
    calibration: Calibration | None = None


def default_model_dir() -> Path:
    """Where ``spert demo`` puts its model: ``$SPERT_HOME/default-model`` if SPERT_HOME is set,
    else ``~/.cache/spert/default-model``."""
    home = os.environ.get("SPERT_HOME")
    root = Path(home).expanduser() if home else Path.home() / ".cache" / "spert"
    return root / "default-model"


def find_model_dir(path: str | os.PathLike[str] | None) -> Path:
    """``path`` checked to be a model directory; without a path, the default model's."""
    if path is None:
        default = default_model_dir()
        if not (default / META_FILE).is_file():
            raise ModelError(
                f"no default model in {default}: run `spert demo` first to create it, "
                "or give a model directory"
            )
        return default
    path = recover_replaced_dir(path, clean=False)  # a save cut off between its two renames
    if not (path / META_FILE).is_file() and not (path / ENSEMBLE_FILE).is_file():
        raise ModelError(
            f"{path}: not a SpERT model directory (no {META_FILE}, nor {ENSEMBLE_FILE})"
        )
    return path


def ensemble_members(path: Path) -> list[Path] | None:
    """The member directories of the ensemble directory ``path``; None for a single model."""
    file = path / ENSEMBLE_FILE
    if not file.is_file():
        return None
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ModelError(f"{file}: unreadable ({e})") from None
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        version = meta.get("format_version") if isinstance(meta, dict) else None
        raise ModelError(
            f"{file}: ensemble format {version!r}; this spert {__version__} reads format "
            f"{FORMAT_VERSION}"
        )
    names = meta.get("members")
    if not isinstance(names, list) or len(names) < 2:
        raise ModelError(f"{file}: field 'members' must list at least 2 member folders")
    folders = []
    for i, name in enumerate(names):
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise ModelError(f"{file}: members[{i}] must be a folder name inside {path}")
        if not (path / name / META_FILE).is_file():
            raise ModelError(f"{file}: members[{i}]: {path / name} is not a SpERT model directory")
        folders.append(path / name)
    return folders


def read_meta(path: Path) -> tuple[ModelConfig, InferenceConfig, Types]:
    """The architecture, inference settings and types of a model directory.

    ``spert.json`` keeps both kinds of option in its one ``config`` object, as it always has;
    options added since a directory was written take their defaults. Directories written
    before model and training options were apart store every option of the run; their
    training options are ignored.
    """
    folders = ensemble_members(path)
    if folders is not None:  # members share their options and types (checked on loading)
        return read_meta(folders[0])
    meta_path = path / META_FILE
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ModelError(f"{meta_path}: unreadable ({e})") from None
    if not isinstance(meta, dict):
        raise ModelError(f"{meta_path}: not a SpERT model description")
    for required in (HEADS_FILE, ENCODER_DIR):
        if not (path / required).exists():
            raise ModelError(f"{path}: incomplete model directory, {required} is missing")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelError(
            f"{path}: saved by spert {meta.get('spert_version', '?')} in model format "
            f"{meta.get('format_version')!r}; this spert {__version__} reads format "
            f"{FORMAT_VERSION}. Retrain or use a matching spert version."
        )
    try:
        stored = meta["config"]
        if not isinstance(stored, dict):
            raise ConfigError("'config' must be an object of model options")
        inference = {k: v for k, v in stored.items() if k in INFERENCE_OPTIONS}
        skip = set(TRAINING_OPTIONS) | set(inference)
        config = ModelConfig.from_dict(
            {k: v for k, v in stored.items() if k not in skip}, str(meta_path)
        )
        settings = InferenceConfig.from_dict(inference, str(meta_path))
        types = Types.from_dict(meta["types"], str(meta_path))
    except (ConfigError, DataError, KeyError) as e:
        raise ModelError(f"{meta_path}: {e}") from None
    return config, settings, types


def load_model_dir(path: Path, calibration: bool = True) -> SavedModel:
    """Encoder, heads, tokenizer, types, options and (unless ``calibration=False``) the
    calibration of the model directory ``path``; for an ensemble directory, its members in a
    :class:`SpertEnsemble`, with the first member's tokenizer and options."""
    folders = ensemble_members(path)
    if folders is not None:
        saved = combine([load_model_dir(folder, calibration=False) for folder in folders], folders)
        saved.calibration = read_calibration(path, saved.types) if calibration else None
        return saved
    config, inference, types = read_meta(path)
    encoder_path = path / ENCODER_DIR
    tokenizer = load_tokenizer(encoder_path, config.lowercase)
    encoder = AutoModel.from_pretrained(encoder_path)
    model = SpertModel(encoder, len(types.entities), len(types.relations), config)
    missing, unexpected = model.load_state_dict(load_file(str(path / HEADS_FILE)), strict=False)
    missing = [k for k in missing if not k.startswith("encoder.")]
    if missing or unexpected:
        raise ModelError(f"{path}: heads do not match (missing {missing}, unexpected {unexpected})")
    model.eval()
    stored = read_calibration(path, types) if calibration else None
    return SavedModel(model, tokenizer, types, config, inference, stored)


#: Model options that must agree among an ensemble's members: they decide the candidate spans
#: and the subwords, which the members score together.
SHARED_OPTIONS = ("max_span_size", "lowercase", "max_encoder_length", "context_words")


def combine(saved: list[SavedModel], names: Sequence[object]) -> SavedModel:
    """One ensemble of the loaded models ``saved`` (``names``: where each came from, for
    errors), without calibration; refused unless they share types, tokenizer and the
    :data:`SHARED_OPTIONS`. The first model's inference settings are the ensemble's."""
    if len(saved) < 2:
        raise ModelError(f"an ensemble needs at least 2 models, got {len(saved)}")
    for name, each in zip(names, saved):
        if isinstance(each.model, SpertEnsemble):
            raise ModelError(f"{name}: an ensemble cannot be a member of another ensemble")
    first = saved[0]
    signature = _tokenizer_signature(first.tokenizer)
    for name, other in zip(names[1:], saved[1:]):
        if other.types.to_dict() != first.types.to_dict():
            raise ModelError(f"{name}: its entity or relation types differ from {names[0]}'s")
        for option in SHARED_OPTIONS:
            mine, theirs = getattr(other.config, option), getattr(first.config, option)
            if mine != theirs:
                raise ModelError(
                    f"{name}: option {option} is {mine!r}, {names[0]} has {theirs!r}; "
                    "ensemble members must share it"
                )
        if _tokenizer_signature(other.tokenizer) != signature:
            raise ModelError(f"{name}: its tokenizer differs from {names[0]}'s")
        # Sentences are cut into encoder windows by the first member's input limit.
        positions = [m.encoder.config.max_position_embeddings for m in (first.model, other.model)]
        if positions[0] != positions[1]:
            raise ModelError(
                f"{name}: its encoder reads {positions[1]} positions, {names[0]}'s "
                f"{positions[0]}; ensemble members must share it"
            )
    models = [s.model for s in saved]
    return SavedModel(
        SpertEnsemble(models),  # type: ignore[arg-type]
        first.tokenizer,
        first.types,
        first.config,
        first.inference,
    )


def _tokenizer_signature(tokenizer: PreTrainedTokenizerBase) -> tuple[Any, ...]:
    """What must agree for two tokenizers to cut words into the same subwords: class,
    vocabulary, special tokens and a probe sentence's subwords (normalization, accents)."""
    probe = tokenizer.tokenize("Ünïcode MÜLLER's naïve café, 1990s e-mail")
    return (
        type(tokenizer).__name__,
        tokenizer.get_vocab(),
        tuple(tokenizer.all_special_ids),
        tuple(probe),
    )


def read_calibration(path: Path, types: Types) -> Calibration | None:
    """The calibration stored in the model directory ``path``, checked against its types; None
    when it has none."""
    file = Path(path) / CALIBRATION_FILE
    if not file.is_file():
        return None
    try:
        calibration = Calibration.from_dict(json.loads(file.read_text(encoding="utf-8")))
        calibration.check_types(types.entities, types.relation_names)
    except json.JSONDecodeError as e:
        raise ModelError(f"{file}: unreadable ({e})") from None
    except CalibrationError as e:
        raise ModelError(f"{file}: {e}") from None
    return calibration


def write_calibration(path: str | os.PathLike[str], calibration: Calibration | None) -> None:
    """Store ``calibration`` in the model directory ``path`` (atomically), or remove the
    stored one for None."""
    file = find_model_dir(path) / CALIBRATION_FILE
    if calibration is None:
        file.unlink(missing_ok=True)
    else:
        atomic_write_text(file, json.dumps(calibration.to_dict(), indent=2) + "\n")


def save_model_dir(path: str | os.PathLike[str], saved: SavedModel) -> None:
    """Write the model (or ensemble) directory atomically: a temporary folder, then a
    rename."""

    def fill(tmp: Path) -> None:
        if isinstance(saved.model, SpertEnsemble):
            names = []
            for i, member in enumerate(members(saved.model), 1):
                names.append(f"member_{i}")
                _write_model(tmp / names[-1], member, saved)
            meta = {"format_version": FORMAT_VERSION, "spert_version": __version__}
            text = json.dumps({**meta, "members": names}, indent=2)
            (tmp / ENSEMBLE_FILE).write_text(text, encoding="utf-8")
        else:
            _write_model(tmp, saved.model, saved)
        if saved.calibration is not None:
            text = json.dumps(saved.calibration.to_dict(), indent=2) + "\n"
            (tmp / CALIBRATION_FILE).write_text(text, encoding="utf-8")

    atomic_replace_dir(path, fill)


def _write_model(folder: Path, model: SpertModel, saved: SavedModel) -> None:
    """One model's encoder, tokenizer, heads and ``spert.json`` (its own architecture, the
    inference settings and types of ``saved``; no calibration) in ``folder``."""
    model.encoder.save_pretrained(folder / ENCODER_DIR, safe_serialization=True)
    saved.tokenizer.save_pretrained(folder / ENCODER_DIR)
    heads = {
        name: tensor.detach().contiguous().cpu()
        for name, tensor in model.state_dict().items()
        if not name.startswith("encoder.")
    }
    save_file(heads, str(folder / HEADS_FILE))
    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "spert_version": __version__,
        "config": {**model.config.to_dict(), **saved.inference.to_dict()},
        "types": saved.types.to_dict(),
    }
    (folder / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
