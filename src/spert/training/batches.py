"""What each optimizer step trains on: the epoch's step batches, each process's share of them,
and the sampled micro-batches, drawn from random streams that make runs reproducible.

One optimizer step sees ``train_batch_size x processes x grad_accumulation`` sentences (the
*step batch*). Every process computes the same list of step batches and trains on its share
of each, in ``grad_accumulation`` micro-batches of at most ``train_batch_size``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spert.config import SpertConfig
from spert.data import Sentence, Types
from spert.model.candidates import Batch, collate, sample_training
from spert.model.encoding import EncodedSentence


def epoch_batches(
    lengths: Sequence[int], batch_size: int, rng: np.random.Generator, length_bucketing: bool
) -> list[np.ndarray]:
    """One epoch's batches of sentence indices, in random order.

    With ``length_bucketing``, a random permutation is cut into pools of 50 batches, each pool
    is sorted by length and cut into batches: batches hold sentences of similar length (little
    padding) while every epoch still mixes them differently.
    """
    order = rng.permutation(len(lengths))
    if length_bucketing:
        pool = 50 * batch_size
        lengths_arr = np.asarray(lengths)
        order = np.concatenate(
            [
                part[np.argsort(lengths_arr[part], kind="stable")]
                for part in np.split(order, range(pool, len(order), pool))
            ]
        )
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if length_bucketing:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The random stream that orders epoch ``epoch``'s batches (the same on every process)."""
    return np.random.default_rng([seed, epoch])


class SampleStreams:
    """Independent random streams for negative sampling, one per (epoch, sentence).

    A sentence's samples depend only on the seed, the epoch and the sentence's index: not on
    its batch, on the process that trains it or on how many processes there are. So N
    processes draw exactly the samples one process draws, and a resumed run those of an
    uninterrupted one. (Counter-based Philox: switching streams is a cheap state change.)
    """

    def __init__(self, seed: int) -> None:
        key = np.random.SeedSequence(seed).generate_state(2, np.uint64)
        self._bits = np.random.Philox(key=key)
        self._initial = self._bits.state
        self._generator = np.random.Generator(self._bits)

    def __call__(self, epoch: int, index: int) -> np.random.Generator:
        """The stream of sentence ``index`` in ``epoch`` (one generator object, reset)."""
        state = dict(self._initial)
        state["state"] = {
            "counter": np.array([0, 0, epoch, index], dtype=np.uint64),
            "key": self._initial["state"]["key"],
        }
        self._bits.state = state
        return self._generator


def step_shares(step_batch: np.ndarray, rank: int, world_size: int, accumulation: int) -> list:
    """Process ``rank``'s micro-batches of one step batch (some may be empty in a short last
    batch): the batch is cut into ``world_size x accumulation`` nearly equal parts, in order,
    and each process takes ``accumulation`` consecutive ones."""
    parts = np.array_split(step_batch, world_size * accumulation)
    return parts[rank * accumulation : (rank + 1) * accumulation]


@dataclass
class MicroBatch:
    batch: Batch
    entity_count: int  # entity samples
    relation_count: int  # relation samples x relation types (the BCE terms)


class MicroBatches:
    """Micro-batches of training samples of one training set: sentences encoded once, negative
    samples drawn anew each epoch from :class:`SampleStreams`."""

    def __init__(
        self,
        sentences: Sequence[Sentence],
        encoded: Sequence[EncodedSentence],
        types: Types,
        config: SpertConfig,
        pad_token_id: int,
    ) -> None:
        self.sentences = sentences
        self.encoded = encoded
        self.types = types
        self.config = config
        self.pad_token_id = pad_token_id
        self.streams = SampleStreams(config.seed)

    def __call__(self, chunk: np.ndarray, epoch: int) -> MicroBatch:
        """The samples of sentences ``chunk`` in ``epoch``, collated."""
        samples = [
            sample_training(
                self.sentences[j], self.encoded[j], self.types, self.config, self.streams(epoch, j)
            )
            for j in chunk
        ]
        encoded = [self.encoded[j] for j in chunk]
        return MicroBatch(
            collate(encoded, [s.spans for s in samples], self.pad_token_id, samples),
            sum(len(s.entity_labels) for s in samples),
            sum(s.relation_labels.size for s in samples),
        )
