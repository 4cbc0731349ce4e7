"""The public Python API: ``SpERT.load(path).predict(sentences)``."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm
from transformers import AutoModel

from spert import __version__
from spert.candidates import Batch, candidate_spans, collate
from spert.config import ConfigError, SpertConfig
from spert.data import DataError, Sentence, Types, check_record
from spert.decoding import decode_batch
from spert.encoding import (
    EncodedSentence,
    SentenceEncoder,
    encoder_input_limit,
    load_tokenizer,
    resolve_encoder,
)
from spert.evaluation import evaluate
from spert.modeling import SpertModel

#: Version of the model directory layout; a directory of another version is refused.
FORMAT_VERSION = 1
META_FILE = "spert.json"
HEADS_FILE = "heads.safetensors"
ENCODER_DIR = "encoder"


class ModelError(RuntimeError):
    """A model directory that cannot be loaded."""


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class SpERT:
    """A trained (or freshly initialized) SpERT model with its tokenizer and types."""

    def __init__(
        self,
        model: SpertModel,
        tokenizer: Any,
        types: Types,
        config: SpertConfig,
        device: torch.device | str | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.types = types
        self.config = config
        self.device = torch.device(device) if device is not None else default_device()
        self.model.to(self.device)
        encoder_config = model.encoder.config
        limit = encoder_input_limit(
            tokenizer,
            encoder_config.max_position_embeddings,
            encoder_config.model_type,
            config.max_encoder_length,
        )
        self.sentence_encoder = SentenceEncoder(tokenizer, limit)
        pad = tokenizer.pad_token_id
        self.pad_token_id = pad if pad is not None else 0

    # -- construction --------------------------------------------------------------------
    @classmethod
    def create(
        cls, types: Types, config: SpertConfig, device: torch.device | str | None = None
    ) -> SpERT:
        """A new model on top of the configured pre-trained encoder."""
        path = resolve_encoder(config.encoder)
        try:
            tokenizer = load_tokenizer(path)
            encoder = AutoModel.from_pretrained(path)
        except OSError as e:
            raise ModelError(f"cannot load encoder {config.encoder!r}: {e}") from None
        model = SpertModel(encoder, len(types.entities), len(types.relations), config)
        return cls(model, tokenizer, types, config, device)

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str | None = None) -> SpERT:
        """Load a model directory written by :meth:`save`."""
        path = Path(path)
        meta_path = path / META_FILE
        if not meta_path.is_file():
            raise ModelError(f"{path}: not a SpERT model directory (no {META_FILE})")
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
            config = SpertConfig.from_dict(meta["config"], str(meta_path))
            types = Types.from_dict(meta["types"], str(meta_path))
        except (ConfigError, DataError, KeyError) as e:
            raise ModelError(f"{meta_path}: {e}") from None
        encoder_path = path / ENCODER_DIR
        tokenizer = load_tokenizer(encoder_path)
        encoder = AutoModel.from_pretrained(encoder_path)
        model = SpertModel(encoder, len(types.entities), len(types.relations), config)
        missing, unexpected = model.load_state_dict(load_file(str(path / HEADS_FILE)), strict=False)
        missing = [k for k in missing if not k.startswith("encoder.")]
        if missing or unexpected:
            raise ModelError(
                f"{path}: heads do not match (missing {missing}, unexpected {unexpected})"
            )
        model.eval()
        return cls(model, tokenizer, types, config, device)

    def save(self, path: str | Path) -> None:
        """Write the model directory atomically: a temporary folder, then a rename."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            self.model.encoder.save_pretrained(tmp / ENCODER_DIR, safe_serialization=True)
            self.tokenizer.save_pretrained(tmp / ENCODER_DIR)
            heads = {
                name: tensor.detach().contiguous().cpu()
                for name, tensor in self.model.state_dict().items()
                if not name.startswith("encoder.")
            }
            save_file(heads, str(tmp / HEADS_FILE))
            meta = {
                "format_version": FORMAT_VERSION,
                "spert_version": __version__,
                "config": self.config.to_dict(),
                "types": self.types.to_dict(),
            }
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
            old = None
            if path.exists():
                old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
                path.rename(old)
            tmp.rename(path)
            if old is not None:
                shutil.rmtree(old)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)

    # -- inference -----------------------------------------------------------------------
    def encode(self, sentences: Sequence[Sentence]) -> list[EncodedSentence]:
        return self.sentence_encoder.encode([s.tokens for s in sentences])

    def inference_batches(
        self, sentences: Sequence[Sentence], batch_size: int
    ) -> Iterator[tuple[list[int], Batch]]:
        """Length-bucketed batches of candidate spans, with the indices they hold."""
        order = np.argsort([len(s.tokens) for s in sentences], kind="stable")
        for i in range(0, len(order), batch_size):
            chunk = order[i : i + batch_size].tolist()
            encoded = self.encode([sentences[j] for j in chunk])
            spans = [candidate_spans(e, self.config.max_span_size) for e in encoded]
            yield chunk, collate(encoded, spans, self.pad_token_id)

    def predict(
        self,
        sentences: Sequence[Sentence | Sequence[str] | dict[str, Any]],
        batch_size: int | None = None,
        progress: bool = False,
    ) -> list[Sentence]:
        """Entities and relations for each pre-tokenized sentence, in input order.

        Takes token lists, Sentences or SpERT JSON records (their annotations are ignored).
        """
        inputs = [_as_sentence(s, i) for i, s in enumerate(sentences)]
        batch_size = batch_size or self.config.eval_batch_size
        results: list[Sentence | None] = [None] * len(inputs)
        was_training = self.model.training
        self.model.eval()
        try:
            with (
                torch.inference_mode(),
                tqdm(total=len(inputs), unit="sent", disable=not progress, desc="predict") as bar,
            ):
                for chunk, batch in self.inference_batches(inputs, batch_size):
                    decoded = decode_batch(
                        self.model,
                        batch.to(self.device),
                        self.types,
                        self.config.relation_threshold,
                        self.config.max_pairs,
                    )
                    for j, (entities, relations) in zip(chunk, decoded):
                        results[j] = Sentence(
                            list(inputs[j].tokens), entities, relations, inputs[j].orig_id
                        )
                    bar.update(len(chunk))
        finally:
            self.model.train(was_training)
        return [r for r in results if r is not None]

    def evaluate(
        self,
        data: Sequence[Sentence],
        no_overlap: bool = False,
        batch_size: int | None = None,
        progress: bool = False,
    ) -> tuple[dict[str, Any], list[Sentence]]:
        """Metrics against gold sentences, and the predictions they were computed from."""
        predictions = self.predict(data, batch_size=batch_size, progress=progress)
        return evaluate(data, predictions, self.types, no_overlap=no_overlap), predictions


def _as_sentence(item: Sentence | Sequence[str] | dict[str, Any], index: int) -> Sentence:
    if isinstance(item, Sentence):
        record: Any = {"tokens": item.tokens, "orig_id": item.orig_id}
    else:
        record = item if isinstance(item, dict) else {"tokens": list(item)}
    sentence, problems = check_record(record, index, "<input>", None, annotated=False)
    if problems or sentence is None:
        raise DataError(str(problems[0]))
    return sentence
