"""A model's calibration: what turns its logits into probabilities, and the cut-offs it keeps.

``spert calibrate`` (:mod:`spert.calibration`) fits it on held-out data and stores it as
``calibration.json`` in the model directory; decoding (:mod:`spert.model.decoding`) applies
it. After calibration an entity score is the probability that the span is an entity of that
type, and a relation score the probability that the relation holds (strictly: both argument
entities right in span and type) given its two predicted entities.

* Entities: one temperature ``T`` for the entity classifier, ``softmax(logits / T)``, which picks
  the type; the entity's score is that probability recalibrated by Platt scaling,
  ``sigmoid(entity_scale * logit(p) + entity_bias)`` (measured on CoNLL04 with a
  ``small-encoder`` model: test ECE of predicted entities 0.073 with the temperature alone,
  0.019 with it). A span is kept when its score is at least ``entity_threshold`` (None: when
  its best type beats "none", the argmax, as uncalibrated).
* Relations: per type ``sigmoid(scale * logit + bias)`` (temperature scaling is ``bias = 0``,
  ``scale = 1 / T``; Platt scaling fits both), and a per-type threshold: a relation is kept when
  its calibrated probability exceeds it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

#: File name of the calibration in a model directory.
CALIBRATION_FILE = "calibration.json"
#: Version of its layout; another version is refused on load.
CALIBRATION_VERSION = 1
#: How relation logits are calibrated: one temperature per type, or Platt's (scale, bias).
RELATION_METHODS = ("temperature", "platt")


class CalibrationError(ValueError):
    """A calibration that is malformed or does not fit the model's types."""


@dataclass(frozen=True)
class Calibration:
    """Entity temperature and cut-off; per relation type calibration and threshold."""

    entity_types: tuple[str, ...]
    relation_types: tuple[str, ...]
    entity_temperature: float = 1.0
    entity_threshold: float | None = None
    """Keep a span when its best non-"none" calibrated probability is at least this; None: when
    that type beats "none" (argmax, as without calibration)."""
    relation_method: str = "temperature"
    relation_scale: tuple[float, ...] = ()
    relation_bias: tuple[float, ...] = ()
    relation_thresholds: tuple[float, ...] = ()
    """Per relation type: a relation is kept when its calibrated probability exceeds this."""
    entity_scale: float = 1.0
    entity_bias: float = 0.0
    """Platt scaling of the best entity type's probability: the entity score."""
    fitted_on: dict[str, Any] = field(default_factory=dict)
    """What it was fitted on: data file, sentences, target precision, method choice."""
    metrics: dict[str, Any] = field(default_factory=dict)
    """Measured on the fitting data: ECE and micro F1 before and after."""

    def __post_init__(self) -> None:
        n = len(self.relation_types)
        for name in ("relation_scale", "relation_bias", "relation_thresholds"):
            if len(getattr(self, name)) != n:
                raise CalibrationError(
                    f"{name} has {len(getattr(self, name))} values for {n} relation types"
                )
        if self.relation_method not in RELATION_METHODS:
            raise CalibrationError(
                f"relation_method must be one of {', '.join(RELATION_METHODS)}, "
                f"got {self.relation_method!r}"
            )
        if not (math.isfinite(self.entity_temperature) and self.entity_temperature > 0):
            raise CalibrationError(f"entity_temperature must be > 0, got {self.entity_temperature}")
        if not (
            math.isfinite(self.entity_scale)
            and self.entity_scale > 0
            and math.isfinite(self.entity_bias)
        ):
            raise CalibrationError(
                f"entity calibration must have a finite scale > 0 and a finite bias, got scale "
                f"{self.entity_scale}, bias {self.entity_bias}"
            )
        if self.entity_threshold is not None and not 0.0 <= self.entity_threshold <= 1.0:
            raise CalibrationError(
                f"entity_threshold must lie in [0, 1], got {self.entity_threshold}"
            )
        for t, value in zip(self.relation_types, self.relation_thresholds):
            if not 0.0 <= value <= 1.0:
                raise CalibrationError(f"relation threshold of {t} must lie in [0, 1], got {value}")
        for t, a, b in zip(self.relation_types, self.relation_scale, self.relation_bias):
            if not (math.isfinite(a) and math.isfinite(b) and a > 0):
                raise CalibrationError(
                    f"relation calibration of {t} must have a finite scale > 0 and a finite "
                    f"bias, got scale {a}, bias {b}"
                )

    @classmethod
    def identity(
        cls, entity_types: Sequence[str], relation_types: Sequence[str], relation_threshold: float
    ) -> Calibration:
        """The calibration that changes nothing: scores (up to rounding) and decisions as
        without one, every relation type cut at ``relation_threshold``."""
        n = len(relation_types)
        return cls(
            tuple(entity_types),
            tuple(relation_types),
            relation_scale=(1.0,) * n,
            relation_bias=(0.0,) * n,
            relation_thresholds=(relation_threshold,) * n,
        )

    # -- applying it ---------------------------------------------------------------------
    def entity_probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """(N, 1 + entity types) logits -> calibrated softmax probabilities."""
        return (logits.float() / self.entity_temperature).softmax(-1)

    def entity_score(self, probability: torch.Tensor) -> torch.Tensor:
        """The best type's (temperature-scaled) probability -> the calibrated entity score."""
        p = probability.double().clamp(1e-12, 1 - 1e-12)
        z = torch.log(p) - torch.log1p(-p)
        return (z * self.entity_scale + self.entity_bias).sigmoid().to(probability.dtype)

    def relation_probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """(P, relation types) logits -> calibrated probabilities."""
        scale = logits.new_tensor(self.relation_scale, dtype=torch.float32)
        bias = logits.new_tensor(self.relation_bias, dtype=torch.float32)
        return (logits.float() * scale + bias).sigmoid()

    def calibrated_threshold(self, raw: float) -> list[float]:
        """Per relation type, the calibrated probability that an uncalibrated sigmoid ``raw``
        maps to (the same cut-off, expressed after calibration)."""
        if raw <= 0.0 or raw >= 1.0:
            return [raw] * len(self.relation_types)
        logit = math.log(raw / (1.0 - raw))
        return [
            1.0 / (1.0 + math.exp(-(a * logit + b)))
            for a, b in zip(self.relation_scale, self.relation_bias)
        ]

    # -- storing it ----------------------------------------------------------------------
    def check_types(self, entity_types: Sequence[str], relation_types: Sequence[str]) -> None:
        """Refuse a calibration fitted for other types than the model's."""
        if tuple(entity_types) != self.entity_types or tuple(relation_types) != self.relation_types:
            raise CalibrationError(
                f"fitted for entity types {list(self.entity_types)} and relation types "
                f"{list(self.relation_types)}, but the model has {list(entity_types)} and "
                f"{list(relation_types)}; run `spert calibrate` again"
            )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {"version": CALIBRATION_VERSION, **{k: _plain(v) for k, v in data.items()}}

    @classmethod
    def from_dict(cls, data: Any) -> Calibration:
        """The calibration a ``to_dict`` result describes; CalibrationError names what is wrong."""
        if not isinstance(data, dict):
            raise CalibrationError("not a JSON object")
        if data.get("version") != CALIBRATION_VERSION:
            raise CalibrationError(
                f"calibration version {data.get('version')!r}; this spert reads version "
                f"{CALIBRATION_VERSION} (run `spert calibrate` again)"
            )
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known - {"version"})
        if unknown:
            raise CalibrationError(f"unknown field(s): {', '.join(unknown)}")
        values: dict[str, Any] = {}
        try:
            for name in ("entity_types", "relation_types"):
                values[name] = tuple(str(v) for v in _list(data, name))
            for name in ("relation_scale", "relation_bias", "relation_thresholds"):
                values[name] = tuple(_number(v, name) for v in _list(data, name))
            values["entity_temperature"] = _number(data.get("entity_temperature"), "temperature")
            values["entity_scale"] = _number(data.get("entity_scale", 1.0), "entity_scale")
            values["entity_bias"] = _number(data.get("entity_bias", 0.0), "entity_bias")
            threshold = data.get("entity_threshold")
            values["entity_threshold"] = (
                None if threshold is None else _number(threshold, "entity_threshold")
            )
            values["relation_method"] = str(data.get("relation_method", ""))
            for name in ("fitted_on", "metrics"):
                value = data.get(name, {})
                if not isinstance(value, dict):
                    raise CalibrationError(f"{name} must be an object")
                values[name] = value
        except (TypeError, ValueError) as e:
            raise CalibrationError(str(e)) from None
        return cls(**values)

    def summary(self) -> dict[str, Any]:
        """What ``/info`` and the CLI report: method, thresholds, fitted-on data, ECE."""
        return {
            "entity_temperature": round(self.entity_temperature, 4),
            "entity_platt": [round(self.entity_scale, 4), round(self.entity_bias, 4)],
            "entity_threshold": self.entity_threshold,
            "relation_method": self.relation_method,
            "relation_thresholds": {
                t: round(v, 4) for t, v in zip(self.relation_types, self.relation_thresholds)
            },
            "fitted_on": self.fitted_on,
            "metrics": self.metrics,
        }


def _list(data: dict[str, Any], name: str) -> list[Any]:
    value = data.get(name)
    if not isinstance(value, list):
        raise CalibrationError(f"{name} must be a list")
    return value


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CalibrationError(f"{name} must be a number, got {value!r}")
    return float(value)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
