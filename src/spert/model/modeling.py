"""The SpERT model: one encoder pass, then light span and pair heads.

Span and context pooling reads only the pooled positions: max-pooling uses a sparse table
(range maxima over power-of-two blocks), sum and mean use prefix sums, so no
(spans x sequence length x hidden) tensor is ever built.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel

from spert.config import ModelConfig
from spert.model.candidates import Batch
from spert.model.encoding import WORD_SHAPES


class RangePooler:
    """Pools ``hidden[b, start:end]`` for many ranges at once. Empty ranges pool to zeros."""

    def __init__(self, hidden: torch.Tensor, mode: str) -> None:
        self.hidden = hidden  # (B, T, H)
        self.mode = mode
        self._table: torch.Tensor | None = None  # (K, B, T, H) level k: max over [i, i + 2**k)
        self._prefix: torch.Tensor | None = None  # (B, T + 1, H) prefix sums

    def _sparse_table(self) -> torch.Tensor:
        if self._table is None:
            hidden = self.hidden
            batch_size, seq_len, dim = hidden.shape
            levels = seq_len.bit_length()  # 2**k <= seq_len for k < levels
            if hidden.requires_grad and torch.is_grad_enabled():
                table = [hidden]
                for k in range(1, levels):
                    prev, step = table[-1], 2 ** (k - 1)
                    # Blocks running past the end are clipped; no query reads beyond its range.
                    shifted = torch.cat([prev[:, step:], prev[:, -1:].expand(-1, step, -1)], 1)
                    table.append(torch.maximum(prev, shifted))
                self._table = torch.stack(table)
            else:
                # Inference: fill one preallocated table in place (no concatenated copies).
                # Entries whose block runs past the end keep the level below; no query reads
                # them, as both blocks of a query lie inside its range.
                self._table = hidden.new_empty(levels, batch_size, seq_len, dim)
                self._table[0] = hidden
                for k in range(1, levels):
                    prev, step = self._table[k - 1], 2 ** (k - 1)
                    level = self._table[k]
                    torch.maximum(prev[:, :-step], prev[:, step:], out=level[:, :-step])
                    level[:, -step:] = prev[:, -step:]
        return self._table

    def __call__(
        self, batch_index: torch.Tensor, start: torch.Tensor, end: torch.Tensor
    ) -> torch.Tensor:
        """batch_index, start, end: (N,) -> pooled (N, H)."""
        hidden = self.hidden
        batch_size, seq_len, dim = hidden.shape
        length = end - start
        empty = length <= 0
        if self.mode == "max":
            table = self._sparse_table().reshape(-1, dim)  # (K * B * T, H)
            k = torch.floor(torch.log2(length.clamp(min=1).float())).long()  # (N,)
            row = (k * batch_size + batch_index) * seq_len
            left = table[row + start.clamp(max=seq_len - 1)]
            right = table[row + (end - 2**k).clamp(min=0, max=seq_len - 1)]
            pooled = torch.maximum(left, right)  # two blocks that cover [start, end)
        else:
            if self._prefix is None:
                zero = hidden.new_zeros(batch_size, 1, dim)
                self._prefix = torch.cat([zero, hidden.cumsum(1)], 1)
            prefix = self._prefix
            pooled = (
                prefix[batch_index, end.clamp(0, seq_len)]
                - prefix[batch_index, start.clamp(0, seq_len)]
            )
            if self.mode == "mean":
                pooled = pooled / length.clamp(min=1).unsqueeze(-1).to(pooled.dtype)
        if bool(empty.any()):
            pooled = pooled.masked_fill(empty.unsqueeze(-1), 0.0)
        return pooled


def boundary_embeddings(hidden: torch.Tensor, batch: Batch) -> list[torch.Tensor]:
    """The encoder embeddings of each span's first and last subword (``span_boundary``, as in
    PURE): two (N, H) tensors gathered from hidden (B, T, H). A span without subwords gets
    zeros, as its pool does."""
    seq_len = hidden.shape[1]
    start, end = batch.span_bounds[:, 0], batch.span_bounds[:, 1]  # (N,) subword [start, end)
    empty = (end <= start).unsqueeze(-1)  # (N, 1)
    first = hidden[batch.span_batch, start.clamp(0, seq_len - 1)]  # (N, H)
    last = hidden[batch.span_batch, (end - 1).clamp(0, seq_len - 1)]  # (N, H)
    return [first.masked_fill(empty, 0.0), last.masked_fill(empty, 0.0)]


class SpertModel(nn.Module):
    def __init__(
        self,
        encoder: PreTrainedModel,
        num_entity_types: int,
        num_relation_types: int,
        config: ModelConfig,
    ) -> None:
        super().__init__()
        hidden = encoder.config.hidden_size
        width = config.width_embedding_dim
        self.config = config
        self.encoder = encoder
        self.width_embedding = nn.Embedding(config.num_width_embeddings, width)
        self.shape_embedding: nn.Embedding | None = None
        if config.word_shape_dim > 0:
            self.shape_embedding = nn.Embedding(len(WORD_SHAPES), config.word_shape_dim)
            width += 2 * config.word_shape_dim  # first and last word's casing
        # span: [pool (; first subword; last subword); width (; shapes)]
        span = (3 if config.span_boundary else 1) * hidden + width
        self.relation_type_embedding: nn.Embedding | None = None
        argument_types = 0
        if config.relation_type_dim > 0:
            # Index 0 = "none": a weak negative sample may pair spans that are no entity.
            self.relation_type_embedding = nn.Embedding(
                num_entity_types + 1, config.relation_type_dim
            )
            argument_types = 2 * config.relation_type_dim  # head's and tail's entity type
        # entity: [span; sentence]   relation: [span 1; context; span 2 (; type 1; type 2)]
        self.entity_classifier = nn.Linear(span + hidden, num_entity_types + 1)
        self.relation_classifier = nn.Linear(hidden + 2 * span + argument_types, num_relation_types)
        self.dropout = nn.Dropout(config.dropout)

    def encode(self, batch: Batch) -> torch.Tensor:
        """Encoder pass over every window, gathered back into sentences: (B, T, H)."""
        windows = self.encoder(
            input_ids=batch.window_input_ids, attention_mask=batch.window_attention_mask
        ).last_hidden_state  # (W, L, H)
        windows = windows.float()  # a bfloat16 encoder (runtime torch-bf16) feeds float32 heads
        return windows.reshape(-1, windows.shape[-1])[batch.token_index]  # (B, T, H)

    def span_representations(self, pooler: RangePooler, batch: Batch) -> torch.Tensor:
        """entity(s) = [pool of its subwords (; its first and last subword's embeddings); width
        embedding (; first and last word's casing)]:
        (N, H (+ 2 * H) + width (+ 2 * word_shape_dim))."""
        pooled = pooler(batch.span_batch, batch.span_bounds[:, 0], batch.span_bounds[:, 1])
        parts = [pooled]
        if self.config.span_boundary:
            parts += boundary_embeddings(pooler.hidden, batch)
        widths = batch.span_widths.clamp(max=self.width_embedding.num_embeddings - 1)
        parts.append(self.width_embedding(widths))
        if self.shape_embedding is not None:
            if batch.word_shapes is None:
                raise ValueError("word_shape_dim > 0 needs word_shapes in the batch")
            first = batch.word_shapes[batch.span_batch, batch.span_words[:, 0]]  # (N,)
            last = batch.word_shapes[batch.span_batch, batch.span_words[:, 1] - 1]  # (N,)
            parts += [self.shape_embedding(first), self.shape_embedding(last)]
        return torch.cat(parts, dim=-1)

    def entity_logits(
        self, spans: torch.Tensor, sentence: torch.Tensor, span_batch: torch.Tensor
    ) -> torch.Tensor:
        """spans (N, S), sentence (B, H) -> logits (N, 1 + entity types)."""
        if self.training:
            features = torch.cat([spans, sentence[span_batch]], dim=-1)
            return self.entity_classifier(self.dropout(features))
        # Without dropout the classifier splits into a span part and a per-sentence part,
        # which is computed once per sentence instead of once per span.
        weight, bias = self.entity_classifier.weight, self.entity_classifier.bias
        span_dim = spans.shape[-1]
        sentence_part = nn.functional.linear(sentence, weight[:, span_dim:], bias)  # (B, E+1)
        return nn.functional.linear(spans, weight[:, :span_dim]) + sentence_part[span_batch]

    def relation_logits(
        self,
        pooler: RangePooler,
        spans: torch.Tensor,
        sentence: torch.Tensor,
        batch: Batch,
        pairs: torch.Tensor,
        pair_types: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """pairs (P, 2) of span indices -> logits (P, relation types).

        ``pair_types`` (P, 2): the entity type of each pair's head and tail (1 + type index,
        0 = none, as entity labels count), needed with ``relation_type_dim`` > 0: the gold
        types in training, the predicted ones in decoding.
        """
        head, tail = pairs[:, 0], pairs[:, 1]
        pair_batch = batch.span_batch[head]
        if self.config.relation_context == "local":
            # Context: the subwords strictly between the two spans (empty when they touch).
            bounds = batch.span_bounds
            start = torch.minimum(bounds[head, 1], bounds[tail, 1])
            end = torch.maximum(bounds[head, 0], bounds[tail, 0])
            context = pooler(pair_batch, start, end)  # (P, H)
        elif self.config.relation_context == "sentence":
            context = sentence[pair_batch]
        else:
            context = torch.zeros_like(sentence[pair_batch])
        parts = [spans[head], context, spans[tail]]
        if self.relation_type_embedding is not None:
            if pair_types is None:
                raise ValueError("relation_type_dim > 0 needs the entity types of the pairs")
            embedded = self.relation_type_embedding(pair_types)  # (P, 2, relation_type_dim)
            parts += [embedded[:, 0], embedded[:, 1]]
        features = torch.cat(parts, dim=-1)
        return self.relation_classifier(self.dropout(features))

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pass over sampled spans and pairs: entity (N, E+1), relation (P, R) logits."""
        hidden = self.encode(batch)  # (B, T, H)
        sentence = hidden[:, 0]  # (B, H) the encoder's first token ([CLS] / <s>)
        pooler = RangePooler(hidden, self.config.pooling)
        spans = self.span_representations(pooler, batch)  # (N, S) S: span dims
        entity_logits = self.entity_logits(spans, sentence, batch.span_batch)
        assert batch.pairs is not None and batch.entity_labels is not None
        # The gold types of each pair's spans (0 for a weak negative's non-entity): (P, 2).
        pair_types = batch.entity_labels[batch.pairs]
        relation_logits = self.relation_logits(
            pooler, spans, sentence, batch, batch.pairs, pair_types
        )
        return entity_logits, relation_logits


class SpertEnsemble(nn.Module):
    """Several SpERT models trained alike (one tokenizer, types and span settings, e.g. other
    seeds); decoding averages their entity and relation probabilities
    (:func:`spert.model.decoding.score_batch`)."""

    def __init__(self, members: list[SpertModel]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        self.members = nn.ModuleList(members)
        self.config = members[0].config


def members(model: SpertModel | SpertEnsemble) -> list[SpertModel]:
    """The models whose predictions decoding combines: an ensemble's members, or the model."""
    return list(model.members) if isinstance(model, SpertEnsemble) else [model]


def default_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
