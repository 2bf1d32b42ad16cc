"""Small random-draw helpers. Every draw goes through an explicit ``torch.Generator``."""

from __future__ import annotations

import math

import torch
from torch import Generator, Tensor

DTYPE = torch.float64  # internal dtype of the prior


def uniform(lo: float, hi: float, shape: tuple[int, ...], generator: Generator) -> Tensor:
    """Uniform draws on ``[lo, hi)`` in float64."""
    return lo + (hi - lo) * torch.rand(shape, generator=generator, dtype=DTYPE)


def log_uniform(lo: float, hi: float, shape: tuple[int, ...], generator: Generator) -> Tensor:
    """Log-uniform draws on ``[lo, hi]`` (``0 < lo <= hi``) in float64."""
    return uniform(math.log(lo), math.log(hi), shape, generator).exp()


def log_uniform_int(lo: int, hi: int, generator: Generator) -> int:
    r"""One integer from ``{lo, ..., hi}`` with :math:`P(k) \propto \log((k + 1) / k)`.

    This is :math:`\lfloor e^{U} \rfloor` for :math:`U \sim \mathcal U[\log lo, \log(hi + 1)]`,
    so every octave of sizes is equally likely.
    """
    u = uniform(math.log(lo), math.log(hi + 1), (1,), generator)
    return min(hi, max(lo, math.floor(math.exp(u.item()))))


def uniform_int(lo: int, hi: int, generator: Generator) -> int:
    """One integer uniform on ``{lo, ..., hi}``."""
    return int(torch.randint(lo, hi + 1, (1,), generator=generator).item())


def categorical(probs: Tensor, num: int, generator: Generator) -> Tensor:
    """``num`` independent draws `(num,)` long from the (unnormalized) probabilities ``probs``."""
    return torch.multinomial(probs, num, replacement=True, generator=generator)
