"""Corpus-level evaluation: the gold graph against the predicted graph, edge by edge.

A gold dataset (SpERT JSON: one sentence a record) is grouped into documents of
``group_size`` consecutive sentences (document ``i`` holds sentences ``i*n .. i*n+n-1``, id
``str(i)``); :func:`gold_texts` gives the same documents as raw text for ``spert extract``, so
that the predicted documents carry the same ids. Both graphs are built with the same merging
(:mod:`spert.graph.merge`); an edge is a triple (head node, type, tail node), where a node is
a type and a normalized name, so a predicted triple is right when its type and both
normalized names (after the merges) and entity types match the gold. Precision and recall
are also given for the edges at or above confidence cut-offs: a precision-recall curve.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spert.config import GraphConfig
from spert.data import Sentence
from spert.data.matching import precision_recall_f1
from spert.graph.source import SourceDocument
from spert.graph.store import GraphStore, build_graph
from spert.render.figures import new_figure, save_png
from spert.results import Document, ExtractedEntity, ExtractedRelation, ExtractedSentence


def _groups(sentences: Sequence[Sentence], group_size: int) -> Iterator[tuple[str, list]]:
    if group_size < 1:
        raise ValueError(f"group size must be at least 1, got {group_size}")
    for start in range(0, len(sentences), group_size):
        yield str(start // group_size), list(sentences[start : start + group_size])


def gold_document(sentences: Sequence[Sentence], doc_id: str) -> Document:
    """Gold sentences as one Document: tokens joined by spaces, sentences by one space; every
    mention scored 1."""
    parts: list[ExtractedSentence] = []
    pos = 0
    for sentence in sentences:
        offsets = []
        for token in sentence.tokens:
            offsets.append((pos, pos + len(token)))
            pos += len(token) + 1
        text = " ".join(sentence.tokens)
        start = offsets[0][0] if offsets else pos
        entities = [
            ExtractedEntity(
                e.type,
                " ".join(sentence.tokens[e.start : e.end]),
                offsets[e.start][0],
                offsets[e.end - 1][1],
                e.start,
                e.end,
                1.0,
            )
            for e in sentence.entities
        ]
        relations = [ExtractedRelation(r.type, r.head, r.tail, 1.0) for r in sentence.relations]
        parts.append(
            ExtractedSentence(
                text, start, start + len(text), list(sentence.tokens), offsets, entities, relations
            )
        )
    return Document(" ".join(s.text for s in parts), parts, doc_id)


def gold_documents(sentences: Sequence[Sentence], group_size: int) -> Iterator[SourceDocument]:
    """The gold dataset as documents of ``group_size`` sentences (see the module docstring)."""
    for doc_id, group in _groups(sentences, group_size):
        yield SourceDocument(doc_id, gold_document(group, doc_id), f"gold document {doc_id}")


def gold_texts(sentences: Sequence[Sentence], group_size: int) -> Iterator[dict[str, str]]:
    """The gold documents as ``{"id", "text"}`` records: the input of ``spert extract``."""
    for doc_id, group in _groups(sentences, group_size):
        yield {"id": doc_id, "text": gold_document(group, doc_id).text}


@dataclass
class CurvePoint:
    cutoff: float
    edges: int
    correct: int
    precision: float
    recall: float
    f1: float


@dataclass
class GraphEvaluation:
    """Triple precision, recall and F1 over all predicted edges, and the curve by confidence."""

    gold_edges: int
    predicted_edges: int
    correct: int
    precision: float
    recall: float
    f1: float
    curve: list[CurvePoint] = field(default_factory=list)  # one point per distinct confidence
    gold_stats: dict[str, int] = field(default_factory=dict)
    predicted_stats: dict[str, int] = field(default_factory=dict)

    def at(self, cutoff: float) -> CurvePoint:
        """Precision and recall of the edges with confidence >= ``cutoff``."""
        kept = [p for p in self.curve if p.cutoff >= cutoff]
        if not kept:
            return CurvePoint(cutoff, 0, 0, 0.0, 0.0, 0.0)
        point = kept[-1]
        return CurvePoint(
            cutoff, point.edges, point.correct, point.precision, point.recall, point.f1
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "gold_edges": self.gold_edges,
            "predicted_edges": self.predicted_edges,
            "correct": self.correct,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "gold_graph": self.gold_stats,
            "predicted_graph": self.predicted_stats,
            "curve": [vars(p) for p in self.curve],
        }


def _prf(correct: int, predicted: int, gold: int) -> tuple[float, float, float]:
    """Precision, recall and F1 as plain floats, computed as everywhere else in spert."""
    p, r, f = precision_recall_f1(correct, predicted - correct, gold - correct)
    return float(p), float(r), float(f)


def compare_edges(
    gold: set[tuple[str, str, str]], predicted: Sequence[tuple[tuple[str, str, str], float]]
) -> GraphEvaluation:
    """Evaluate predicted (triple, confidence) pairs against gold triples."""
    ranked = sorted(predicted, key=lambda item: -item[1])
    curve: list[CurvePoint] = []
    correct = 0
    for i, (triple, confidence) in enumerate(ranked):
        correct += triple in gold
        last_of_cutoff = i + 1 == len(ranked) or ranked[i + 1][1] < confidence
        if last_of_cutoff:
            p, r, f = _prf(correct, i + 1, len(gold))
            curve.append(CurvePoint(confidence, i + 1, correct, p, r, f))
    p, r, f = _prf(correct, len(ranked), len(gold))
    return GraphEvaluation(len(gold), len(ranked), correct, p, r, f, curve)


def _triples(store: GraphStore) -> list[tuple[tuple[str, str, str], float]]:
    return [((e["head"], e["type"], e["tail"]), e["confidence"]) for e in store.edges()]


def evaluate_graphs(gold_store: str | os.PathLike[str], predicted_store: str | os.PathLike[str]):
    """Compare two built stores."""
    with GraphStore(gold_store) as gold, GraphStore(predicted_store) as predicted:
        result = compare_edges({t for t, _ in _triples(gold)}, _triples(predicted))
        result.gold_stats = gold.stats()
        result.predicted_stats = predicted.stats()
    return result


def evaluate(
    gold: Sequence[Sentence],
    predicted: Any,
    group_size: int,
    symmetric: Sequence[str] = (),
    config: GraphConfig | None = None,
    progress: bool = False,
) -> GraphEvaluation:
    """Build the gold graph (``gold`` grouped by ``group_size``) and the predicted graph
    (``predicted``: SourceDocuments) in a scratch folder, and compare them."""
    with tempfile.TemporaryDirectory(prefix="spert-graph-eval-") as scratch:
        gold_store, predicted_store = Path(scratch, "gold"), Path(scratch, "predicted")
        build_graph(gold_store, gold_documents(gold, group_size), symmetric, config, progress)
        build_graph(predicted_store, predicted, symmetric, config, progress)
        return evaluate_graphs(gold_store, predicted_store)


def plot_curve(result: GraphEvaluation, path: str | os.PathLike[str], title: str = "") -> None:
    """The precision-recall curve of the predicted edges (by confidence) as a PNG."""
    fig, axes = new_figure(width=6, height=4.5)
    ax = axes[0][0]
    recalls = [p.recall for p in result.curve]
    precisions = [p.precision for p in result.curve]
    ax.plot(recalls, precisions, marker=".", markersize=3, linewidth=1.2)
    for cutoff in (0.5, 0.7, 0.9):
        point = result.at(cutoff)
        if point.edges:
            ax.annotate(
                f"≥{cutoff:g}",
                (point.recall, point.precision),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=8,
            )
            ax.plot([point.recall], [point.precision], "o", color="tab:red", markersize=4)
    ax.set_xlabel("recall (gold edges found)")
    ax.set_ylabel("precision (predicted edges right)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(title or f"Graph edges: P {result.precision:.3f} R {result.recall:.3f}")
    save_png(fig, path, dpi=120)
