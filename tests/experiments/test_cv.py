"""``spert cv``: k-fold cross-validation on folds cut from CoNLL04, resumable."""

from __future__ import annotations

import argparse
import json
import logging
import statistics
from pathlib import Path

import pytest
from conftest import DATASETS

import spert.cli.train
import spert.experiments.cv
from spert import SpertConfig, read_dataset, read_types
from spert.cli.train import register as add_parser
from spert.config import ConfigError
from spert.data import DataError, Entity, Relation, RelationType, Sentence, Types
from spert.evaluation import evaluate
from spert.experiments.cv import (
    METRICS_FILE,
    METRICS_NO_OVERLAP_FILE,
    FoldResult,
    aggregate,
    fold_path,
    format_markdown,
    make_folds,
    run_cv,
)

CONLL04 = DATASETS / "conll04"
pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.skipif(not CONLL04.is_dir(), reason="../shared/datasets not present"),
]


@pytest.fixture(scope="module")
def folds(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, Path]:
    """Two folds of 20 test sentences each, cut from the first 40 CoNLL04 sentences."""
    types = read_types(CONLL04 / "conll04_types.json")
    sentences = read_dataset(CONLL04 / "conll04_train.json", types)[:40]
    data = tmp_path_factory.mktemp("folds")
    train_pattern, test_pattern = make_folds(sentences, 2, seed=0, out_dir=data, prefix="conll04")
    return train_pattern, test_pattern, CONLL04 / "conll04_types.json"


def cv_config(bert_dir: Path) -> SpertConfig:
    # A large learning rate: the tiny encoder's model then predicts no entity (an untrained one
    # predicts thousands, and millions of relations, which take minutes to score).
    return SpertConfig(
        encoder=str(bert_dir),
        epochs=1,
        neg_entity_count=50,
        neg_relation_count=20,
        lr=1e-3,
        seed=1,
    )


def test_make_folds_partition_the_sentences(tmp_path: Path) -> None:
    types = read_types(CONLL04 / "conll04_types.json")
    sentences = read_dataset(CONLL04 / "conll04_train.json", types)[:11]
    train_pattern, test_pattern = make_folds(sentences, 3, seed=4, out_dir=tmp_path, prefix="x")
    assert train_pattern == str(tmp_path / "x_split_{i}_train.json")
    ids = [s.orig_id for s in sentences]
    tests = [[s.orig_id for s in read_dataset(fold_path(test_pattern, i))] for i in range(3)]
    assert sorted(len(t) for t in tests) == [3, 4, 4]
    assert sorted(sum(tests, [])) == sorted(ids)  # every sentence tested exactly once
    for i in range(3):
        train = [s.orig_id for s in read_dataset(fold_path(train_pattern, i))]
        assert sorted(train + tests[i]) == sorted(ids) and not set(train) & set(tests[i])
    with pytest.raises(ValueError, match="2 <= k <= 11"):
        make_folds(sentences, 12, seed=0, out_dir=tmp_path, prefix="y")


def test_cv_runs_folds_writes_summary_and_resumes(
    folds, bert_dir: Path, tmp_path: Path, monkeypatch, caplog
) -> None:
    train_pattern, test_pattern, types_file = folds
    types = read_types(types_file)
    out = tmp_path / "cv"
    calls: list[str] = []
    real_train = spert.experiments.cv.train

    def counting_train(*args, **kwargs):
        calls.append(str(args[3]))
        return real_train(*args, **kwargs)

    monkeypatch.setattr(spert.experiments.cv, "train", counting_train)
    config = cv_config(bert_dir)
    summary = run_cv(config, train_pattern, test_pattern, 2, types, out, progress=False)
    assert calls == [str(out / "fold_0"), str(out / "fold_1")]

    for i in range(2):
        fold = out / f"fold_{i}"
        assert (fold / "final" / "spert.json").is_file()
        metrics = json.loads((fold / METRICS_FILE).read_text())
        card = (fold / "final" / "README.md").read_text(encoding="utf-8")
        assert f"{metrics['relations_strict']['micro']['f1']:.2f}" in card  # test metrics
        no_overlap = json.loads((fold / METRICS_NO_OVERLAP_FILE).read_text())
        # The metrics are those of the saved predictions on the fold's test file.
        gold = read_dataset(fold_path(test_pattern, i), types)
        predicted = read_dataset(fold / "predictions.json", types)
        assert metrics == json.loads(json.dumps(evaluate(gold, predicted, types)))
        assert no_overlap == json.loads(
            json.dumps(evaluate(gold, predicted, types, no_overlap=True))
        )
        row = summary["per_fold"][i]
        assert row["fold"] == i
        assert row["overlap"]["entity_micro_f1"] == metrics["entities"]["micro"]["f1"]
        assert (
            row["overlap"]["relation_strict_macro_f1"]
            == (metrics["relations_strict"]["macro"]["f1"])
        )
        assert row["no_overlap"]["entity_macro_f1"] == no_overlap["entities"]["macro"]["f1"]

    # Mean and sample standard deviation over the folds, for each figure and setting.
    for setting in ("overlap", "no_overlap"):
        for name, mean in summary["mean"][setting].items():
            values = [row[setting][name] for row in summary["per_fold"]]
            assert mean == pytest.approx(statistics.mean(values))
            assert summary["stdev"][setting][name] == pytest.approx(statistics.stdev(values))
    assert json.loads((out / "cv_results.json").read_text()) == json.loads(json.dumps(summary))
    md = (out / "cv_results.md").read_text()
    assert "## With overlapping entities" in md and "## Without overlapping entities" in md
    assert md.count("| mean ± std |") == 2 and "| 0 |" in md and "| 1 |" in md

    # Running again trains nothing and gives the same summary.
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("fold_*/*.json")}
    caplog.set_level(logging.INFO, logger="spert.experiments.cv")
    again = run_cv(config, train_pattern, test_pattern, 2, types, out, progress=False)
    assert calls == [str(out / "fold_0"), str(out / "fold_1")]
    assert again["per_fold"] == summary["per_fold"] and again["mean"] == summary["mean"]
    assert {p: p.stat().st_mtime_ns for p in out.glob("fold_*/*.json")} == mtimes
    assert "fold 1/2: finished already" in caplog.text
    assert "fold 2/2: finished already" in caplog.text

    # An unfinished fold (its metrics missing) is the only one trained again.
    (out / "fold_1" / METRICS_NO_OVERLAP_FILE).unlink()
    run_cv(config, train_pattern, test_pattern, 2, types, out, progress=False)
    assert calls[2:] == [str(out / "fold_1")]

    # Another configuration is refused in the same output directory.
    with pytest.raises(ConfigError, match=r"differs in config\.neg_entity_count"):
        run_cv(config.replace(neg_entity_count=3), train_pattern, test_pattern, 2, types, out)


def test_missing_fold_files_are_named_before_training(
    folds, bert_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    train_pattern, test_pattern, types_file = folds
    types = read_types(types_file)

    def no_train(*args, **kwargs):
        raise AssertionError("trained")

    monkeypatch.setattr(spert.experiments.cv, "train", no_train)
    with pytest.raises(DataError, match=r"missing fold file\(s\): .*conll04_split_2_train\.json"):
        run_cv(cv_config(bert_dir), train_pattern, test_pattern, 3, types, tmp_path / "o")
    with pytest.raises(DataError, match=r"dev pattern .* has no \{i\}"):
        run_cv(
            cv_config(bert_dir),
            train_pattern,
            test_pattern,
            2,
            types,
            tmp_path / "o",
            dev_pattern=str(CONLL04 / "conll04_dev.json"),
        )
    assert not (tmp_path / "o" / "fold_0").exists()


def test_cli_builds_the_config_from_train_options(folds, tmp_path: Path, monkeypatch) -> None:
    import spert.experiments.cv

    seen = {}

    def fake_run_cv(config, train, test, k, types, out, dev_pattern=None, device=None):
        seen.update(config=config, train=train, test=test, k=k, out=out, dev=dev_pattern)
        return {}

    monkeypatch.setattr(spert.cli.train, "run_cv", fake_run_cv)
    monkeypatch.setattr(spert.cli.train, "format_markdown", lambda summary: "table\n")
    train_pattern, test_pattern, types_file = folds
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command", required=True))
    config_file = tmp_path / "c.toml"
    config_file.write_text("epochs = 3\nlr = 1e-4\n")
    args = parser.parse_args(
        ["cv", "--train", train_pattern, "--test", test_pattern, "--folds", "2"]
        + ["--types", str(types_file), "--out", str(tmp_path / "o"), "--preset", "demo"]
        + ["--config", str(config_file), "--epochs", "2", "--neg-relation-kind", "weak"]
    )
    args.func(args)
    config = seen["config"]
    assert (config.epochs, config.lr, config.neg_relation_kind) == (2, 1e-4, "weak")
    assert config.train_batch_size == 4  # from the demo preset
    assert (seen["train"], seen["test"], seen["k"]) == (train_pattern, test_pattern, 2)


def test_aggregate_mean_and_sample_std_with_and_without_overlap() -> None:
    types = Types(("A", "B"), (RelationType("R"),))
    gold = Sentence(
        list("abcdef"),
        [Entity("A", 0, 2), Entity("B", 1, 3), Entity("A", 4, 5), Entity("B", 5, 6)],
        [Relation("R", 2, 3), Relation("R", 0, 1)],  # the second: overlapping arguments
    )
    # Fold 0 finds everything; fold 1 only the non-overlapping entities and relation.
    perfect = evaluate([gold], [gold], types)
    partial_pred = Sentence(gold.tokens, gold.entities[2:], [Relation("R", 0, 1)])
    partial = evaluate([gold], [partial_pred], types)
    partial_no = evaluate([gold], [partial_pred], types, no_overlap=True)
    summary = aggregate(
        [
            FoldResult(0, perfect, evaluate([gold], [gold], types, no_overlap=True), False),
            FoldResult(1, partial, partial_no, True),
        ]
    )
    # With overlap: fold 1 finds 2 of 4 entities (F1 66.67) and 1 of 2 relations (66.67).
    assert partial["entities"]["micro"]["f1"] == pytest.approx(200 / 3)
    mean = summary["mean"]["overlap"]
    assert mean["entity_micro_f1"] == pytest.approx((100 + 200 / 3) / 2)
    assert summary["stdev"]["overlap"]["entity_micro_f1"] == pytest.approx(
        statistics.stdev([100, 200 / 3])
    )
    # Without overlap the overlapping entities (and their relation) drop out on both sides:
    # fold 1 is perfect there.
    assert summary["mean"]["no_overlap"]["entity_micro_f1"] == pytest.approx(100.0)
    assert summary["stdev"]["no_overlap"]["relation_strict_micro_f1"] == pytest.approx(0.0)
    md = format_markdown(summary)
    assert f"**{(100 + 200 / 3) / 2:.2f}** ± {statistics.stdev([100, 200 / 3]):.2f}" in md
    # One fold: no standard deviation, shown as the mean alone.
    single = aggregate([FoldResult(0, partial, partial_no, False)])
    assert single["stdev"]["overlap"]["entity_micro_f1"] is None
    assert f"| **{200 / 3:.2f}** |" in format_markdown(single)
