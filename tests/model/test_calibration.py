"""The stored calibration: round trip through JSON, validation, the identity."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from spert.data import Types
from spert.model.calibration import Calibration, CalibrationError


def test_calibration_round_trips_and_is_validated(types: Types) -> None:
    n = len(types.relations)
    calibration = replace(
        Calibration.identity(types.entities, types.relation_names, 0.4),
        entity_threshold=0.2,
        relation_method="platt",
        relation_scale=(0.7,) * n,
        relation_bias=(0.1,) * n,
    )
    data = json.loads(json.dumps(calibration.to_dict()))
    assert Calibration.from_dict(data) == calibration
    with pytest.raises(CalibrationError, match="version"):
        Calibration.from_dict({**data, "version": 99})
    with pytest.raises(CalibrationError, match="relation_thresholds has 1 values"):
        Calibration.from_dict({**data, "relation_thresholds": [0.5]})
    with pytest.raises(CalibrationError, match="temperature"):
        Calibration.from_dict({**data, "entity_temperature": -1})
    with pytest.raises(CalibrationError, match="model has"):
        calibration.check_types(types.entities, ["Work_For"])


def test_the_identity_changes_no_score(types: Types) -> None:
    identity = Calibration.identity(types.entities, types.relation_names, 0.4)
    assert identity.relation_thresholds == (0.4,) * len(types.relations)
    assert identity.calibrated_threshold(0.4) == pytest.approx([0.4] * len(types.relations))
    generator = torch.Generator().manual_seed(0)
    entity_logits = torch.randn(50, 1 + len(types.entities), generator=generator) * 3
    relation_logits = torch.randn(50, len(types.relations), generator=generator) * 3
    probabilities = identity.entity_probabilities(entity_logits)
    assert torch.allclose(probabilities, entity_logits.softmax(-1))
    best = probabilities.max(-1).values
    assert torch.allclose(identity.entity_score(best), best, atol=1e-6)
    assert torch.allclose(
        identity.relation_probabilities(relation_logits), relation_logits.sigmoid()
    )
