"""Learning-rate schedule, loss, and short training runs on the tiny encoder."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
import torch

from spert.api import SpERT
from spert.config import ConfigError, SpertConfig
from spert.model import precision
from spert.model.candidates import Batch
from spert.model.modeling import SpertModel
from spert.training import (
    ADAM_BETAS,
    WeightEMA,
    learning_rate_factor,
    make_optimizer,
    rdrop_divergence,
    spert_loss,
    train,
)
from spert.training import trainer as trainer_module

pytestmark = pytest.mark.usefixtures("one_thread")


def bias_correction(step: int) -> float:
    b1, b2 = ADAM_BETAS
    t = step + 1
    return (1 - b1**t) / math.sqrt(1 - b2**t)


def test_learning_rate_schedule():
    total, warmup = 100, 10
    factors = [learning_rate_factor(s, total, warmup) for s in range(total + 5)]
    schedule = [f / bias_correction(s) for s, f in enumerate(factors)]
    assert factors[0] == 0.0
    for s in range(warmup + 1):  # linear warm-up from 0 to 1
        assert schedule[s] == pytest.approx(s / warmup)
    for s in range(warmup, total + 1):  # linear decay from 1 to 0
        assert schedule[s] == pytest.approx((total - s) / (total - warmup))
    assert factors[total] == 0.0
    assert all(f == 0.0 for f in factors[total:])
    assert all(a < b for a, b in zip(schedule[:warmup], schedule[1 : warmup + 1], strict=True))
    # The factor undoes torch's bias correction: (1 - b1^t) / sqrt(1 - b2^t), t = step + 1.
    assert factors[5] == pytest.approx(0.5 * (1 - 0.9**6) / math.sqrt(1 - 0.999**6))


def test_learning_rate_schedule_without_warmup():
    assert learning_rate_factor(0, 10, 0) == pytest.approx(bias_correction(0))
    assert learning_rate_factor(5, 10, 0) / bias_correction(5) == pytest.approx(0.5)
    assert learning_rate_factor(10, 10, 0) == 0.0


def loss_batch(entity_labels: torch.Tensor, relation_labels: torch.Tensor) -> Batch:
    empty = torch.zeros(0, dtype=torch.long)
    return Batch(
        window_input_ids=empty,
        window_attention_mask=empty,
        token_index=empty,
        span_batch=empty,
        span_bounds=empty,
        span_widths=empty,
        span_words=empty,
        entity_labels=entity_labels,
        relation_labels=relation_labels,
    )


def test_spert_loss_is_ce_mean_plus_bce_mean():
    g = torch.Generator().manual_seed(0)
    entity_logits = torch.randn(7, 4, generator=g, dtype=torch.float64)
    entity_labels = torch.tensor([0, 1, 2, 3, 0, 0, 2])
    relation_logits = torch.randn(5, 3, generator=g, dtype=torch.float64)
    relation_labels = (torch.rand(5, 3, generator=g) > 0.5).double()

    ce = -entity_logits.log_softmax(-1)[torch.arange(7), entity_labels].mean()
    p = relation_logits.sigmoid()
    bce = -(relation_labels * p.log() + (1 - relation_labels) * (1 - p).log()).mean()
    loss = spert_loss(entity_logits, relation_logits, loss_batch(entity_labels, relation_labels))
    assert loss.item() == pytest.approx((ce + bce).item(), rel=1e-6)

    # No relation samples: the entity term alone.
    no_pairs = loss_batch(entity_labels, torch.zeros(0, 3))
    loss = spert_loss(entity_logits, torch.zeros(0, 3), no_pairs)
    assert loss.item() == pytest.approx(ce.item(), rel=1e-6)


def test_spert_loss_with_step_counts_adds_up_to_the_mean_of_the_whole_step():
    """Micro-batches (of other processes, or accumulated) divided by the step's sample counts
    sum to the loss of the step batch as one batch, whatever their sizes."""
    g = torch.Generator().manual_seed(1)
    entity_logits = torch.randn(10, 4, generator=g, dtype=torch.float64)
    entity_labels = torch.randint(0, 4, (10,), generator=g)
    relation_logits = torch.randn(6, 3, generator=g, dtype=torch.float64)
    relation_labels = (torch.rand(6, 3, generator=g) > 0.5).double()
    whole = spert_loss(entity_logits, relation_logits, loss_batch(entity_labels, relation_labels))
    parts = [(slice(0, 3), slice(0, 0)), (slice(3, 10), slice(0, 6))]  # uneven; one w/o pairs
    total = sum(
        spert_loss(
            entity_logits[e],
            relation_logits[r],
            loss_batch(entity_labels[e], relation_labels[r]),
            entity_count=10,
            relation_count=6 * 3,
        )
        for e, r in parts
    )
    assert total.item() == pytest.approx(whole.item(), rel=1e-6)  # float32 inside
    # A part without relation samples still reaches the relation head (gradient 0).
    head = torch.nn.Linear(2, 3)
    empty = head(torch.zeros(0, 2))
    loss = spert_loss(entity_logits[:3], empty, loss_batch(entity_labels[:3], torch.zeros(0, 3)))
    loss.backward()
    assert head.weight.grad is not None and not head.weight.grad.any()


def read_metrics(out: Path) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def test_train_writes_models_and_metrics(types, sentences, tiny_config, tmp_path):
    out = tmp_path / "out"
    config = tiny_config.replace(epochs=2, max_span_size=4)
    result = train(config, sentences, types, out, dev_data=sentences, device="cpu", progress=False)
    for name in ("best", "final"):
        assert (out / name / "spert.json").is_file()
        assert (out / name / "heads.safetensors").is_file()
    records = read_metrics(out)
    assert [r["epoch"] for r in records] == [1, 2]
    for record in records:
        assert math.isfinite(record["train_loss"]) and record["train_loss"] > 0
        assert set(record["dev"]) == {"entities", "relations", "relations_strict"}
    assert result.history == records
    assert result.best_epoch in (1, 2)
    assert not sorted(p.name for p in out.iterdir() if p.name.startswith("."))

    # out/final is the returned model.
    final = SpERT.load(out / "final", device="cpu")
    assert final.predict(sentences) == result.model.predict(sentences)


def test_same_seed_same_model(types, sentences, tiny_config, tmp_path):
    config = tiny_config.replace(epochs=2, max_span_size=4, lr=1e-3)
    runs = [
        train(config, sentences, types, tmp_path / f"run{i}", device="cpu", progress=False)
        for i in range(2)
    ]
    first, second = (r.model.model.state_dict() for r in runs)
    for name, value in first.items():
        assert torch.equal(value, second[name]), name
    losses = [[r["train_loss"] for r in read_metrics(tmp_path / f"run{i}")] for i in range(2)]
    assert losses[0] == losses[1]
    predictions = [r.model.predict(sentences) for r in runs]
    assert predictions[0] == predictions[1]
    assert not (tmp_path / "run0" / "best").exists()  # no dev set: no best model


def test_training_lowers_the_loss(types, sentences, tiny_config, tmp_path):
    config = tiny_config.replace(epochs=8, lr=1e-3, max_span_size=4)
    train(config, sentences, types, tmp_path / "out", device="cpu", progress=False)
    losses = [r["train_loss"] for r in read_metrics(tmp_path / "out")]
    assert len(losses) == 8
    assert losses[-1] < 0.7 * losses[0], losses


def test_bf16_without_native_cpu_support_trains_in_float32_with_a_warning(
    types, sentences, tiny_config, tmp_path, caplog, monkeypatch
):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    config = tiny_config.replace(max_span_size=4, keep_checkpoints=0)
    plain = train(config, sentences, types, tmp_path / "a", device="cpu", progress=False)
    with caplog.at_level(logging.WARNING, logger="spert.model.precision"):
        bf16 = train(
            config.replace(bf16=True),
            sentences,
            types,
            tmp_path / "b",
            device="cpu",
            progress=False,
        )
    assert "no native bfloat16" in caplog.text
    first, second = plain.model.model.state_dict(), bf16.model.model.state_dict()
    for name, value in first.items():
        assert torch.equal(value, second[name]), name


@pytest.mark.skipif(not precision.cpu_has_bf16(), reason="this CPU has no native bfloat16")
def test_bf16_on_a_cpu_with_native_support_trains_under_autocast(
    types, sentences, tiny_config, tmp_path
):
    config = tiny_config.replace(max_span_size=4, keep_checkpoints=0, epochs=4, lr=1e-3)
    plain = train(config, sentences, types, tmp_path / "a", device="cpu", progress=False)
    bf16 = train(
        config.replace(bf16=True), sentences, types, tmp_path / "b", device="cpu", progress=False
    )
    first, second = plain.model.model.state_dict(), bf16.model.model.state_dict()
    changed = [
        n for n, v in first.items() if v.is_floating_point() and not torch.equal(v, second[n])
    ]
    assert changed  # the forward pass ran in bfloat16: rounding differs
    assert all(v.dtype == torch.float32 for v in second.values() if v.is_floating_point())
    losses = [r["train_loss"] for r in read_metrics(tmp_path / "b")]
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]


def test_freeze_word_embeddings_keeps_them_and_trains_the_rest(
    types, sentences, tiny_config, tmp_path
):
    config = tiny_config.replace(
        max_span_size=4, keep_checkpoints=0, epochs=2, lr=1e-3, freeze_word_embeddings=True
    )
    trainer_module.seed_everything(config.seed)  # as the trainer does: the same initial model
    initial = SpERT.create(types, config, "cpu").model.state_dict()
    result = train(config, sentences, types, tmp_path / "out", device="cpu", progress=False)
    model = result.model.model
    embedding = model.encoder.get_input_embeddings().weight
    name = next(n for n, p in model.named_parameters() if p is embedding)
    assert not embedding.requires_grad
    assert torch.equal(model.state_dict()[name], initial[name])
    trained = [n for n, p in model.named_parameters() if p.requires_grad]
    unchanged = [n for n in trained if torch.equal(model.state_dict()[n], initial[n])]
    assert trained and all(".pooler." in n for n in unchanged)  # the pooler gets no gradient
    optimizer = make_optimizer(model, config)  # as the trainer builds it: no slot for them
    assert all(p is not embedding for g in optimizer.param_groups for p in g["params"])


def test_head_lr_must_not_be_negative():
    with pytest.raises(ConfigError, match="head_lr must not be negative"):
        SpertConfig(head_lr=-1e-3)


def test_head_lr_gives_the_heads_their_own_groups(types, tiny_config):
    model = SpERT.create(types, tiny_config.replace(word_shape_dim=4), device="cpu").model
    names = {id(p): n for n, p in model.named_parameters()}

    def group_names(config):
        return [
            (g["lr"], g["weight_decay"], sorted(names[id(p)] for p in g["params"]))
            for g in make_optimizer(model, config).param_groups
        ]

    # The paper's: one learning rate; biases and layer norms without weight decay.
    paper = group_names(tiny_config)
    assert [(lr, wd) for lr, wd, _ in paper] == [(5e-5, 0.01), (5e-5, 0.0)]
    assert "entity_classifier.bias" in paper[1][2] and "entity_classifier.weight" in paper[0][2]
    split = group_names(tiny_config.replace(head_lr=1e-3))
    assert [(lr, wd) for lr, wd, _ in split] == [
        (5e-5, 0.01),
        (5e-5, 0.0),
        (1e-3, 0.01),
        (1e-3, 0.0),
    ]
    assert all(n.startswith("encoder.") for _, _, group in split[:2] for n in group)
    assert sorted(split[2][2]) == [
        "entity_classifier.weight",
        "relation_classifier.weight",
        "shape_embedding.weight",
        "width_embedding.weight",
    ]
    assert split[3][2] == ["entity_classifier.bias", "relation_classifier.bias"]
    assert sum(len(g) for _, _, g in split) == sum(len(g) for _, _, g in paper)


def test_head_lr_trains_the_heads_alone_when_lr_is_zero(types, sentences, tiny_config, tmp_path):
    config = tiny_config.replace(lr=0.0, max_span_size=4, keep_checkpoints=0)
    # Same seed, so the same initial heads: with lr = head_lr = 0 nothing moves.
    still = train(config, sentences, types, tmp_path / "a", device="cpu", progress=False)
    heads_only = train(
        config.replace(head_lr=1e-3), sentences, types, tmp_path / "b", device="cpu", progress=False
    )
    pretrained = SpERT.create(types, config, device="cpu").model.state_dict()
    first, second = still.model.model.state_dict(), heads_only.model.model.state_dict()
    encoder = [n for n in first if n.startswith("encoder.")]
    heads = [n for n in first if not n.startswith("encoder.")]
    assert encoder and heads
    for name in encoder:
        assert torch.equal(first[name], pretrained[name]), name
        assert torch.equal(second[name], pretrained[name]), name
    for name in heads:
        assert not torch.equal(first[name], second[name]), name


def test_average_last_epochs_saves_the_mean_of_the_last_epochs_weights(
    types, sentences, tiny_config, tmp_path, monkeypatch
):
    from spert.training.trainer import Trainer

    snapshots: list[dict[str, torch.Tensor]] = []
    update = Trainer.update_average

    def recording_update(self: Trainer, last: bool) -> None:
        snapshots.append({k: v.detach().clone() for k, v in self.model.state_dict().items()})
        update(self, last)

    monkeypatch.setattr(Trainer, "update_average", recording_update)
    config = tiny_config.replace(epochs=3, max_span_size=4, lr=1e-3, average_last_epochs=2)
    out = tmp_path / "avg"
    result = train(config, sentences, types, out, dev_data=sentences, device="cpu", progress=False)
    assert len(snapshots) == 2  # after epochs 2 and 3
    final = SpERT.load(out / "final", device="cpu").model.state_dict()
    name = next(k for k, v in snapshots[0].items() if v.is_floating_point() and "encoder" in k)
    assert not torch.equal(snapshots[0][name], snapshots[1][name])  # the epochs differ
    for key, value in final.items():
        if value.is_floating_point():
            expected = (snapshots[0][key] + snapshots[1][key]) / 2
            torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6)
    # The final dev evaluation is of the averaged model, the one returned and saved.
    assert result.model.predict(sentences) == SpERT.load(out / "final").predict(sentences)
    assert read_metrics(out)[-1]["dev"] == result.model.evaluate(sentences)[0]


def test_average_last_epochs_must_not_be_negative():
    with pytest.raises(ConfigError, match="average_last_epochs"):
        SpertConfig(average_last_epochs=-1)


# -- ema_decay: an exponential moving average of the weights -------------------------------


def test_weight_ema_is_the_bias_corrected_moving_average():
    decay = 0.9
    model = torch.nn.Linear(3, 2)
    model.bias.requires_grad_(False)  # frozen: not averaged
    frozen = model.bias.detach().clone()
    ema = WeightEMA(model, decay)
    assert list(ema.average) == ["weight"]
    torch.manual_seed(0)
    seen = []
    for _ in range(5):
        with torch.no_grad():
            model.weight.copy_(torch.randn(2, 3))
        seen.append(model.weight.detach().clone())
        ema.update(model)
    # By hand: Adam's moment from zero, divided by 1 - decay^k.
    k = len(seen)
    moment = sum((1 - decay) * decay ** (k - i) * w for i, w in enumerate(seen, 1))
    expected = moment / (1 - decay**k)
    torch.testing.assert_close(ema.average["weight"], expected)
    assert ema.updates == k
    last = model.weight.detach().clone()
    with ema.applied(model):
        torch.testing.assert_close(model.weight.detach(), expected)
        assert torch.equal(model.bias.detach(), frozen)
    assert torch.equal(model.weight.detach(), last)  # its own weights again
    ema.copy_to(model)
    torch.testing.assert_close(model.weight.detach(), expected)


def test_weight_ema_first_update_is_the_weights_and_constants_stay_exact():
    model = torch.nn.Linear(4, 4)
    ema = WeightEMA(model, 0.999)
    with torch.no_grad():
        model.weight.mul_(3.0)
    ema.update(model)
    assert torch.equal(ema.average["weight"], model.weight.detach())  # a_1 = w_1
    for _ in range(50):
        ema.update(model)
    assert torch.equal(ema.average["weight"], model.weight.detach())
    assert torch.equal(ema.average["bias"], model.bias.detach())


def test_weight_ema_state_dict_round_trip():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 3)
    ema, copy = WeightEMA(model, 0.8), WeightEMA(model, 0.8)
    steps = [torch.randn(3, 3) for _ in range(6)]
    for w in steps[:3]:
        with torch.no_grad():
            model.weight.copy_(w)
        ema.update(model)
    copy.load_state_dict(ema.state_dict())
    for w in steps[3:]:  # both go on from where the first stood
        with torch.no_grad():
            model.weight.copy_(w)
        ema.update(model)
        copy.update(model)
    assert copy.updates == ema.updates == 6
    for name, value in ema.average.items():
        assert torch.equal(copy.average[name], value), name
    with pytest.raises(ValueError, match="another decay"):
        WeightEMA(model, 0.9).load_state_dict(ema.state_dict())


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"ema_decay": 0.999, "average_last_epochs": 2}, "ema_decay and average_last_epochs"),
        ({"ema_decay": 1.0}, r"ema_decay must lie in \[0, 1\)"),
        ({"ema_decay": -0.1}, r"ema_decay must lie in \[0, 1\)"),
    ],
)
def test_bad_ema_decay(changes, match):
    with pytest.raises(ConfigError, match=match):
        SpertConfig(**changes)


def test_ema_decay_evaluates_and_saves_the_moving_average(
    types, sentences, tiny_config, tmp_path, monkeypatch
):
    snapshots: list[dict[str, torch.Tensor]] = []
    update = WeightEMA.update

    def recording_update(self: WeightEMA, model: torch.nn.Module) -> None:
        snapshots.append({k: v.detach().clone() for k, v in model.named_parameters()})
        update(self, model)

    monkeypatch.setattr(WeightEMA, "update", recording_update)
    decay = 0.5
    config = tiny_config.replace(epochs=2, max_span_size=4, lr=1e-3, ema_decay=decay)
    out = tmp_path / "ema"
    result = train(config, sentences, types, out, dev_data=sentences, device="cpu", progress=False)
    assert len(snapshots) == 4  # 3 sentences in batches of 2: 2 steps an epoch
    final = SpERT.load(out / "final", device="cpu").model.state_dict()
    k = len(snapshots)
    for name in snapshots[0]:
        expected = sum(
            (1 - decay) * decay ** (k - i) * s[name] for i, s in enumerate(snapshots, 1)
        ) / (1 - decay**k)
        torch.testing.assert_close(final[name], expected, rtol=1e-5, atol=1e-6)
    name = "relation_classifier.weight"
    assert not torch.equal(final[name], snapshots[-1][name])  # not the last step's weights
    # The dev evaluations are of the averaged weights: the last one of the final model.
    assert result.model.predict(sentences) == SpERT.load(out / "final").predict(sentences)
    assert read_metrics(out)[-1]["dev"] == result.model.evaluate(sentences)[0]
    # The best model too: epoch 1's dev evaluation was of the average after its 2 steps.
    best = SpERT.load(out / "best", device="cpu").model.state_dict()
    if result.best_epoch == 1:
        w1, w2 = snapshots[0][name], snapshots[1][name]
        after_two = ((1 - decay) * decay * w1 + (1 - decay) * w2) / (1 - decay**2)
        torch.testing.assert_close(best[name], after_two, rtol=1e-5, atol=1e-6)
    else:
        torch.testing.assert_close(best[name], final[name])
    # Training itself went on with the model's own weights: as a run without the average.
    plain = train(
        config.replace(ema_decay=0.0), sentences, types, tmp_path / "plain", progress=False
    )
    for key, value in plain.model.model.named_parameters():
        assert torch.equal(value.detach(), snapshots[-1][key]), key


# -- rdrop_alpha: R-Drop, two dropout passes kept consistent ------------------------------


def test_rdrop_divergence_is_half_the_symmetric_kl():
    g = torch.Generator().manual_seed(2)
    entity_a, entity_b = (torch.randn(6, 4, generator=g, dtype=torch.float64) for _ in "ab")
    relation_a, relation_b = (torch.randn(5, 3, generator=g, dtype=torch.float64) for _ in "ab")

    def categorical_kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
        p, q = p_logits.softmax(-1), q_logits.softmax(-1)
        return (p * (p.log() - q.log())).sum(-1)

    def bernoulli_kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
        p, q = p_logits.sigmoid(), q_logits.sigmoid()
        return p * (p.log() - q.log()) + (1 - p) * ((1 - p).log() - (1 - q).log())

    entity_kl = categorical_kl(entity_a, entity_b) + categorical_kl(entity_b, entity_a)
    relation_kl = bernoulli_kl(relation_a, relation_b) + bernoulli_kl(relation_b, relation_a)
    first, second = (entity_a, relation_a), (entity_b, relation_b)
    expected = 0.5 * (entity_kl.mean() + relation_kl.mean())
    assert rdrop_divergence(first, second).item() == pytest.approx(expected.item(), rel=1e-6)
    assert rdrop_divergence(second, first).item() == pytest.approx(expected.item(), rel=1e-6)
    # Step counts divide the sums, as in spert_loss.
    counted = 0.5 * (entity_kl.sum() / 10 + relation_kl.sum() / 30)
    divergence = rdrop_divergence(first, second, entity_count=10, relation_count=30)
    assert divergence.item() == pytest.approx(counted.item(), rel=1e-6)
    # Equal predictions diverge by nothing; no relation samples leave the entity term.
    assert rdrop_divergence(first, first).item() == 0.0
    no_pairs = (entity_a, torch.zeros(0, 3)), (entity_b, torch.zeros(0, 3))
    assert rdrop_divergence(*no_pairs).item() == pytest.approx(0.5 * entity_kl.mean().item())


def test_rdrop_trains_on_two_dropout_passes(types, sentences, tiny_config, tmp_path, monkeypatch):
    calls: list[int] = []
    forward = SpertModel.forward

    def counting_forward(self: SpertModel, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training:
            calls.append(1)
        return forward(self, batch)

    monkeypatch.setattr(SpertModel, "forward", counting_forward)
    config = tiny_config.replace(epochs=1, max_span_size=4)
    plain = train(config, sentences, types, tmp_path / "plain", progress=False)
    plain_calls = len(calls)
    assert plain_calls == 2  # 3 sentences in batches of 2
    rdrop = train(config.replace(rdrop_alpha=1.0), sentences, types, tmp_path / "r", progress=False)
    assert len(calls) - plain_calls == 2 * plain_calls
    loss = read_metrics(tmp_path / "r")[-1]["train_loss"]
    assert math.isfinite(loss) and loss > 0
    name = "relation_classifier.weight"
    trained = rdrop.model.model.state_dict()[name]
    assert not torch.equal(trained, plain.model.model.state_dict()[name])


def test_bad_rdrop_alpha():
    with pytest.raises(ConfigError, match="rdrop_alpha must not be negative"):
        SpertConfig(rdrop_alpha=-0.5)
