"""Inference: the SpERT object (load, predict, extract, evaluate; :mod:`.predictor`),
raw-text extraction (:mod:`.extraction`), document readers and writers (:mod:`.io`, HTML pages
by :mod:`spert.render`) and corpus-scale extraction on Ray Data (:mod:`.ray`). The public entry
is :mod:`spert.api`; calibrating a model is :mod:`spert.calibration`."""
