"""SpERT: span-based joint entity and relation extraction with transformers."""

from spert.config import InferenceConfig, ModelConfig, SpertConfig
from spert.data import Entity, Relation, Sentence, Types, read_dataset, read_types
from spert.version import __version__

__all__ = [
    "SpERT",
    "InferenceConfig",
    "ModelConfig",
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
