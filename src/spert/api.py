"""The public Python API: ``SpERT.load(path).predict(sentences)``."""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoModel

from spert import __version__
from spert.candidates import Batch, candidate_spans, collate
from spert.config import ConfigError, SpertConfig
from spert.data import Context, DataError, Sentence, Types, check_record, document_contexts
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
from spert.results import Document, ExtractedEntity, ExtractedRelation, ExtractedSentence
from spert.text import TextSentence, join_tokens, split_sentences

#: Version of the model directory layout; a directory of another version is refused.
FORMAT_VERSION = 1
META_FILE = "spert.json"
HEADS_FILE = "heads.safetensors"
ENCODER_DIR = "encoder"
#: Where the encoder runs: PyTorch, or onnxruntime on the CPU (see spert.onnx_runtime).
RUNTIMES = ("torch", "onnx", "onnx-int8")


class ModelError(RuntimeError):
    """A model directory that cannot be loaded."""


#: What ``extract`` takes per document: a text, a token list (pre-tokenized), an ``(id, text)``
#: or ``(id, tokens)`` tuple, or a mapping with "text" or "tokens" and optionally "id".
DocumentInput = str | Sequence[str] | tuple[Any, str | Sequence[str]] | Mapping[str, Any]


_SURROGATE = re.compile("[\ud800-\udfff]")


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_model_dir() -> Path:
    """Where ``spert demo`` puts its model: ``$SPERT_HOME/default-model`` if SPERT_HOME is set,
    else ``~/.cache/spert/default-model``."""
    home = os.environ.get("SPERT_HOME")
    root = Path(home).expanduser() if home else Path.home() / ".cache" / "spert"
    return root / "default-model"


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
        self.runtime = "torch"  # or "onnx" / "onnx-int8": see load()
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
        """A new model on top of the configured encoder, initialized as ``config.encoder_init``
        says: pre-trained weights (fine-tuned or, ``frozen``, never updated) or ``random``
        ones (the encoder's architecture, trained from scratch; drawn from torch's RNG)."""
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
        model = SpertModel(encoder, len(types.entities), len(types.relations), config)
        return cls(model, tokenizer, types, config, device)

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        device: torch.device | str | None = None,
        runtime: str = "torch",
    ) -> SpERT:
        """Load a model directory written by :meth:`save`; without a path, the default model
        (:func:`default_model_dir`, written by ``spert demo``).

        ``runtime="onnx"`` or ``"onnx-int8"`` runs the encoder in onnxruntime on the CPU from
        the files ``spert export-onnx`` writes (see :mod:`spert.onnx_runtime`)."""
        if runtime not in RUNTIMES:
            raise ModelError(f"unknown runtime {runtime!r}; choose {', '.join(RUNTIMES)}")
        if runtime != "torch" and device is not None and torch.device(device).type != "cpu":
            raise ModelError(f"runtime {runtime} runs on the CPU only, not on {device}")
        if path is None:
            path = default_model_dir()
            if not (path / META_FILE).is_file():
                raise ModelError(
                    f"no default model in {path}: run `spert demo` first to create it, "
                    "or give a model directory"
                )
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
        tokenizer = load_tokenizer(encoder_path, config.lowercase)
        encoder = AutoModel.from_pretrained(encoder_path)
        model = SpertModel(encoder, len(types.entities), len(types.relations), config)
        missing, unexpected = model.load_state_dict(load_file(str(path / HEADS_FILE)), strict=False)
        missing = [k for k in missing if not k.startswith("encoder.")]
        if missing or unexpected:
            raise ModelError(
                f"{path}: heads do not match (missing {missing}, unexpected {unexpected})"
            )
        if runtime != "torch":
            from spert.onnx_runtime import OnnxEncoder, onnx_path

            model.encoder = OnnxEncoder(onnx_path(path, runtime), encoder.config)
            device = "cpu"
        model.eval()
        spert = cls(model, tokenizer, types, config, device)
        spert.runtime = runtime
        return spert

    def save(self, path: str | Path) -> None:
        """Write the model directory atomically: a temporary folder, then a rename."""
        if self.runtime != "torch":
            raise ModelError(f"a model loaded with runtime {self.runtime} cannot be saved")
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
    ) -> list[Sentence]:
        """Entities and relations for each pre-tokenized sentence, in input order.

        Takes token lists, Sentences or SpERT JSON records (their annotations are ignored).
        With ``config.context_words``, sentences with a ``doc_id`` are encoded with the words
        around them in their document (its other sentences, consecutive in ``sentences``);
        ``contexts`` gives them instead (words before, words after each sentence; at most
        ``context_words`` of each are used, none for 0), e.g. for a share of a larger input:
        the :meth:`document_contexts` of the whole input, sliced like the share.
        """
        inputs = [_as_sentence(s, i) for i, s in enumerate(sentences)]
        words = self.config.context_words
        if contexts is None:
            contexts = self.document_contexts(inputs)
        elif len(contexts) != len(inputs):
            raise DataError(f"{len(contexts)} contexts for {len(inputs)} sentences")
        elif words <= 0:
            contexts = None  # the model was trained without context
        else:
            contexts = [(list(left)[-words:], list(right)[:words]) for left, right in contexts]
        return self._predict(inputs, contexts, batch_size, progress)

    def _predict(
        self,
        inputs: Sequence[Sentence],
        contexts: Sequence[Context] | None,
        batch_size: int | None = None,
        progress: bool = False,
    ) -> list[Sentence]:
        batch_size = batch_size or self.config.eval_batch_size
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
                        self.config.relation_threshold,
                        self.config.max_pairs,
                    )
                    for j, (entities, relations) in zip(chunk, decoded):
                        source = inputs[j]
                        results[j] = Sentence(
                            list(source.tokens),
                            entities,
                            relations,
                            source.orig_id,
                            source.doc_id,
                        )
                    bar.update(len(chunk))
        finally:
            self.model.train(was_training)
        return [r for r in results if r is not None]

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
        each Document, in input order, once all its sentences are predicted. Sentences are
        predicted in chunks of ``32 * batch_size`` (and at most that many documents are held),
        so memory does not grow with the input (beyond the Document being built)."""
        batch_size = batch_size or self.config.eval_batch_size
        if batch_size < 1:
            raise DataError(f"batch size must be at least 1, got {batch_size}")
        chunk = 32 * batch_size
        pending: deque[Document] = deque()  # read, not yet yielded; in input order
        # Sentences awaiting prediction, with their document context.
        buffer: list[tuple[Document, TextSentence, Context]] = []
        for index, item in enumerate(texts):
            doc_id, text, sentences = self._document_input(item, index)
            pending.append(Document(text, [], doc_id))
            for sentence, context in sentences_in_context(sentences, self.config.context_words):
                buffer.append((pending[-1], sentence, context))
                if len(buffer) >= chunk:
                    self._extract_into(buffer, batch_size)
                    buffer = []
                    while len(pending) > 1:  # all but the one still being read are done
                        yield pending.popleft()
            if buffer and len(pending) >= chunk:  # many short or empty documents
                self._extract_into(buffer, batch_size)
                buffer = []
            if not buffer:
                while pending:
                    yield pending.popleft()
        if buffer:
            self._extract_into(buffer, batch_size)
        while pending:
            yield pending.popleft()

    def _document_input(
        self, item: Any, index: int, doc_id: Any = None
    ) -> tuple[Any, str, Iterable[TextSentence]]:
        """(id, text, sentences) of one input document."""
        max_words = self.config.max_sentence_words
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise DataError(f"input {index}: unpaired surrogates in the text (not Unicode)")
            return doc_id, item, split_sentences(item, max_words)
        if isinstance(item, Mapping):
            content = item.get("text", item.get("tokens"))
            if content is None:
                raise DataError(f"input {index}: a record needs a 'text' or 'tokens' field")
            if not isinstance(content, (str, list)):
                raise DataError(f"input {index}: 'text' must be a string, 'tokens' a list")
            return self._document_input(content, index, item.get("id"))
        if isinstance(item, tuple):
            if len(item) != 2 or not isinstance(item[1], (str, list)):
                raise DataError(f"input {index}: a tuple must be (id, text) or (id, tokens)")
            return self._document_input(item[1], index, item[0])
        if isinstance(item, Sequence):
            try:
                text, sentences = join_tokens(item, max_words)
            except ValueError as e:
                raise DataError(f"input {index}: {e}") from None
            if _SURROGATE.search(text):
                raise DataError(f"input {index}: unpaired surrogates in the tokens (not Unicode)")
            return doc_id, text, sentences
        raise DataError(
            f"input {index}: expected a text, a token list or an (id, text) tuple, "
            f"got {type(item).__name__}"
        )

    def _extract_into(
        self, buffer: list[tuple[Document, TextSentence, Context]], batch_size: int
    ) -> None:
        """Predict the buffered sentences and append them to their Documents, in order."""
        inputs = [_as_sentence(s.tokens, i) for i, (_, s, _) in enumerate(buffer)]
        contexts = [c for _, _, c in buffer] if self.config.context_words > 0 else None
        predictions = self._predict(inputs, contexts, batch_size)
        for (doc, sentence, _), predicted in zip(buffer, predictions):
            doc.sentences.append(_extracted_sentence(doc.text, sentence, predicted))

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
        record: Any = {"tokens": item.tokens, "orig_id": item.orig_id, "doc_id": item.doc_id}
    else:
        record = item if isinstance(item, dict) else {"tokens": list(item)}
    sentence, problems = check_record(record, index, "<input>", None, annotated=False)
    if problems or sentence is None:
        raise DataError(str(problems[0]))
    return sentence


def sentences_in_context(
    sentences: Iterable[TextSentence], words: int
) -> Iterator[tuple[TextSentence, Context]]:
    """The sentences of one document, each with up to ``words`` words before and after it from
    its neighbours (none for ``words == 0``). Lazy: reads ahead only as far as the words after
    the sentence need."""
    ahead: deque[TextSentence] = deque()
    before: list[str] = []  # the last words before ahead[0]
    source = iter(sentences)
    exhausted = False
    while True:
        # Read until the sentences after ahead[0] hold enough words (or there are no more).
        while not exhausted and (
            not ahead or sum(len(s.tokens) for s in ahead) - len(ahead[0].tokens) < words
        ):
            sentence = next(source, None)
            if sentence is None:
                exhausted = True
            else:
                ahead.append(sentence)
        if not ahead:
            return
        sentence = ahead.popleft()
        if words <= 0:
            yield sentence, ([], [])
            continue
        after = list(islice((w for s in ahead for w in s.tokens), words))
        yield sentence, (before, after)
        before = (before + list(sentence.tokens))[-words:]


def _extracted_sentence(
    text: str, sentence: TextSentence, predicted: Sentence
) -> ExtractedSentence:
    """A predicted sentence with character offsets into the document ``text``."""
    offsets = sentence.offsets
    entities = []
    for e in predicted.entities:
        start, end = offsets[e.start][0], offsets[e.end - 1][1]
        score = float(e.score) if e.score is not None else 1.0
        entities.append(ExtractedEntity(e.type, text[start:end], start, end, e.start, e.end, score))
    relations = [
        ExtractedRelation(r.type, r.head, r.tail, float(r.score) if r.score is not None else 1.0)
        for r in predicted.relations
    ]
    return ExtractedSentence(
        text[sentence.start : sentence.end],
        sentence.start,
        sentence.end,
        list(sentence.tokens),
        list(offsets),
        entities,
        relations,
    )
