"""What to annotate next: rank unlabeled documents by how unsure the model is about them.

The measure (``uncertainty``, the default, and the task score of the Label Studio backend) is
the **length-normalized entropy of the model's decisions**: every predicted entity and
relation with (calibrated) score ``p`` adds the binary entropy ``H(p) = -p log2 p - (1-p)
log2 (1-p)`` in bits, and the sum is divided by the document's number of words.

Why this measure: a calibrated score is the probability that the prediction is right, so
``H(p)`` is the information one annotator's decision on it is expected to add (1 bit at
``p = 0.5``, nearly 0 for a sure prediction); summed over entities *and* relations, a document
counts every doubtful decision the annotator will settle, and relations (the scarce, hard
part of the task) get as much weight per decision as entities. Dividing by the words turns it
into information per word: annotation time grows with length, and an unnormalized sum would
always pick the longest documents. Scores of an uncalibrated model are used as they are (less
meaningful as probabilities; ``spert calibrate`` or training with ``calibrate`` fixes that).

``margin`` ranks by the single most ambiguous decision instead: ``1 - min |2p - 1|`` over the
document's predictions (the margin between the predicted label's probability and its
alternative, as in margin sampling); ``random`` draws documents uniformly (seeded), the
baseline.

A text that was chosen already is passed over (one of each: a duplicate, such as a repeated
dateline, teaches nothing new and would share the first one's score).

What neither sees: a document where the model predicts nothing scores 0 (sure), also when it
misses entities; the decisions come from decoded predictions only.
"""

from __future__ import annotations

import math
import random
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from spert.results import Document

STRATEGIES = ("uncertainty", "margin", "random")


def binary_entropy(p: float) -> float:
    """Entropy in bits of a yes/no decision taken with probability ``p``."""
    if p <= 0.0 or p >= 1.0:
        return 0.0
    return -(p * math.log2(p) + (1.0 - p) * math.log2(1.0 - p))


def decision_scores(sentences: Iterable[Any]) -> list[float]:
    """The scores of every predicted entity and relation of ``sentences`` (anything with
    ``entities`` and ``relations`` that have a ``score``: extracted or predicted sentences)."""
    scores = []
    for sentence in sentences:
        scores.extend(e.score for e in sentence.entities)
        scores.extend(r.score for r in sentence.relations)
    return scores


def uncertainty(sentences: Sequence[Any]) -> float:
    """Summed binary entropy of the predictions of ``sentences`` (a document's), per word (see
    the module docstring); 0 without words."""
    words = sum(len(s.tokens) for s in sentences)
    if words == 0:
        return 0.0
    return sum(binary_entropy(p) for p in decision_scores(sentences)) / words


def margin(sentences: Sequence[Any]) -> float:
    """``1 - min |2p - 1|`` over the predictions of ``sentences``: 1 when one decision is a coin
    flip; 0 without predictions."""
    scores = decision_scores(sentences)
    if not scores:
        return 0.0
    return 1.0 - min(abs(2.0 * p - 1.0) for p in scores)


def score(sentences: Sequence[Any], strategy: str = "uncertainty") -> float:
    """How much annotating a document (its predicted ``sentences``) is worth by ``strategy``
    (higher: annotate first); ``random`` has no per-document score (0)."""
    if strategy == "uncertainty":
        return uncertainty(sentences)
    if strategy == "margin":
        return margin(sentences)
    if strategy == "random":
        return 0.0
    raise ValueError(f"unknown strategy {strategy!r}; choose {', '.join(STRATEGIES)}")


def document_uncertainty(document: Document) -> float:
    """:func:`uncertainty` of an extracted Document: the backend's task score."""
    return uncertainty(document.sentences)


@dataclass
class Selected:
    """A chosen document: its position in the input, rank (1 = annotate first) and score."""

    index: int
    rank: int
    score: float


def rank(
    scores: Sequence[float],
    budget: int,
    strategy: str,
    seed: int = 0,
    keys: Sequence[Hashable] | None = None,
) -> list[Selected]:
    """The ``budget`` items to annotate first, best first: highest score (ties: input order),
    or a seeded random draw for ``random``. With ``keys`` (e.g. the texts), an item whose key
    was chosen already is passed over: annotating a duplicate teaches nothing new, and a
    corpus's repeated lines (datelines, boilerplate) share one score."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose {', '.join(STRATEGIES)}")
    if budget < 1:
        raise ValueError(f"budget must be at least 1, got {budget}")
    if strategy == "random":
        order = list(range(len(scores)))
        random.Random(seed).shuffle(order)
    else:
        order = sorted(range(len(scores)), key=lambda i: -scores[i])
    if keys is not None:
        seen: set[Hashable] = set()
        unique = []
        for i in order:
            if keys[i] not in seen:
                seen.add(keys[i])
                unique.append(i)
        order = unique
    return [Selected(i, r, scores[i]) for r, i in enumerate(order[:budget], 1)]


def rank_documents(
    documents: Sequence[Document], budget: int, strategy: str, seed: int = 0
) -> list[Selected]:
    """:func:`rank` of extracted Documents by ``strategy``, one of each text (but ``random``,
    the baseline, draws from all)."""
    scores = [score(d.sentences, strategy) for d in documents]
    keys = None if strategy == "random" else [" ".join(d.text.split()) for d in documents]
    return rank(scores, budget, strategy, seed, keys)


def select(
    model: Any,
    inputs: Iterable[Any],
    budget: int,
    strategy: str = "uncertainty",
    seed: int = 0,
    batch_size: int | None = None,
    progress: bool = False,
) -> tuple[list[Selected], list[Document]]:
    """Predict ``inputs`` (what ``SpERT.extract`` takes) with ``model`` and choose ``budget``
    of them, one of each text (see :func:`rank_documents`); also returns every predicted
    Document. ``random`` predicts nothing (and keeps duplicates: it is the baseline)."""
    items = list(inputs)
    if strategy == "random":
        documents = [Document("") for _ in items]
    else:
        stream = model.extract_stream(items, batch_size=batch_size)
        bar = tqdm(stream, total=len(items), unit="doc", disable=not progress, desc="select")
        with bar:
            documents = list(bar)
    return rank_documents(documents, budget, strategy, seed), documents
