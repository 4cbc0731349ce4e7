"""RangePooler against a naive per-range reference, and the SpERT model's heads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spert.api import SpERT
from spert.config import ConfigError, SpertConfig
from spert.data import Sentence, Types
from spert.model.candidates import Batch, TrainingSample, collate, sample_training
from spert.model.modeling import RangePooler, boundary_embeddings
from spert.training import spert_loss

MODES = ("max", "sum", "mean")


pytestmark = pytest.mark.usefixtures("one_thread")


def naive_pool(
    hidden: torch.Tensor,
    batch_index: torch.Tensor,
    start: torch.Tensor,
    end: torch.Tensor,
    mode: str,
) -> torch.Tensor:
    rows = []
    for b, s, e in zip(batch_index.tolist(), start.tolist(), end.tolist(), strict=True):
        if e <= s:
            rows.append(hidden.new_zeros(hidden.shape[-1]))
        elif mode == "max":
            rows.append(hidden[b, s:e].max(0).values)
        elif mode == "sum":
            rows.append(hidden[b, s:e].sum(0))
        else:
            rows.append(hidden[b, s:e].mean(0))
    return torch.stack(rows)


def random_ranges(
    batch_size: int, seq_len: int, count: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random ranges plus every length 0..seq_len, full-length, empty and reversed ones."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(0, seq_len + 1, (count,), generator=g)
    b = torch.randint(0, seq_len + 1, (count,), generator=g)
    start, end = torch.minimum(a, b), torch.maximum(a, b)
    extra_start, extra_end = [], []
    for length in range(seq_len + 1):  # every length, at the left and the right edge
        extra_start += [0, seq_len - length]
        extra_end += [length, seq_len]
    extra_start += [0, 5 % seq_len, seq_len, 7 % seq_len]  # full, empty, empty at end, reversed
    extra_end += [seq_len, 5 % seq_len, seq_len, 7 % seq_len - 1]
    start = torch.cat([start, torch.tensor(extra_start)])
    end = torch.cat([end, torch.tensor(extra_end)])
    batch_index = torch.randint(0, batch_size, (len(start),), generator=g)
    return batch_index, start, end


@pytest.mark.parametrize("seq_len", [37, 32, 1])
@pytest.mark.parametrize("mode", MODES)
def test_range_pooler_matches_naive_reference(mode: str, seq_len: int):
    torch.manual_seed(1)
    hidden = torch.randn(3, seq_len, 8, dtype=torch.float64)
    batch_index, start, end = random_ranges(3, seq_len, 400)
    assert (end == start).any() and ((start == 0) & (end == seq_len)).any()
    pooled = RangePooler(hidden, mode)(batch_index, start, end)
    expected = naive_pool(hidden, batch_index, start, end, mode)
    assert pooled.shape == (len(start), 8)
    torch.testing.assert_close(pooled, expected, rtol=0, atol=1e-10)
    assert (pooled[end <= start] == 0).all()


@pytest.mark.parametrize("mode", MODES)
def test_range_pooler_float32_and_reuse(mode: str):
    """One pooler answers several calls (cached table / prefix sums) in float32."""
    torch.manual_seed(2)
    hidden = torch.randn(3, 37, 8)
    pooler = RangePooler(hidden, mode)
    for seed in range(3):
        batch_index, start, end = random_ranges(3, 37, 100, seed)
        expected = naive_pool(hidden, batch_index, start, end, mode)
        torch.testing.assert_close(pooler(batch_index, start, end), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_range_pooler_gradients_match_naive_reference(mode: str):
    torch.manual_seed(3)
    base = torch.randn(3, 37, 8, dtype=torch.float64)  # random floats: no ties in a range
    batch_index, start, end = random_ranges(3, 37, 300, seed=4)
    weights = torch.randn(len(start), 8, dtype=torch.float64)

    hidden = base.clone().requires_grad_(True)
    (RangePooler(hidden, mode)(batch_index, start, end) * weights).sum().backward()
    reference = base.clone().requires_grad_(True)
    (naive_pool(reference, batch_index, start, end, mode) * weights).sum().backward()
    assert hidden.grad is not None and reference.grad is not None
    torch.testing.assert_close(hidden.grad, reference.grad, rtol=0, atol=1e-10)

    # Plain sum of outputs, as well: each range's maximum gets exactly one unit of gradient.
    hidden.grad = None
    RangePooler(hidden, mode)(batch_index, start, end).sum().backward()
    reference.grad = None
    naive_pool(reference, batch_index, start, end, mode).sum().backward()
    torch.testing.assert_close(hidden.grad, reference.grad, rtol=0, atol=1e-10)


# -- the model ----------------------------------------------------------------------------


def make_spert(types: Types, config: SpertConfig) -> SpERT:
    torch.manual_seed(0)
    return SpERT.create(types, config, "cpu")


def training_batch(spert: SpERT, sentences: list[Sentence], types: Types, seed: int = 0) -> Batch:
    """Samples drawn with the default sampling options (training options, not the model's)."""
    config = SpertConfig(**spert.config.to_dict())
    rng = np.random.default_rng(seed)
    encoded = spert.encode(sentences)
    samples = [
        sample_training(s, e, types, config, rng) for s, e in zip(sentences, encoded, strict=True)
    ]
    return collate(encoded, [s.spans for s in samples], spert.pad_token_id, samples)


def test_forward_shapes(types, sentences, tiny_config):
    spert = make_spert(types, tiny_config)
    batch = training_batch(spert, sentences, types)
    assert batch.pairs is not None
    n_spans, n_pairs = len(batch.span_batch), len(batch.pairs)
    assert n_spans > 0 and n_pairs > 0
    entity_logits, relation_logits = spert.model(batch)
    assert entity_logits.shape == (n_spans, len(types.entities) + 1)
    assert relation_logits.shape == (n_pairs, len(types.relations))
    assert torch.isfinite(entity_logits).all() and torch.isfinite(relation_logits).all()


def pair_batch(spert: SpERT, sentences: list[Sentence], types: Types) -> Batch:
    """Sentence 0 ("Mary works for Acme Corp ..."): hand-picked spans and pairs."""
    spans = np.array([[0, 1], [1, 2], [3, 5], [5, 6], [0, 2]])
    # (0,1) and (1,0): adjacent; (0,2): "works for" between; (2,3): adjacent; (4,1): overlap
    pairs = np.array([[0, 1], [1, 0], [0, 2], [2, 3], [4, 1], [2, 0]])
    n_rel = len(types.relations)
    labels = np.zeros(len(spans), dtype=np.int64)
    sample = TrainingSample(spans, labels, pairs, np.zeros((len(pairs), n_rel), np.float32))
    encoded = spert.encode(sentences[:1])
    return collate(encoded, [spans], spert.pad_token_id, [sample])


def relation_features(spert: SpERT, batch: Batch) -> torch.Tensor:
    """The relation classifier's input for every pair of the batch."""
    captured: list[torch.Tensor] = []
    handle = spert.model.relation_classifier.register_forward_pre_hook(
        lambda _module, args: captured.append(args[0].detach())
    )
    try:
        with torch.no_grad():
            spert.model(batch)
    finally:
        handle.remove()
    assert len(captured) == 1
    return captured[0]


@pytest.mark.parametrize("context", ["local", "sentence", "none"])
def test_relation_context_modes(types, sentences, tiny_config, context):
    spert = make_spert(types, tiny_config.replace(relation_context=context))
    spert.model.eval()  # no dropout: features are exact
    batch = pair_batch(spert, sentences, types)
    assert batch.pairs is not None
    hidden_size = spert.model.encoder.config.hidden_size
    span_dim = hidden_size + tiny_config.width_embedding_dim
    features = relation_features(spert, batch)
    assert features.shape == (len(batch.pairs), hidden_size + 2 * span_dim)
    with torch.no_grad():
        hidden = spert.model.encode(batch)
    contexts = features[:, span_dim : span_dim + hidden_size]
    bounds = batch.span_bounds
    for p, (h, t) in enumerate(batch.pairs.tolist()):
        if context == "none":
            expected = torch.zeros(hidden_size)
        elif context == "sentence":
            expected = hidden[0, 0]
        else:
            lo = min(int(bounds[h, 1]), int(bounds[t, 1]))
            hi = max(int(bounds[h, 0]), int(bounds[t, 0]))
            expected = hidden[0, lo:hi].max(0).values if hi > lo else torch.zeros(hidden_size)
        torch.testing.assert_close(contexts[p], expected)
    if context == "local":
        # Adjacent spans (and overlapping ones) get an all-zero context; a gap does not.
        for p in (0, 1, 3, 4):
            assert (contexts[p] == 0).all()
        assert (contexts[2] != 0).any() and (contexts[5] != 0).any()
        torch.testing.assert_close(contexts[2], contexts[5])  # symmetric in head and tail
    # Span parts: the head's and tail's span representations.
    with torch.no_grad():
        spans = spert.model.span_representations(RangePooler(hidden, "max"), batch)
    torch.testing.assert_close(features[:, :span_dim], spans[batch.pairs[:, 0]])
    torch.testing.assert_close(features[:, -span_dim:], spans[batch.pairs[:, 1]])


def test_local_context_via_range_pooler(types, sentences, tiny_config):
    """relation_logits asks the pooler for the gap between the two spans."""
    spert = make_spert(types, tiny_config)
    batch = pair_batch(spert, sentences, types)
    calls: list[tuple[list[int], list[int]]] = []

    class Recording(RangePooler):
        def __call__(self, batch_index, start, end):
            calls.append((start.tolist(), end.tolist()))
            return super().__call__(batch_index, start, end)

    spert.model.eval()
    with torch.no_grad():
        hidden = spert.model.encode(batch)
        pooler = Recording(hidden, "max")
        spans = spert.model.span_representations(pooler, batch)
        assert batch.pairs is not None
        spert.model.relation_logits(pooler, spans, hidden[:, 0], batch, batch.pairs)
    start, end = calls[-1]
    lengths = [e - s for s, e in zip(start, end, strict=True)]
    # pairs: adjacent, adjacent, gap "works for" (2 subwords), adjacent, overlap, gap
    assert [n <= 0 for n in lengths] == [True, True, False, True, True, False]
    assert lengths[2] == lengths[5] == 2


def test_gradients_reach_every_head(types, sentences, tiny_config):
    spert = make_spert(types, tiny_config)
    model = spert.model
    model.train()
    batch = training_batch(spert, sentences, types)
    entity_logits, relation_logits = model(batch)
    assert relation_logits.numel() > 0
    spert_loss(entity_logits, relation_logits, batch).backward()
    checked = {
        "width_embedding": model.width_embedding.weight,
        "entity_classifier.weight": model.entity_classifier.weight,
        "entity_classifier.bias": model.entity_classifier.bias,
        "relation_classifier.weight": model.relation_classifier.weight,
        "relation_classifier.bias": model.relation_classifier.bias,
        "encoder word embeddings": model.encoder.get_input_embeddings().weight,
    }
    for name, param in checked.items():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("pooling", ["sum", "mean"])
def test_sum_and_mean_pooling_models_run(types, sentences, tiny_config, pooling):
    spert = make_spert(types, tiny_config.replace(pooling=pooling))
    batch = training_batch(spert, sentences, types)
    entity_logits, relation_logits = spert.model(batch)
    assert torch.isfinite(entity_logits).all() and torch.isfinite(relation_logits).all()
    spert_loss(entity_logits, relation_logits, batch).backward()
    assert spert.model.entity_classifier.weight.grad is not None
    (prediction,) = spert.predict([["Mary", "works", "in", "Boston"]])
    assert all(0 <= e.start < e.end <= 4 for e in prediction.entities)


def test_word_shapes_reach_span_representations(types, sentences, bert_uncased_dir):
    """An uncased encoder sees "Boston" and "boston" alike; with word_shape_dim the spans that
    start or end at that word differ, and every other span stays the same."""
    config = SpertConfig(encoder=str(bert_uncased_dir), word_shape_dim=4)
    spert = make_spert(types, config)
    spert.model.eval()
    words = sentences[0].tokens  # "Mary works for Acme Corp in Boston and ..."
    lowered = [w.lower() if i == 6 else w for i, w in enumerate(words)]
    spans = np.array([[5, 6], [6, 7], [5, 7], [6, 8], [0, 2], [3, 5]])

    def representations(tokens: list[str]) -> torch.Tensor:
        batch = collate(spert.encode([Sentence(tokens)]), [spans], spert.pad_token_id)
        assert batch.word_shapes is not None
        with torch.no_grad():
            hidden = spert.model.encode(batch)
            return spert.model.span_representations(RangePooler(hidden, "max"), batch)

    cased, uncased = representations(words), representations(lowered)
    hidden = spert.model.encoder.config.hidden_size
    assert cased.shape == (len(spans), hidden + config.width_embedding_dim + 2 * 4)
    torch.testing.assert_close(cased[:, :hidden], uncased[:, :hidden])  # encoder: no casing
    changed = (cased != uncased).any(dim=1).tolist()
    assert changed == [False, True, True, True, False, False]


def test_word_shape_model_trains_and_predicts(types, sentences, tiny_config):
    spert = make_spert(types, tiny_config.replace(word_shape_dim=8))
    batch = training_batch(spert, sentences, types)
    entity_logits, relation_logits = spert.model(batch)
    spert_loss(entity_logits, relation_logits, batch).backward()
    grad = spert.model.shape_embedding.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    spert.model.eval()
    (prediction,) = spert.predict([["Mary", "works", "in", "Boston"]])
    assert all(0 <= e.start < e.end <= 4 for e in prediction.entities)


# -- span_boundary: the first and last subword beside the pool -----------------------------


def span_parts(spert: SpERT, batch: Batch, hidden: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return spert.model.span_representations(RangePooler(hidden, "max"), batch)


def test_boundary_embeddings_gather_first_and_last_subword():
    hidden = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)  # (B, T, H)
    spans = torch.tensor([[0, 2], [1, 1], [2, 5], [4, 5]])
    batch = Batch(
        window_input_ids=torch.zeros(2, 5, dtype=torch.long),
        window_attention_mask=torch.ones(2, 5, dtype=torch.long),
        token_index=torch.arange(10).reshape(2, 5),
        span_batch=torch.tensor([0, 0, 1, 1]),
        span_bounds=spans,
        span_widths=spans[:, 1] - spans[:, 0],
        span_words=spans,
    )
    first, last = boundary_embeddings(hidden, batch)
    zero = torch.zeros(3)  # the empty span [1, 1): no subword, zeros as its pool
    expected_first = [hidden[0, 0], zero, hidden[1, 2], hidden[1, 4]]
    expected_last = [hidden[0, 1], zero, hidden[1, 4], hidden[1, 4]]
    torch.testing.assert_close(first, torch.stack(expected_first))
    torch.testing.assert_close(last, torch.stack(expected_last))


def test_span_boundary_shapes(types, sentences, tiny_config):
    config = tiny_config.replace(span_boundary=True)
    spert = make_spert(types, config)
    hidden_size = spert.model.encoder.config.hidden_size
    span_dim = 3 * hidden_size + config.width_embedding_dim
    assert spert.model.entity_classifier.in_features == span_dim + hidden_size
    assert spert.model.relation_classifier.in_features == 2 * span_dim + hidden_size
    batch = training_batch(spert, sentences, types)
    assert batch.pairs is not None
    entity_logits, relation_logits = spert.model(batch)
    assert entity_logits.shape == (len(batch.span_batch), len(types.entities) + 1)
    assert relation_logits.shape == (len(batch.pairs), len(types.relations))
    spert.model.eval()
    with torch.no_grad():
        hidden = spert.model.encode(batch)
    spans = span_parts(spert, batch, hidden)
    assert spans.shape == (len(batch.span_batch), span_dim)
    # The relation's argument parts are the spans' representations, boundaries included.
    features = relation_features(spert, batch)
    torch.testing.assert_close(features[:, :span_dim], spans[batch.pairs[:, 0]])
    torch.testing.assert_close(features[:, -span_dim:], spans[batch.pairs[:, 1]])


def test_span_boundary_sees_what_the_max_pool_does_not(types, sentences, tiny_config):
    """A span's first (or last) subword set to the span's max-pool leaves the pool as it was,
    but not the representation."""
    spert = make_spert(types, tiny_config.replace(span_boundary=True))
    spert.model.eval()
    spans = np.array([[3, 5], [0, 1], [6, 7]])  # "Acme Corp" (2 subwords), "Mary", "Boston"
    batch = collate(spert.encode(sentences[:1]), [spans], spert.pad_token_id)
    with torch.no_grad():
        hidden = spert.model.encode(batch)
    start, end = batch.span_bounds[0].tolist()
    assert end - start >= 2
    pool = hidden[0, start:end].max(0).values
    before = span_parts(spert, batch, hidden)
    h = hidden.shape[-1]
    for position, part in ((start, slice(h, 2 * h)), (end - 1, slice(2 * h, 3 * h))):
        changed = hidden.clone()
        changed[0, position] = pool
        after = span_parts(spert, batch, changed)
        torch.testing.assert_close(after[:, :h], before[:, :h])  # the pool: unchanged
        assert (after[0, part] != before[0, part]).any()  # the boundary: changed
        torch.testing.assert_close(after[0, part], pool)
        torch.testing.assert_close(after[1:], before[1:])  # other spans: unchanged


def test_span_boundary_off_is_the_paper_representation(types, sentences, tiny_config):
    off = make_spert(types, tiny_config)
    on = make_spert(types, tiny_config.replace(span_boundary=True))
    hidden_size = off.model.encoder.config.hidden_size
    width = tiny_config.width_embedding_dim
    assert off.model.entity_classifier.in_features == 2 * hidden_size + width
    assert off.model.relation_classifier.in_features == 3 * hidden_size + 2 * width
    batch = training_batch(off, sentences, types)
    off.model.eval()
    on.model.eval()
    with torch.no_grad():
        hidden = off.model.encode(batch)
        pooled = RangePooler(hidden, "max")(
            batch.span_batch, batch.span_bounds[:, 0], batch.span_bounds[:, 1]
        )
        paper = torch.cat([pooled, off.model.width_embedding(batch.span_widths)], dim=-1)
    without = span_parts(off, batch, hidden)
    assert torch.equal(without, paper)
    # With boundaries on, the same pool and width embedding, and the two subwords between.
    with_boundary = span_parts(on, batch, hidden)
    kept = torch.cat([with_boundary[:, :hidden_size], with_boundary[:, 3 * hidden_size :]], -1)
    assert torch.equal(kept, paper)


def test_span_boundary_model_trains_saves_and_loads(types, sentences, tiny_config, tmp_path):
    spert = make_spert(types, tiny_config.replace(span_boundary=True, max_span_size=4))
    batch = training_batch(spert, sentences, types)
    entity_logits, relation_logits = spert.model(batch)
    spert_loss(entity_logits, relation_logits, batch).backward()
    grad = spert.model.encoder.get_input_embeddings().weight.grad
    assert grad is not None and grad.abs().sum() > 0
    spert.model.eval()
    spert.save(tmp_path / "model")
    loaded = SpERT.load(tmp_path / "model", device="cpu")
    assert loaded.config.span_boundary
    assert loaded.predict(sentences) == spert.predict(sentences)


# -- relation_type_dim: the arguments' entity types in the relation representation -----------


def test_relation_logits_depend_on_the_argument_types(types, sentences, tiny_config):
    spert = make_spert(types, tiny_config.replace(relation_type_dim=4))
    model = spert.model
    model.eval()
    assert model.relation_type_embedding is not None
    assert model.relation_type_embedding.weight.shape == (len(types.entities) + 1, 4)
    hidden_size = model.encoder.config.hidden_size
    span_dim = hidden_size + tiny_config.width_embedding_dim
    assert model.relation_classifier.in_features == hidden_size + 2 * span_dim + 2 * 4
    batch = pair_batch(spert, sentences, types)
    assert batch.pairs is not None
    with torch.no_grad():
        hidden = model.encode(batch)
        pooler = RangePooler(hidden, "max")
        spans = model.span_representations(pooler, batch)

        def logits(pair_types: list[list[int]]) -> torch.Tensor:
            given = torch.tensor(pair_types).expand(len(batch.pairs), 2)
            return model.relation_logits(pooler, spans, hidden[:, 0], batch, batch.pairs, given)

        peop_org, org_peop, peop_loc = logits([[1, 2]]), logits([[2, 1]]), logits([[1, 3]])
    assert logits([[1, 2]]).shape == (len(batch.pairs), len(types.relations))
    assert not torch.allclose(peop_org, org_peop)  # head's and tail's types are apart
    assert not torch.allclose(peop_org, peop_loc)
    with pytest.raises(ValueError, match="relation_type_dim"):
        model.relation_logits(pooler, spans, hidden[:, 0], batch, batch.pairs)
    # Off (the paper's): no embedding, and the types change nothing.
    off = make_spert(types, tiny_config).model
    off.eval()
    assert off.relation_type_embedding is None
    with torch.no_grad():
        plain = off.relation_logits(pooler, spans, hidden[:, 0], batch, batch.pairs)
        typed = off.relation_logits(
            pooler, spans, hidden[:, 0], batch, batch.pairs, batch.pairs * 0 + 1
        )
    assert torch.equal(plain, typed)


def test_training_uses_the_gold_types_of_the_relation_samples(types, sentences, tiny_config):
    spert = make_spert(types, tiny_config.replace(relation_type_dim=4))
    spert.model.eval()  # no dropout: features are exact
    batch = training_batch(spert, sentences, types)
    assert batch.pairs is not None and batch.entity_labels is not None
    gold = batch.entity_labels[batch.pairs]  # (P, 2)
    assert (gold[: len(sentences[0].relations)] > 0).all()  # positives pair gold entities
    features = relation_features(spert, batch)
    embedding = spert.model.relation_type_embedding
    assert embedding is not None
    torch.testing.assert_close(features[:, -8:-4], embedding.weight[gold[:, 0]].detach())
    torch.testing.assert_close(features[:, -4:], embedding.weight[gold[:, 1]].detach())
    # Other gold labels: the relation logits change, the entity logits do not.
    relabeled = Batch(**{**vars(batch), "entity_labels": batch.entity_labels % 3 + 1})
    with torch.no_grad():
        entity_a, relation_a = spert.model(batch)
        entity_b, relation_b = spert.model(relabeled)
    torch.testing.assert_close(entity_a, entity_b)
    assert not torch.allclose(relation_a, relation_b)
    # The embedding trains.
    spert.model.train()
    spert_loss(*spert.model(batch), batch).backward()
    assert embedding.weight.grad is not None and embedding.weight.grad.abs().sum() > 0


def test_relation_type_dim_must_not_be_negative():
    with pytest.raises(ConfigError, match="relation_type_dim must not be negative"):
        SpertConfig(relation_type_dim=-1)


def test_relation_type_model_trains_saves_and_loads(types, sentences, tiny_config, tmp_path):
    spert = make_spert(types, tiny_config.replace(relation_type_dim=8, max_span_size=4))
    spert.model.eval()
    with torch.no_grad():  # keep some entities, so that relations are scored
        spert.model.entity_classifier.bias[0] = -5.0
    spert.save(tmp_path / "model")
    loaded = SpERT.load(tmp_path / "model", device="cpu")
    assert loaded.config.relation_type_dim == 8
    predicted = loaded.predict(sentences)
    assert predicted == spert.predict(sentences)
    assert any(s.relations for s in predicted)
