"""The objective and the optimizer of the SpERT paper: CE + BCE, AdamW, linear schedule; and,
beyond the paper, an exponential moving average of the weights (:class:`WeightEMA`)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from spert.config import SpertConfig
from spert.model.candidates import Batch

ADAM_BETAS = (0.9, 0.999)


def spert_loss(
    entity_logits: torch.Tensor,
    relation_logits: torch.Tensor,
    batch: Batch,
    entity_count: int | None = None,
    relation_count: int | None = None,
) -> torch.Tensor:
    """Cross-entropy over entity types + binary cross-entropy over relation types.

    Each term is averaged over the batch's samples; no class weights. ``entity_count`` and
    ``relation_count`` (entity samples, relation samples x relation types) replace the batch's
    own counts as the divisors: a micro-batch then contributes its share of the mean loss of
    a larger batch it is part of (gradient accumulation, data-parallel training).
    """
    assert batch.entity_labels is not None and batch.relation_labels is not None
    if entity_count is None:
        loss = nn.functional.cross_entropy(entity_logits.float(), batch.entity_labels)
    else:
        loss = nn.functional.cross_entropy(
            entity_logits.float(), batch.entity_labels, reduction="sum"
        ) / max(entity_count, 1)
    if relation_logits.numel():
        if relation_count is None:
            bce = nn.functional.binary_cross_entropy_with_logits(
                relation_logits.float(), batch.relation_labels
            )
        else:
            bce = nn.functional.binary_cross_entropy_with_logits(
                relation_logits.float(), batch.relation_labels, reduction="sum"
            ) / max(relation_count, 1)
        loss = loss + bce
    else:
        # A zero that keeps the relation head in the graph: data-parallel training needs a
        # gradient (here 0) for every parameter from every process.
        loss = loss + relation_logits.float().sum()
    return loss


def rdrop_divergence(
    first: tuple[torch.Tensor, torch.Tensor],
    second: tuple[torch.Tensor, torch.Tensor],
    entity_count: int | None = None,
    relation_count: int | None = None,
) -> torch.Tensor:
    """R-Drop's consistency term: the symmetric KL divergence, halved, between two dropout
    passes' (entity logits, relation logits), averaged over samples as :func:`spert_loss` does.

    For distributions p, q: KL(p||q) + KL(q||p) = sum (p - q) (log p - log q); for the
    relations' independent Bernoulli outputs, log p - log q becomes the logits' difference.
    """
    # entity logits: [entity samples, entity types + 1]; relation logits: [relation samples,
    # relation types]
    entity_a, entity_b = (logits.float().log_softmax(-1) for logits in (first[0], second[0]))
    entity_kl = ((entity_a.exp() - entity_b.exp()) * (entity_a - entity_b)).sum(-1)
    divergence = entity_kl.sum() / max(entity_count or entity_kl.numel(), 1)
    relation_a, relation_b = first[1].float(), second[1].float()
    relation_kl = (relation_a.sigmoid() - relation_b.sigmoid()) * (relation_a - relation_b)
    if relation_kl.numel():
        divergence = divergence + relation_kl.sum() / max(relation_count or relation_kl.numel(), 1)
    return 0.5 * divergence


def learning_rate_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """Linear warm-up, then linear decay to zero, times the Adam bias-correction undo.

    The original trains with ``AdamW(correct_bias=False)``; torch's AdamW always corrects, so
    the factor ``(1 - b1^t) / sqrt(1 - b2^t)`` restores the original's uncorrected steps.
    """
    if step < warmup_steps:
        schedule = step / max(1, warmup_steps)
    else:
        schedule = max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
    t = step + 1
    b1, b2 = ADAM_BETAS
    return schedule * (1 - b1**t) / math.sqrt(1 - b2**t)


def make_optimizer(model: nn.Module, config: SpertConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases and layer norms; with ``head_lr``, the parameters
    outside the encoder form groups of their own at that learning rate."""
    no_decay = ("bias", "LayerNorm.weight", "LayerNorm.bias", "layer_norm", "layernorm")
    split_heads = config.head_lr > 0 and config.head_lr != config.lr
    # (head, decays) -> parameters; encoder (or all) groups first, decayed before plain, as
    # in versions without head_lr, so their checkpoints' optimizer states still fit.
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {
        key: [] for key in ((False, True), (False, False), (True, True), (True, False))
    }
    for name, param in model.named_parameters():
        if param.requires_grad:
            is_head = split_heads and not name.startswith("encoder.")
            groups[is_head, not any(nd in name for nd in no_decay)].append(param)
    param_groups = [
        {
            "params": params,
            "weight_decay": config.weight_decay if decays else 0.0,
            "lr": config.head_lr if is_head else config.lr,
        }
        for (is_head, decays), params in groups.items()
        if params
    ]
    # The fused kernel is ~4x faster than the per-tensor loop on a CPU.
    return torch.optim.AdamW(param_groups, lr=config.lr, betas=ADAM_BETAS, eps=1e-8, fused=True)


def linear_schedule(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning-rate schedule of :func:`learning_rate_factor` over ``total_steps``."""
    warmup_steps = int(total_steps * warmup_fraction)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: learning_rate_factor(step, total_steps, warmup_steps)
    )


class WeightEMA:
    """An exponential moving average of a model's trained weights (``ema_decay``).

    Bias-corrected as Adam's moments are: with the moment m_k = decay * m_(k-1) + (1 - decay)
    * w_k from m_0 = 0, the average after k updates is m_k / (1 - decay^k), a weighted mean of
    the weights w_1 .. w_k whose weights sum to one (so early averages lean neither toward zero
    nor toward the initial weights). It is kept as that quotient directly, by the equivalent
    update a_k = a_(k-1) + (1 - decay) / (1 - decay^k) * (w_k - a_(k-1)): a_1 = w_1, and a
    weight that does not move stays exactly what it is. Only parameters that train are
    averaged (frozen ones, e.g. ``freeze_word_embeddings``, keep their values).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must lie in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        with torch.no_grad():
            self.average = {
                name: param.detach().clone()
                for name, param in model.named_parameters()
                if param.requires_grad
            }

    def _params(self, model: nn.Module) -> list[torch.Tensor]:
        params = dict(model.named_parameters())
        return [params[name] for name in self.average]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average toward the model's current weights (after an optimizer step)."""
        self.updates += 1
        step = (1 - self.decay) / (1 - self.decay**self.updates)  # 1 at the first update
        for mean, param in zip(self.average.values(), self._params(model)):
            mean.lerp_(param.detach(), step)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Give the model the averaged weights."""
        for mean, param in zip(self.average.values(), self._params(model)):
            param.copy_(mean)

    @contextlib.contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """The model holds the averaged weights inside the block and its own again after."""
        own = [p.detach().clone() for p in self._params(model)]
        self.copy_to(model)
        try:
            yield
        finally:
            with torch.no_grad():
                for param, value in zip(self._params(model), own):
                    param.copy_(value)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps to continue the average."""
        return {"decay": self.decay, "updates": self.updates, "average": self.average}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["decay"] != self.decay or state["average"].keys() != self.average.keys():
            raise ValueError("the saved weight average is of another decay or other weights")
        self.updates = int(state["updates"])
        with torch.no_grad():
            for name, mean in self.average.items():
                mean.copy_(state["average"][name])
