"""Moved to :mod:`spert.render.pages`; this import path is kept for one release."""

import warnings

from spert.render.pages import *  # noqa: F403
from spert.render.pages import render_comparison, render_documents, render_sentences  # noqa: F401

warnings.warn(
    "spert.evaluation.visualize moved to spert.render.pages; the old path goes in the next release",
    DeprecationWarning,
    stacklevel=2,
)
