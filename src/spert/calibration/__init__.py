"""Calibration on held-out data (``spert calibrate``, ``train --calibrate``): the passes over
the data that collect a model's logits and fit its calibration (:mod:`.calibrate`), and the
fitting of temperatures, Platt scaling, the entity cut-off and the relation thresholds
(:mod:`.fitting`).

What is stored and applied is :class:`spert.model.calibration.Calibration`; how well scores
are calibrated (reliability, ECE) is measured by :mod:`spert.evaluation.reliability`.
"""

from spert.calibration.calibrate import METHODS, THRESHOLDS, calibrate

__all__ = ["METHODS", "THRESHOLDS", "calibrate"]
