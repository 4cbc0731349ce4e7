"""The inference object: ``SpERT.load(path).predict(sentences)`` and ``.extract(text)``.

A thin facade: the model directory is read and written by :mod:`spert.model.directory`,
sentences are encoded, batched and decoded by :mod:`spert.model`, raw text is streamed by
:mod:`spert.runtime.extraction`, and metrics come from :mod:`spert.evaluation`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoModel, PreTrainedTokenizerBase

from spert.config import RUNTIMES, TORCH_RUNTIMES, InferenceConfig, ModelConfig, SpertConfig
from spert.data import Context, DataError, Sentence, Types, check_record, document_contexts
from spert.evaluation import evaluate
from spert.model.calibration import Calibration
from spert.model.candidates import Batch, candidate_spans, collate
from spert.model.decoding import decode_batch
from spert.model.directory import (
    ModelError,
    SavedModel,
    combine,
    find_model_dir,
    load_model_dir,
    save_model_dir,
)
from spert.model.encoding import (
    EncodedSentence,
    SentenceEncoder,
    encoder_input_limit,
    load_tokenizer,
    resolve_encoder,
)
from spert.model.modeling import SpertEnsemble, SpertModel, default_device, members
from spert.model.onnx import OnnxEncoder, onnx_path
from spert.model.precision import bf16_weights
from spert.results import Document
from spert.runtime.extraction import DocumentInput, extract_stream


class _Own(Enum):
    CALIBRATION = "own"


#: ``SpERT.predict(calibration=OWN_CALIBRATION)``, the default: the object's own calibration.
OWN_CALIBRATION = _Own.CALIBRATION


class SpERT:
    """A trained (or freshly initialized) SpERT model with its tokenizer and types."""

    def __init__(
        self,
        model: SpertModel | SpertEnsemble,
        tokenizer: PreTrainedTokenizerBase,
        types: Types,
        config: ModelConfig,
        device: torch.device | str | None = None,
        calibration: Calibration | None = None,
        inference: InferenceConfig | None = None,
    ) -> None:
        self.model = model
        #: "torch", "torch-bf16" (the encoder's weights in bfloat16), "onnx" or "onnx-int8":
        #: see load().
        self.runtime = "torch"
        #: Applied when predicting (see spert.model.calibration); None: raw scores, one
        #: relation threshold (``inference.relation_threshold``). May be set or cleared.
        self.calibration = calibration
        self.tokenizer = tokenizer
        self.types = types
        #: The architecture (fixed by the weights).
        self.config = config
        #: How to predict: thresholds, output caps, batch sizes (the model directory's, or the
        #: defaults). May be replaced.
        self.inference = inference if inference is not None else InferenceConfig()
        self.device = torch.device(device) if device is not None else default_device()
        self.model.to(self.device)
        encoder_config = members(model)[0].encoder.config  # an ensemble's share one tokenizer
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
        """A new model on top of the configured encoder, initialized as ``config.encoder_init``
        says: pre-trained weights (fine-tuned or, ``frozen``, never updated) or ``random``
        ones (the encoder's architecture, trained from scratch; drawn from torch's RNG); with
        ``freeze_word_embeddings``, its subword embedding matrix is never updated."""
        path = resolve_encoder(config.encoder)
        try:
            tokenizer = load_tokenizer(path, config.lowercase)
            if config.encoder_init == "random":
                encoder = AutoModel.from_config(AutoConfig.from_pretrained(path))
            else:
                encoder = AutoModel.from_pretrained(path)
        except OSError as e:
            raise ModelError(f"cannot load encoder {config.encoder!r}: {e}") from None
        if config.encoder_init == "frozen":
            # No encoder parameter needs a gradient, so autograd records nothing in the encoder
            # pass (it costs what inference costs) and the optimizer skips these parameters.
            encoder.requires_grad_(False)
        elif config.freeze_word_embeddings:  # the subword embedding matrix alone
            encoder.get_input_embeddings().requires_grad_(False)
        model_config = config.model_config()
        model = SpertModel(encoder, len(types.entities), len(types.relations), model_config)
        return cls(
            model, tokenizer, types, model_config, device, inference=config.inference_config()
        )

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        device: torch.device | str | None = None,
        runtime: str = "torch",
        calibration: bool = True,
    ) -> SpERT:
        """Load a model directory written by :meth:`save`; without a path, the default model
        (:func:`spert.model.directory.default_model_dir`, written by ``spert demo``).

        ``runtime="torch-bf16"`` casts the encoder's weights to bfloat16 (the span and pair
        heads stay float32) where the device computes in bfloat16 natively (CPUs with
        AVX512-BF16 or AMX, recent GPUs; elsewhere float32, with a warning); such a model
        cannot be saved. ``runtime="onnx"`` or ``"onnx-int8"`` runs the encoder in onnxruntime
        on the CPU from the files ``spert export-onnx`` writes (see :mod:`spert.model.onnx`). The
        model's calibration (``calibration.json``, from ``spert calibrate``) is used unless
        ``calibration=False``."""
        if runtime not in RUNTIMES:
            raise ModelError(f"unknown runtime {runtime!r}; choose {', '.join(RUNTIMES)}")
        onnx = runtime not in TORCH_RUNTIMES
        if onnx and device is not None and torch.device(device).type != "cpu":
            raise ModelError(f"runtime {runtime} runs on the CPU only, not on {device}")
        path = find_model_dir(path)
        saved = load_model_dir(path, calibration)
        if onnx and isinstance(saved.model, SpertEnsemble):
            raise ModelError(f"{path}: an ensemble runs with the torch runtimes only")
        if onnx:
            encoder_config = saved.model.encoder.config
            saved.model.encoder = OnnxEncoder(onnx_path(path, runtime), encoder_config)
            device = "cpu"
        spert = cls(
            saved.model,
            saved.tokenizer,
            saved.types,
            saved.config,
            device,
            saved.calibration,
            saved.inference,
        )
        if runtime == "torch-bf16" and not all(
            bf16_weights(member.encoder, spert.device, "predicting")
            for member in members(spert.model)
        ):
            runtime = "torch"  # float32 after all: nothing was lost, it may be saved
        spert.runtime = runtime
        return spert

    @classmethod
    def ensemble(
        cls,
        models: Sequence[SpERT],
        device: torch.device | str | None = None,
        names: Sequence[str] | None = None,
    ) -> SpERT:
        """One model that averages the entity and relation probabilities of ``models``
        (trained alike: same types, tokenizer and span settings, e.g. other seeds), without
        calibration (fit one with :func:`spert.calibration.calibrate`); the first model's
        inference settings. It shares the models' modules, which move to ``device`` (default:
        the first model's). ``names`` (e.g. their directories) name the models in errors.
        ``save`` writes it as an ensemble directory."""
        names = (
            list(names)
            if names is not None
            else [f"ensemble member {i + 1}" for i in range(len(models))]
        )
        for name, model in zip(names, models):
            if model.runtime != "torch":
                raise ModelError(f"{name} runs {model.runtime}: load it with runtime torch")
        saved = combine(
            [SavedModel(m.model, m.tokenizer, m.types, m.config, m.inference) for m in models],
            names,
        )
        if device is None and models:
            device = models[0].device
        return cls(
            saved.model, saved.tokenizer, saved.types, saved.config, device, None, saved.inference
        )

    def save(self, path: str | Path) -> None:
        """Write the model directory atomically: a temporary folder, then a rename."""
        if self.runtime != "torch":  # bfloat16 weights would be saved with their precision lost
            raise ModelError(
                f"a model loaded with runtime {self.runtime} cannot be saved: load it with "
                "runtime torch"
            )
        save_model_dir(
            path,
            SavedModel(
                self.model,
                self.tokenizer,
                self.types,
                self.config,
                self.inference,
                self.calibration,
            ),
        )

    # -- inference -----------------------------------------------------------------------
    def document_contexts(self, sentences: Sequence[Sentence]) -> list[Context] | None:
        """Each sentence's document context (words before, words after), as
        ``config.context_words`` says (see :func:`spert.data.document_contexts`); None for 0."""
        if self.config.context_words <= 0:
            return None
        return document_contexts(sentences, self.config.context_words)

    def encode(
        self, sentences: Sequence[Sentence], contexts: Sequence[Context] | None = None
    ) -> list[EncodedSentence]:
        """Subword encodings; with ``config.context_words``, each sentence is encoded with the
        words around it in its document (``contexts`` given, or from the sentences' doc_ids)."""
        if contexts is None:
            contexts = self.document_contexts(sentences)
        return self.sentence_encoder.encode([s.tokens for s in sentences], contexts)

    def inference_batches(
        self,
        sentences: Sequence[Sentence],
        batch_size: int,
        contexts: Sequence[Context] | None = None,
    ) -> Iterator[tuple[list[int], Batch]]:
        """Length-bucketed batches of candidate spans, with the indices they hold. Document
        contexts come from the whole input (``contexts`` or the sentences' doc_ids), before
        sentences are reordered."""
        if contexts is None:
            contexts = self.document_contexts(sentences)
        lengths = [len(s.tokens) for s in sentences]
        if contexts is not None:
            lengths = [n + len(left) + len(right) for n, (left, right) in zip(lengths, contexts)]
        order = np.argsort(lengths, kind="stable")
        for i in range(0, len(order), batch_size):
            chunk = order[i : i + batch_size].tolist()
            encoded = self.sentence_encoder.encode(
                [sentences[j].tokens for j in chunk],
                None if contexts is None else [contexts[j] for j in chunk],
            )
            spans = [candidate_spans(e, self.config.max_span_size) for e in encoded]
            yield chunk, collate(encoded, spans, self.pad_token_id)

    def predict(
        self,
        sentences: Sequence[Sentence | Sequence[str] | dict[str, Any]],
        batch_size: int | None = None,
        progress: bool = False,
        contexts: Sequence[Context] | None = None,
        relation_threshold: float | None = None,
        calibration: Calibration | None | _Own = OWN_CALIBRATION,
    ) -> list[Sentence]:
        """Entities and relations for each pre-tokenized sentence, in input order.

        Takes token lists, Sentences or SpERT JSON records (their annotations are ignored).
        With ``config.context_words``, sentences with a ``doc_id`` are encoded with the words
        around them in their document (its other sentences, consecutive in ``sentences``);
        ``contexts`` gives them instead (words before, words after each sentence; at most
        ``context_words`` of each are used, none for 0), e.g. for a share of a larger input:
        the :meth:`document_contexts` of the whole input, sliced like the share.
        ``relation_threshold`` replaces every relation threshold (the calibration's per-type
        ones, or ``inference.relation_threshold``) with one cut-off on the (calibrated) score.
        ``calibration`` is applied instead of the object's own :attr:`calibration` (None: raw
        scores), e.g. to compare the two without changing the object; one fitted for other
        types is refused (CalibrationError).
        """
        if calibration is OWN_CALIBRATION:
            calibration = self.calibration
        elif calibration is not None:
            calibration.check_types(self.types.entities, self.types.relation_names)
        inputs = [_as_sentence(s, i) for i, s in enumerate(sentences)]
        thresholds = self.relation_thresholds(relation_threshold, calibration)
        words = self.config.context_words
        if contexts is None:
            contexts = self.document_contexts(inputs)
        elif len(contexts) != len(inputs):
            raise DataError(f"{len(contexts)} contexts for {len(inputs)} sentences")
        elif words <= 0:
            contexts = None  # the model was trained without context
        else:
            contexts = [(list(left)[-words:], list(right)[:words]) for left, right in contexts]
        batch_size = batch_size or self.inference.eval_batch_size
        results: list[Sentence | None] = [None] * len(inputs)
        was_training = self.model.training
        self.model.eval()
        try:
            with (
                torch.inference_mode(),
                tqdm(total=len(inputs), unit="sent", disable=not progress, desc="predict") as bar,
            ):
                for chunk, batch in self.inference_batches(inputs, batch_size, contexts):
                    decoded = decode_batch(
                        self.model,
                        batch.to(self.device),
                        self.types,
                        thresholds,
                        self.inference.max_pairs,
                        calibration,
                        self.inference.max_entities_per_sentence,
                        self.inference.max_relations_per_sentence,
                    )
                    for j, (entities, relations) in zip(chunk, decoded):
                        source = inputs[j]
                        results[j] = Sentence(
                            list(source.tokens), entities, relations, source.orig_id, source.doc_id
                        )
                    bar.update(len(chunk))
        finally:
            self.model.train(was_training)
        return [r for r in results if r is not None]

    def relation_thresholds(
        self,
        override: float | None = None,
        calibration: Calibration | None | _Own = OWN_CALIBRATION,
    ) -> list[float]:
        """The cut-off of each relation type: ``override`` for all, else the calibration's
        (``calibration``, by default the object's own), else ``inference.relation_threshold``."""
        if calibration is OWN_CALIBRATION:
            calibration = self.calibration
        if override is not None:
            if not 0.0 <= override <= 1.0:
                raise ValueError(f"relation_threshold must lie in [0, 1], got {override}")
            return [float(override)] * len(self.types.relations)
        if calibration is not None:
            return list(calibration.relation_thresholds)
        return [self.inference.relation_threshold] * len(self.types.relations)

    def extract(
        self,
        texts: str | Iterable[DocumentInput],
        batch_size: int | None = None,
        progress: bool = False,
    ) -> Document | list[Document]:
        """Entities and relations in raw text: a Document for a string, a list of Documents
        for a list (of texts, token lists, ``(id, text)`` tuples, ...; see DocumentInput).

        A token list is pre-tokenized input: its text is the tokens joined by single spaces.
        With ``config.context_words``, each sentence is encoded with the words around it in
        its document.
        """
        if isinstance(texts, str):
            return next(iter(self.extract_stream([texts], batch_size=batch_size)))
        items = texts if isinstance(texts, Sequence) else list(texts)
        stream = self.extract_stream(items, batch_size=batch_size)
        bar = tqdm(stream, total=len(items), unit="doc", disable=not progress, desc="extract")
        with bar:
            return list(bar)

    def extract_stream(
        self, texts: Iterable[DocumentInput], batch_size: int | None = None
    ) -> Iterator[Document]:
        """Like :meth:`extract` for a list, but lazily: reads ``texts`` as it goes and yields
        each Document, in input order, once all its sentences are predicted; memory does not
        grow with the input (see :func:`spert.runtime.extraction.extract_stream`)."""
        size = batch_size or self.inference.eval_batch_size
        return extract_stream(
            texts,
            lambda tokens, contexts: self.predict(tokens, size, contexts=contexts),
            size,
            self.inference.max_sentence_words,
            self.config.context_words,
        )

    def evaluate(
        self,
        data: Sequence[Sentence],
        no_overlap: bool = False,
        batch_size: int | None = None,
        progress: bool = False,
        relation_threshold: float | None = None,
    ) -> tuple[dict[str, Any], list[Sentence]]:
        """Metrics against gold sentences, and the predictions they were computed from
        (``relation_threshold``: see :meth:`predict`)."""
        predictions = self.predict(
            data, batch_size=batch_size, progress=progress, relation_threshold=relation_threshold
        )
        return evaluate(data, predictions, self.types, no_overlap=no_overlap), predictions


def _as_sentence(item: Sentence | Sequence[str] | dict[str, Any], index: int) -> Sentence:
    if isinstance(item, Sentence):
        record: Any = {"tokens": item.tokens, "orig_id": item.orig_id, "doc_id": item.doc_id}
    else:
        record = item if isinstance(item, dict) else {"tokens": list(item)}
    sentence, problems = check_record(record, index, "<input>", None, annotated=False)
    if problems or sentence is None:
        raise DataError(str(problems[0]))
    return sentence
