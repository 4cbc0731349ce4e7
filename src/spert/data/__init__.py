"""Read and validate data: the SpERT JSON format, raw-text splitting, converters, downloads."""

from spert.data.dataset import (
    Context,
    DataError,
    Entity,
    Problem,
    Relation,
    RelationType,
    Sentence,
    Types,
    check_dataset,
    check_record,
    document_contexts,
    parse_sentences,
    read_dataset,
    read_types,
    write_dataset,
)

__all__ = [
    "Context",
    "DataError",
    "Entity",
    "Problem",
    "Relation",
    "RelationType",
    "Sentence",
    "Types",
    "check_dataset",
    "check_record",
    "document_contexts",
    "parse_sentences",
    "read_dataset",
    "read_types",
    "write_dataset",
]
