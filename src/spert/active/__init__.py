"""Active learning: which documents to annotate next (:mod:`spert.active.selection`) and
retraining from a Label Studio project into numbered model versions
(:mod:`spert.active.retrain`)."""
