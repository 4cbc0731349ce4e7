"""Self-contained HTML pages of extracted entities and relations.

Two kinds of page, both a single file with inline CSS and JavaScript (no network resources):

* :func:`render_documents` shows predictions on raw text (:class:`spert.results.Document`);
* :func:`render_comparison` compares gold and predicted tokenized sentences and marks every
  entity and relation as a true positive (TP: in both), a false positive (FP: predicted only)
  or a false negative (FN: gold only), with a summary of the counts.
* :func:`render_comparison_groups` draws the same comparison for chosen sentences under
  headings (e.g. the worst sentences per error kind of ``spert eval --report``).

Entities are highlighted in the text with a colour per type (see the legend) and drawn as
labelled marks under it; relations are drawn as labelled arcs above the text by the page's
script, from the relation lists of the static HTML (which remain readable without scripts).
Scores appear on hover. All text is HTML-escaped.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from spert.data import DataError, Sentence, Types
from spert.data.matching import EntityKey, entity_key, precision_recall_f1, relation_key
from spert.results import Document, ExtractedEntity, ExtractedRelation, ExtractedSentence
from spert.utils import atomic_write_text

# displaCy's pastel colours, then a few more: dark text stays readable on all of them.
PALETTE = (
    "#7aecec",
    "#bfeeb7",
    "#feca74",
    "#ff9561",
    "#aa9cfc",
    "#c887fb",
    "#9cc9cc",
    "#ffeb80",
    "#ff8197",
    "#f0d0ff",
    "#bfe1d9",
    "#e4e7d2",
    "#a0c4ff",
    "#ffd6a5",
    "#caffbf",
    "#dddddd",
)

COMPARISON_TITLE = "SpERT: gold vs predicted"
PREDICTIONS_TITLE = "SpERT predictions"
STATUS_LABELS = {"tp": "TP", "fp": "FP", "fn": "FN"}
_STATUS_HELP = {
    "tp": "true positive: predicted and in gold",
    "fp": "false positive: predicted, not in gold",
    "fn": "false negative: in gold, not predicted",
}


@dataclass(frozen=True)
class MarkedEntity:
    """An entity of a rendered sentence; ``status`` is "tp", "fp", "fn" or None."""

    type: str
    start: int  # first token
    end: int  # one past the last token
    status: str | None = None
    score: float | None = None


@dataclass(frozen=True)
class MarkedRelation:
    """A relation of a rendered sentence; head and tail index its marked entities."""

    type: str
    head: int
    tail: int
    status: str | None = None
    score: float | None = None


@dataclass
class Comparison:
    """Gold and predicted items of one sentence, each marked tp, fp or fn."""

    entities: list[MarkedEntity] = field(default_factory=list)
    relations: list[MarkedRelation] = field(default_factory=list)

    def counts(self) -> dict[str, dict[str, int]]:
        """``{"entities": {"tp": n, "fp": n, "fn": n}, "relations": {...}}``."""
        out = {}
        for name, items in (("entities", self.entities), ("relations", self.relations)):
            out[name] = {s: sum(1 for i in items if i.status == s) for s in STATUS_LABELS}
        return out


def compare_sentence(
    gold: Sentence, predicted: Sentence, symmetric: Iterable[str] = ()
) -> Comparison:
    """Mark the union of gold and predicted entities and relations as tp, fp or fn.

    Items match as in the evaluation (:func:`spert.data.matching.entity_key` and
    ``relation_key``): an entity by span and type, a relation by its type and both arguments
    (span and entity type), in either order for the ``symmetric`` relation types. Duplicates
    collapse, as in the evaluation.
    """
    symmetric = frozenset(symmetric)
    if list(gold.tokens) != list(predicted.tokens):
        raise DataError(
            "gold and predicted sentences have different tokens: "
            f"{_clip(' '.join(gold.tokens))!r} vs {_clip(' '.join(predicted.tokens))!r}"
        )
    gold_keys = {entity_key(e) for e in gold.entities}
    pred_scores: dict[EntityKey, float | None] = {}
    for e in predicted.entities:
        pred_scores.setdefault(entity_key(e), e.score)
    union = sorted(gold_keys | set(pred_scores))
    index = {k: i for i, k in enumerate(union)}
    entities = [
        MarkedEntity(
            k[2],
            k[0],
            k[1],
            "tp" if k in gold_keys and k in pred_scores else ("fn" if k in gold_keys else "fp"),
            pred_scores.get(k),
        )
        for k in union
    ]

    def relations_of(sentence: Sentence) -> dict[tuple, tuple[EntityKey, EntityKey, float | None]]:
        out: dict[tuple, tuple[EntityKey, EntityKey, float | None]] = {}
        for r in sentence.relations:
            head, tail = (
                entity_key(sentence.entities[r.head]),
                entity_key(sentence.entities[r.tail]),
            )
            out.setdefault(relation_key(head, tail, r, symmetric), (head, tail, r.score))
        return out

    gold_rels, pred_rels = relations_of(gold), relations_of(predicted)
    relations = []
    for k, (head, tail, _) in gold_rels.items():
        status = "tp" if k in pred_rels else "fn"
        score = pred_rels[k][2] if k in pred_rels else None
        relations.append(MarkedRelation(k[2], index[head], index[tail], status, score))
    for k, (head, tail, score) in pred_rels.items():
        if k not in gold_rels:
            relations.append(MarkedRelation(k[2], index[head], index[tail], "fp", score))
    return Comparison(entities, relations)


def render_comparison(
    gold: Sequence[Sentence],
    predicted: Sequence[Sentence],
    types: Types,
    title: str = COMPARISON_TITLE,
) -> str:
    """A page comparing gold and predicted sentences (in the same order), with tp/fp/fn marks."""
    colours = _comparison_colours(gold, predicted, types)
    totals = {
        "entities": dict.fromkeys(STATUS_LABELS, 0),
        "relations": dict.fromkeys(STATUS_LABELS, 0),
    }
    sections = []
    for i in range(len(gold)):
        html, counts = _comparison_section(i, i, gold, predicted, types, colours)
        for name, by_status in counts.items():
            for status, n in by_status.items():
                totals[name][status] += n
        sections.append(html)
    summary = _comparison_summary(len(gold), totals)
    controls = (
        '<label class="filter"><input type="checkbox" id="only-errors"> '
        "show only sentences with errors (FP or FN)</label>"
    )
    return _page(title, summary + _legend(colours, statuses=True) + controls, sections)


@dataclass(frozen=True)
class SentenceGroup:
    """Sentences to show under one heading: indices into the compared lists, and a line of
    text per sentence (e.g. what went wrong in it)."""

    title: str
    note: str
    indices: list[int]
    lines: dict[int, str] = field(default_factory=dict)


def render_comparison_groups(
    gold: Sequence[Sentence],
    predicted: Sequence[Sentence],
    types: Types,
    groups: Sequence[SentenceGroup],
    title: str = COMPARISON_TITLE,
    intro: str = "",
) -> str:
    """A comparison page (as :func:`render_comparison` draws) of chosen sentences under
    headings, with a table of contents; a sentence may appear in several groups."""
    colours = _comparison_colours(gold, predicted, types)
    sections, contents = [], []
    number = 0  # sections need page-unique ids
    for k, group in enumerate(groups):
        anchor = f"group-{k + 1}"
        contents.append(
            f'<li><a href="#{anchor}">{_e(group.title)}</a> ({len(group.indices)} sentences)</li>'
        )
        sections.append(
            f'<h2 id="{anchor}">{_e(group.title)}</h2>\n<p class="note">{_e(group.note)}</p>'
        )
        for i in group.indices:
            if not 0 <= i < len(gold):
                raise DataError(f"group {group.title!r}: no sentence {i} ({len(gold)} sentences)")
            html, _ = _comparison_section(
                number, i, gold, predicted, types, colours, group.lines.get(i)
            )
            sections.append(html)
            number += 1
    header = (f'<p class="summary-line">{_e(intro)}</p>' if intro else "") + (
        f'<ul class="contents">{"".join(contents)}</ul>' if contents else ""
    )
    return _page(title, header + _legend(colours, statuses=True), sections)


def _comparison_colours(
    gold: Sequence[Sentence], predicted: Sequence[Sentence], types: Types
) -> dict[str, str]:
    """The entity colours of a comparison page; gold and predicted must be aligned."""
    if len(gold) != len(predicted):
        raise DataError(
            f"gold has {len(gold)} sentences but the predictions have {len(predicted)}; "
            "they must be the same sentences in the same order"
        )
    colours = _colours(types.entities, (e.type for s in gold for e in s.entities))
    return _colours(list(colours), (e.type for s in predicted for e in s.entities))


def _comparison_section(
    number: int,
    i: int,
    gold: Sequence[Sentence],
    predicted: Sequence[Sentence],
    types: Types,
    colours: dict[str, str],
    text: str | None = None,
) -> tuple[str, dict[str, dict[str, int]]]:
    """Sentence ``i`` of a comparison page as section ``number`` (page-unique), and its
    tp/fp/fn counts; ``text`` replaces the counts line under its heading."""
    g = gold[i]
    try:
        comparison = compare_sentence(g, predicted[i], types.symmetric)
    except DataError as e:
        raise DataError(f"sentence {i + 1}: {e}") from None
    counts = comparison.counts()
    heading = f"Sentence {i + 1}"
    if g.orig_id is not None:
        heading += f" (orig_id {g.orig_id})"
    counts_text = text or "  ".join(
        f"{name}: " + " ".join(f"{STATUS_LABELS[s]} {n}" for s, n in by.items())
        for name, by in counts.items()
    )
    errors = sum(c["fp"] + c["fn"] for c in counts.values())
    html = _sentence_html(
        number,
        heading,
        counts_text,
        list(g.tokens),
        [" "] * (len(g.tokens) - 1),
        comparison.entities,
        comparison.relations,
        colours,
        extra_class="has-errors" if errors else "no-errors",
    )
    return html, counts


def render_documents(documents: Sequence[Document], title: str = PREDICTIONS_TITLE) -> str:
    """A page of predictions on raw text: entities by type, relations as arcs, scores on hover."""
    colours = _colours(
        (), sorted({e.type for d in documents for s in d.sentences for e in s.entities})
    )
    sections = []
    n_sentences = n_entities = n_relations = 0
    for d, doc in enumerate(documents):
        doc_name = f"Document {doc.id if doc.id is not None else d + 1}"
        for k, sentence in enumerate(doc.sentences):
            where = f"{doc_name}, sentence {k + 1}"
            n = len(sentence.tokens)
            entities = []
            for j, e in enumerate(sentence.entities):
                if not (0 <= e.token_start < e.token_end <= n):
                    raise DataError(
                        f"{where}, entity {j}: token span [{e.token_start}, {e.token_end}) "
                        f"out of range for {n} tokens"
                    )
                entities.append(MarkedEntity(e.type, e.token_start, e.token_end, None, e.score))
            relations = []
            for j, r in enumerate(sentence.relations):
                for value in (r.head, r.tail):
                    if not 0 <= value < len(entities):
                        raise DataError(
                            f"{where}, relation {j}: {value} is not an entity index "
                            f"(the sentence has {len(entities)} entities)"
                        )
                relations.append(MarkedRelation(r.type, r.head, r.tail, None, r.score))
            gaps = _gaps(doc.text, sentence.token_offsets, n)
            counts_text = (
                f"characters {sentence.start}-{sentence.end}, "
                f"{len(entities)} entities, {len(relations)} relations"
            )
            sections.append(
                _sentence_html(
                    n_sentences,
                    where,
                    counts_text,
                    list(sentence.tokens),
                    gaps,
                    entities,
                    relations,
                    colours,
                )
            )
            n_sentences += 1
            n_entities += len(entities)
            n_relations += len(relations)
    summary = (
        '<p class="summary" id="summary">'
        f"{len(documents)} documents, {n_sentences} sentences, "
        f"{n_entities} entities, {n_relations} relations. "
        "Hover over an entity or a relation for its score.</p>"
    )
    return _page(title, summary + _legend(colours, statuses=False), sections)


def render_sentences(sentences: Sequence[Sentence], title: str = PREDICTIONS_TITLE) -> str:
    """Predictions on tokenized sentences (e.g. ``spert predict`` output), without gold."""
    return render_documents([_sentence_document(s, i) for i, s in enumerate(sentences)], title)


def write_html(path: str | os.PathLike[str], page: str) -> None:
    """Write a page atomically."""
    atomic_write_text(Path(path), page)


# --------------------------------------------------------------------------- HTML building


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _clip(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _score(score: float | None) -> str:
    return "" if score is None else f"{score:.3f}"


def _colours(known: Iterable[str], seen: Iterable[str]) -> dict[str, str]:
    """A colour per entity type: the known types in order, then any other type seen."""
    names = list(dict.fromkeys([*known, *seen]))
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def _gaps(text: str, offsets: Sequence[tuple[int, int]], n: int) -> list[str]:
    """What separates consecutive tokens in the document (whitespace collapsed to one space)."""
    if len(offsets) != n:
        return [" "] * max(n - 1, 0)
    gaps = []
    for (_, end), (start, _) in zip(offsets, offsets[1:]):
        gaps.append(re.sub(r"\s+", " ", text[end:start]) if start >= end else " ")
    return gaps


def _sentence_document(sentence: Sentence, index: int) -> Document:
    offsets, pos = [], 0
    for token in sentence.tokens:
        offsets.append((pos, pos + len(token)))
        pos += len(token) + 1
    text = " ".join(sentence.tokens)
    entities = [
        ExtractedEntity(
            e.type,
            text[offsets[e.start][0] : offsets[e.end - 1][1]],
            offsets[e.start][0],
            offsets[e.end - 1][1],
            e.start,
            e.end,
            e.score if e.score is not None else float("nan"),
        )
        for e in sentence.entities
    ]
    relations = [
        ExtractedRelation(r.type, r.head, r.tail, r.score if r.score is not None else float("nan"))
        for r in sentence.relations
    ]
    doc_id = sentence.orig_id if sentence.orig_id is not None else index + 1
    extracted = ExtractedSentence(
        text, 0, len(text), list(sentence.tokens), offsets, entities, relations
    )
    return Document(text, [extracted], doc_id)


def _levels(entities: Sequence[MarkedEntity]) -> list[int]:
    """Rows for the entity marks: overlapping entities get different rows (outer ones first)."""
    levels = [0] * len(entities)
    placed: list[int] = []
    for i in sorted(range(len(entities)), key=lambda i: (entities[i].start, -entities[i].end)):
        e = entities[i]
        used = {
            levels[j] for j in placed if entities[j].start < e.end and e.start < entities[j].end
        }
        level = 0
        while level in used:
            level += 1
        levels[i] = level
        placed.append(i)
    return levels


def _sentence_html(
    number: int,
    heading: str,
    counts_text: str,
    tokens: list[str],
    gaps: list[str],
    entities: Sequence[MarkedEntity],
    relations: Sequence[MarkedRelation],
    colours: dict[str, str],
    extra_class: str = "",
) -> str:
    levels = _levels(entities)
    token_html = _tokens_html(tokens, gaps, entities, levels, colours)
    marks, entity_items = [], []
    for i, e in enumerate(entities):
        mark, item = _entity_html(i, e, tokens, levels[i], colours[e.type])
        marks.append(mark)
        entity_items.append(item)
    relation_items = [
        _relation_html(i, r, entities[r.head], entities[r.tail], tokens)
        for i, r in enumerate(relations)
    ]
    rows = max(levels, default=-1) + 1
    none = '<li class="none">none</li>'
    return (
        f'<section class="sentence {extra_class}" id="s{number + 1}" data-sentence="{number}">\n'
        f'<h3>{_e(heading)} <span class="counts">{_e(counts_text)}</span></h3>\n'
        '<div class="viz"><div class="canvas">'
        '<svg class="arcs" xmlns="http://www.w3.org/2000/svg" width="0" height="0"></svg>'
        f'<div class="tokens">{token_html}</div>'
        f'<div class="ents" data-rows="{rows}">{"".join(marks)}</div>'
        "</div></div>\n"
        '<div class="lists">'
        f'<div><h4>Entities ({len(entities)})</h4><ul class="entity-list">'
        f"{''.join(entity_items) or none}</ul></div>"
        f'<div><h4>Relations ({len(relations)})</h4><ul class="relation-list">'
        f"{''.join(relation_items) or none}</ul></div>"
        "</div>\n</section>"
    )


def _tokens_html(
    tokens: list[str],
    gaps: list[str],
    entities: Sequence[MarkedEntity],
    levels: list[int],
    colours: dict[str, str],
) -> str:
    """The sentence's tokens, each coloured as its covering entity on the lowest row."""
    cover: list[int | None] = [None] * len(tokens)
    for i, e in enumerate(entities):
        for t in range(max(e.start, 0), min(e.end, len(tokens))):
            if cover[t] is None or levels[i] < levels[cover[t]]:
                cover[t] = i
    parts = []
    for t, token in enumerate(tokens):
        c = cover[t]
        if c is None:
            parts.append(f'<span class="tok" data-t="{t}">{_e(token)}</span>')
        else:
            colour = colours[entities[c].type]
            parts.append(
                f'<span class="tok in" data-t="{t}" data-e="{c}" style="--c:{colour}">'
                f"{_e(token)}</span>"
            )
        if t < len(gaps):
            joined = c is not None and t + 1 < len(cover) and cover[t + 1] == c
            style = f' style="--c:{colours[entities[c].type]}"' if joined and c is not None else ""
            parts.append(f'<span class="gap{" in" if joined else ""}"{style}>{_e(gaps[t])}</span>')
    return "".join(parts)


def _phrase(tokens: list[str], e: MarkedEntity) -> str:
    return " ".join(tokens[e.start : e.end])


def _entity_html(
    i: int, e: MarkedEntity, tokens: list[str], level: int, colour: str
) -> tuple[str, str]:
    """An entity's mark under the text and its item in the entity list."""
    status = f" {e.status}" if e.status else ""
    label = STATUS_LABELS.get(e.status or "", "")
    tip = f"{e.type} \u201c{_phrase(tokens, e)}\u201d [{e.start}, {e.end})"
    if e.score is not None and e.score == e.score:
        tip += f" score {_score(e.score)}"
    if label:
        tip += f" ({label}: {_STATUS_HELP[e.status or '']})"
    attrs = (
        f'data-e="{i}" data-type="{_e(e.type)}" data-start="{e.start}" data-end="{e.end}" '
        f'data-level="{level}"'
        + (f' data-status="{e.status}"' if e.status else "")
        + f' style="--c:{colour}" title="{_e(tip)}"'
    )
    status_html = f' <b class="status">{label}</b>' if label else ""
    mark = f'<span class="ent mark{status}" {attrs}>{_e(e.type)}{status_html}</span>'
    score = _score(e.score) if e.score is not None and e.score == e.score else ""
    item = (
        f'<li class="ent-item{status}" data-e="{i}" title="{_e(tip)}">'
        + (f'<span class="badge {e.status}">{label}</span> ' if label else "")
        + f'<span class="etype" style="--c:{colour}">{_e(e.type)}</span> '
        f"\u201c{_e(_phrase(tokens, e))}\u201d "
        f'<span class="span">[{e.start}, {e.end})</span>'
        + (f' <span class="score">{score}</span>' if score else "")
        + "</li>"
    )
    return mark, item


def _relation_html(
    i: int, r: MarkedRelation, head: MarkedEntity, tail: MarkedEntity, tokens: list[str]
) -> str:
    """A relation's item in the relation list (the page's script draws its arc from it)."""
    status = f" {r.status}" if r.status else ""
    label = STATUS_LABELS.get(r.status or "", "")
    arc_label = r.type + (f" \u00b7 {label}" if label else "")
    tip = (
        f"{r.type}: \u201c{_phrase(tokens, head)}\u201d ({head.type}) \u2192 "
        f"\u201c{_phrase(tokens, tail)}\u201d ({tail.type})"
    )
    score = _score(r.score) if r.score is not None and r.score == r.score else ""
    if score:
        tip += f" score {score}"
    if label:
        tip += f" ({label}: {_STATUS_HELP[r.status or '']})"
    return (
        f'<li class="rel-item{status}" data-r="{i}" data-head="{r.head}" data-tail="{r.tail}" '
        f'data-type="{_e(r.type)}"'
        + (f' data-status="{r.status}"' if r.status else "")
        + f' data-label="{_e(arc_label)}" title="{_e(tip)}">'
        + (f'<span class="badge {r.status}">{label}</span> ' if label else "")
        + f'<span class="rtype">{_e(r.type)}</span>: '
        f"\u201c{_e(_phrase(tokens, head))}\u201d ({_e(head.type)}) \u2192 "
        f"\u201c{_e(_phrase(tokens, tail))}\u201d ({_e(tail.type)})"
        + (f' <span class="score">{score}</span>' if score else "")
        + "</li>"
    )


def _comparison_summary(n: int, totals: dict[str, dict[str, int]]) -> str:
    rows = []
    for name, title in (("entities", "Entities"), ("relations", "Relations (strict)")):
        c = totals[name]
        p, r, f = precision_recall_f1(c["tp"], c["fp"], c["fn"], scale=100.0)
        rows.append(
            f'<tr data-kind="{name}"><th>{title}</th>'
            + "".join(f'<td class="{s}">{c[s]}</td>' for s in STATUS_LABELS)
            + f"<td>{p:.2f}</td><td>{r:.2f}</td><td>{f:.2f}</td></tr>"
        )
    return (
        f'<p class="summary-line">{n} sentences.</p>'
        '<table class="summary" id="summary"><thead><tr><th></th>'
        "<th>TP</th><th>FP</th><th>FN</th><th>precision</th><th>recall</th><th>F1</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _legend(colours: dict[str, str], statuses: bool) -> str:
    items = "".join(
        f'<span class="swatch" style="--c:{colour}">{_e(name)}</span>'
        for name, colour in colours.items()
    )
    out = (
        '<div class="legend"><span class="legend-title">Entity types:</span> '
        f"{items or 'none'}</div>"
    )
    if statuses:
        marks = "".join(
            f'<span class="mark legend-ent {s}" style="--c:#dddddd">type '
            f'<b class="status">{label}</b></span> '
            f'<span class="legend-help">{_e(_STATUS_HELP[s])}</span> '
            for s, label in STATUS_LABELS.items()
        )
        out += f'<div class="legend statuses">{marks}</div>'
    return out


def _asset(name: str) -> str:
    return resources.files("spert.render").joinpath("templates", name).read_text(encoding="utf-8")


def _page(title: str, header: str, sections: Sequence[str]) -> str:
    body = "\n".join(sections) if sections else '<p class="empty">No sentences.</p>'
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n"
        f"<style>\n{_asset('visualize.css')}</style>\n"
        "</head>\n<body>\n"
        f"<header><h1>{_e(title)}</h1>\n{header}\n</header>\n"
        f"<main>\n{body}\n</main>\n"
        f"<script>\n{_asset('visualize.js')}</script>\n"
        "</body>\n</html>\n"
    )
