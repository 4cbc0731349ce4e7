"""Typed extraction results for raw text: documents, sentences, entities, relations.

Character offsets always point into the original document text; token offsets into the
sentence's tokens. Everything serializes to plain JSON with ``to_dict``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class ExtractedEntity:
    type: str
    text: str  # document text[start:end]
    start: int  # character offset in the document
    end: int  # exclusive
    token_start: int  # token index in the sentence
    token_end: int  # exclusive
    score: float


@dataclass
class ExtractedRelation:
    type: str
    head: int  # index into the sentence's entities
    tail: int
    score: float


@dataclass
class ExtractedSentence:
    text: str  # document text[start:end]
    start: int  # character offset in the document
    end: int
    tokens: list[str]
    token_offsets: list[tuple[int, int]]  # character [start, end) of each token in the document
    entities: list[ExtractedEntity] = field(default_factory=list)
    relations: list[ExtractedRelation] = field(default_factory=list)


@dataclass
class Document:
    text: str
    sentences: list[ExtractedSentence] = field(default_factory=list)
    id: str | int | None = None

    @property
    def entities(self) -> list[ExtractedEntity]:
        return [e for s in self.sentences for e in s.entities]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for sentence in out["sentences"]:
            sentence["token_offsets"] = [list(o) for o in sentence["token_offsets"]]
        if self.id is None:
            out.pop("id")
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Document:
        sentences = [
            ExtractedSentence(
                text=s["text"],
                start=s["start"],
                end=s["end"],
                tokens=list(s["tokens"]),
                token_offsets=[(int(a), int(b)) for a, b in s["token_offsets"]],
                entities=[ExtractedEntity(**e) for e in s.get("entities", [])],
                relations=[ExtractedRelation(**r) for r in s.get("relations", [])],
            )
            for s in raw.get("sentences", [])
        ]
        return cls(raw["text"], sentences, raw.get("id"))
