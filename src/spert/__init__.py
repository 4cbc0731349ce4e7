"""SpERT: span-based joint entity and relation extraction with transformers."""

__version__ = "0.1.0"

from spert.config import SpertConfig  # noqa: E402
from spert.data import Entity, Relation, Sentence, Types, read_dataset, read_types  # noqa: E402

__all__ = [
    "SpERT",
    "SpertConfig",
    "Entity",
    "Relation",
    "Sentence",
    "Types",
    "read_dataset",
    "read_types",
    "__version__",
]


def __getattr__(name: str):  # the API pulls in torch: import it on first use
    if name == "SpERT":
        from spert.api import SpERT

        return SpERT
    raise AttributeError(name)
