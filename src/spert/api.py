"""The public Python API: ``SpERT.load(path).predict(sentences)``, ``.extract(text)``.

The names users import; they live in the stages below (:mod:`spert.runtime.predictor`,
:mod:`spert.model.directory`, :mod:`spert.runtime.extraction`).
"""

from spert.config import RUNTIMES
from spert.model.directory import (
    ENCODER_DIR,
    FORMAT_VERSION,
    HEADS_FILE,
    META_FILE,
    ModelError,
    default_model_dir,
)
from spert.model.modeling import default_device
from spert.runtime.extraction import DocumentInput, sentences_in_context
from spert.runtime.predictor import SpERT

__all__ = [
    "ENCODER_DIR",
    "FORMAT_VERSION",
    "HEADS_FILE",
    "META_FILE",
    "RUNTIMES",
    "DocumentInput",
    "ModelError",
    "SpERT",
    "default_device",
    "default_model_dir",
    "sentences_in_context",
]
