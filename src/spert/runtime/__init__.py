"""Inference: the SpERT object (load, predict, extract, evaluate; :mod:`.predictor`),
raw-text extraction (:mod:`.extraction`), document readers and writers (:mod:`.io`) and
corpus-scale extraction on Ray Data (:mod:`.ray`). The public entry is :mod:`spert.api`."""
