"""Evaluation: metrics with the original SpERT's semantics, their summaries, and the HTML pages
that show predictions against gold."""

from spert.evaluation.metrics import SECTIONS, evaluate, format_metrics
from spert.evaluation.summary import mean_std, relation_f1, summarize

__all__ = ["SECTIONS", "evaluate", "format_metrics", "mean_std", "relation_f1", "summarize"]
