"""Evaluation: metrics with the original SpERT's semantics (:mod:`.metrics`), their summaries
over runs and seeds (:mod:`.summary`), where the errors come from (:mod:`.errors`), how well
scores are calibrated (reliability, ECE; :mod:`.reliability`), the error report of ``spert eval
--report`` (:mod:`.error_report`) and model cards (:mod:`.card`). The HTML pages that show
predictions against gold are drawn by :mod:`spert.render` (``visualize``: its old path, kept
for one release)."""

from spert.evaluation.metrics import SECTIONS, evaluate, format_metrics
from spert.evaluation.summary import mean_std, relation_f1, summarize

__all__ = ["SECTIONS", "evaluate", "format_metrics", "mean_std", "relation_f1", "summarize"]
