"""Model cards: ``README.md`` in a model directory, with Hugging Face model-card metadata.

The card is generated from what is recorded, never written by hand: the model directory's own
options and types, the training run's record (``run.json``: data files and options) and the
evaluations recorded beside the model (``evaluations.json``: split -> data file and metrics).
``spert train``, ``spert demo`` and ``spert cv`` write it; ``spert eval --card`` records the
evaluation and writes it again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from spert.config import INFERENCE_OPTIONS, MODEL_OPTIONS, TRAINING_OPTIONS
from spert.data import DataError, Types
from spert.evaluation.summary import TITLES, summarize
from spert.model.directory import read_calibration, read_meta
from spert.utils import atomic_write_text
from spert.version import __version__

CARD_FILE = "README.md"
EVALUATIONS_FILE = "evaluations.json"
#: Metrics of a card: the split they were measured on -> (data file, evaluate() result).
Evaluations = Mapping[str, tuple[str, dict[str, Any]]]


def model_card(model_dir: Path, run: Mapping[str, Any] | None, evaluations: Evaluations) -> str:
    """The card of the model in ``model_dir``, trained as ``run`` records (None: unknown)."""
    config, inference, types = read_meta(model_dir)
    name = model_dir.resolve().name
    if name in ("final", "best"):  # OUT/final: name the model after its run
        name = f"{model_dir.resolve().parent.name}/{name}"
    options = dict(run.get("config", {})) if run else {}
    data = {k: Path(v).name for k, v in (run or {}).items() if k in ("train", "dev") and v}
    lines = ["---", "library_name: spert"]
    lines += ["tags:"] + [f"- {t}" for t in ("spert", "relation-extraction", "ner", "span-based")]
    lines.append(f"base_model: {json.dumps(config.encoder)}")
    if data:
        lines += ["datasets:"] + [f"- {json.dumps(v)}" for v in data.values()]
    if evaluations:
        lines += _model_index(name, evaluations)
    lines += ["---", ""]

    trained_by = run.get("spert_version", "?") if run else "?"
    lines += [
        f"# {name}",
        "",
        "A [SpERT](https://arxiv.org/abs/1909.07755) model for joint entity and relation "
        f"extraction, trained with spert {trained_by} (this card: spert {__version__}). "
        f"Encoder: `{config.encoder}`.",
        "",
        "## Types",
        "",
        "Entity types: " + ", ".join(f"`{t}`" for t in types.entities) + ".",
        "",
        "| relation type | symmetric |",
        "|---|---|",
    ]
    lines += [f"| `{r.name}` | {'yes' if r.symmetric else 'no'} |" for r in types.relations]
    lines += ["", "## Model options", "", "| option | value |", "|---|---|"]
    lines += [f"| `{k}` | `{getattr(config, k)}` |" for k in MODEL_OPTIONS]
    lines += [f"| `{k}` | `{getattr(inference, k)}` |" for k in INFERENCE_OPTIONS]
    lines += ["", "## Training", ""]
    if run:
        files = ", ".join(f"{k} `{v}`" for k, v in data.items()) or "not recorded"
        lines += [f"Data: {files}.", "", "| option | value |", "|---|---|"]
        lines += [f"| `{k}` | `{options[k]}` |" for k in TRAINING_OPTIONS if k in options]
    else:
        lines.append("Not recorded (no run.json beside this model).")
    lines += ["", "## Evaluation", ""]
    if evaluations:
        lines += _metrics_table(evaluations)
    else:
        lines.append("Not evaluated yet: `spert eval --model DIR --data FILE --out m.json --card`.")
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "import spert",
        "",
        'model = spert.SpERT.load("PATH/TO/THIS/DIRECTORY")',
        'doc = model.extract("Mary Jones works for Acme Corp in Boston.")',
        "```",
        "",
        "Or `spert extract --model DIR --input text.txt --out out.jsonl`, or in spaCy: "
        '`nlp.add_pipe("spert", config={"model": "DIR"})`.',
        "",
        "## Limits",
        "",
        "- Relations are predicted between entities of one sentence (one encoder input), "
        "never across sentences.",
        f"- Entities are at most {config.max_span_size} words long; one type per span.",
        *_score_limits(model_dir, inference.relation_threshold, types),
        "",
    ]
    return "\n".join(lines)


def _score_limits(model_dir: Path, relation_threshold: float, types: Types) -> list[str]:
    """What the scores mean and which relations are kept: the calibration's thresholds
    (``calibration.json``) where the model has one, else the one ``relation_threshold``."""
    calibration = read_calibration(model_dir, types)
    if calibration is None:
        return [
            f"- A relation is kept when its probability exceeds {relation_threshold}.",
            "- Scores are the model's softmax and sigmoid outputs, not calibrated probabilities.",
        ]
    thresholds = ", ".join(
        f"`{t}` {v:.3f}"
        for t, v in zip(calibration.relation_types, calibration.relation_thresholds)
    )
    entity = (
        'its best type beats "none"'
        if calibration.entity_threshold is None
        else f"its score is at least {calibration.entity_threshold:.3f}"
    )
    fitted_on = Path(str(calibration.fitted_on.get("data", "held-out data"))).name
    return [
        f"- Scores are calibrated probabilities (`spert calibrate` on `{fitted_on}`).",
        f"- A span is kept as an entity when {entity}; a relation when its score exceeds its "
        f"type's threshold: {thresholds}.",
    ]


def write_model_card(
    model_dir: str | Path, run: Mapping[str, Any] | None, evaluations: Evaluations | None = None
) -> Path:
    """Record ``evaluations`` beside the model (a split evaluated again replaces the old one)
    and write ``model_dir/README.md`` from everything recorded, atomically."""
    model_dir = Path(model_dir)
    recorded = dict(read_evaluations(model_dir))
    if evaluations:
        recorded.update(evaluations)
        stored = {k: {"data": str(d), "metrics": m} for k, (d, m) in recorded.items()}
        atomic_write_text(model_dir / EVALUATIONS_FILE, json.dumps(stored, indent=2))
    return atomic_write_text(model_dir / CARD_FILE, model_card(model_dir, run, recorded))


def read_evaluations(model_dir: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    """The evaluations recorded beside a model (none if there are none)."""
    path = model_dir / EVALUATIONS_FILE
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return {split: (e["data"], e["metrics"]) for split, e in raw.items()}
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
        raise DataError(f"{path}: not a record of evaluations ({e})") from None


def _metrics_table(evaluations: Evaluations) -> list[str]:
    lines = ["| split | data | " + " | ".join(TITLES.values()) + " |"]
    lines.append("|---" * (len(TITLES) + 2) + "|")
    for split, (data, metrics) in evaluations.items():
        figures = summarize(metrics)
        cells = [f"{figures[name]:.2f}" for name in TITLES]
        lines.append(f"| {split} | `{Path(data).name}` | " + " | ".join(cells) + " |")
    return lines


def _model_index(name: str, evaluations: Evaluations) -> list[str]:
    """Hugging Face ``model-index`` metadata: one result per evaluated split."""
    lines = ["model-index:", f"- name: {json.dumps(name)}", "  results:"]
    for split, (data, metrics) in evaluations.items():
        figures = summarize(metrics)
        lines += [
            "  - task:",
            "      type: relation-extraction",
            "      name: Joint entity and relation extraction",
            "    dataset:",
            f"      name: {json.dumps(Path(data).name)}",
            f"      type: {json.dumps(Path(data).stem)}",
            f"      split: {split}",
            "    metrics:",
        ]
        for key, title in TITLES.items():
            lines += [
                "    - type: f1",
                f"      name: {json.dumps(title)}",
                f"      value: {figures[key]:.2f}",
            ]
    return lines
