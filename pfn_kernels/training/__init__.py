"""Training of the spectral decoder on the task prior."""

from pfn_kernels.training.losses import DecoderObjective, LossWeights
from pfn_kernels.training.trainer import Trainer, TrainConfig

__all__ = ["DecoderObjective", "LossWeights", "Trainer", "TrainConfig"]
