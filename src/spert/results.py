"""Typed extraction results for raw text: documents, sentences, entities, relations.

Character offsets always point into the original document text; token offsets into the
sentence's tokens. Everything serializes to plain JSON with ``to_dict``. The HTTP server's
response schema is derived from these classes (their attribute docstrings describe it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: For schemas derived from these classes (pydantic reads it; a plain dict, no import).
_SCHEMA_CONFIG = {"use_attribute_docstrings": True}


@dataclass
class ExtractedEntity:
    __pydantic_config__ = _SCHEMA_CONFIG

    type: str
    text: str
    """The document text[start:end]."""
    start: int
    """Character offset in the document text."""
    end: int
    """Character offset in the document text (exclusive)."""
    token_start: int
    """Token index in the sentence."""
    token_end: int
    """Token index in the sentence (exclusive)."""
    score: float


@dataclass
class ExtractedRelation:
    __pydantic_config__ = _SCHEMA_CONFIG

    type: str
    head: int
    """Index into the sentence's entities."""
    tail: int
    """Index into the sentence's entities."""
    score: float


@dataclass
class ExtractedSentence:
    __pydantic_config__ = _SCHEMA_CONFIG

    text: str
    """The document text[start:end]."""
    start: int
    """Character offset in the document text."""
    end: int
    """Character offset in the document text (exclusive)."""
    tokens: list[str]
    token_offsets: list[tuple[int, int]]
    """Character [start, end) of each token in the document text."""
    entities: list[ExtractedEntity] = field(default_factory=list)
    relations: list[ExtractedRelation] = field(default_factory=list)


@dataclass
class Document:
    __pydantic_config__ = _SCHEMA_CONFIG

    text: str
    sentences: list[ExtractedSentence] = field(default_factory=list)
    id: str | int | None = None
    """The input's id, if it had one."""

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
