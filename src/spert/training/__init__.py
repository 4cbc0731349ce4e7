"""Training: the trainer, the objective and optimizer, batches and sampling streams,
checkpoints and data-parallel plumbing."""

from spert.training.batches import SampleStreams, epoch_batches, step_shares
from spert.training.optim import (
    ADAM_BETAS,
    WeightEMA,
    learning_rate_factor,
    make_optimizer,
    rdrop_divergence,
    spert_loss,
)
from spert.training.trainer import Trainer, TrainResult, seed_everything, train

__all__ = [
    "ADAM_BETAS",
    "SampleStreams",
    "TrainResult",
    "Trainer",
    "WeightEMA",
    "epoch_batches",
    "learning_rate_factor",
    "make_optimizer",
    "rdrop_divergence",
    "seed_everything",
    "spert_loss",
    "step_shares",
    "train",
]
