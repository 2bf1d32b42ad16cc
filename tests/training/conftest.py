"""A training configuration small enough for tests (a few seconds per run)."""

from __future__ import annotations

import pytest


@pytest.fixture
def tiny() -> dict:
    """Keyword arguments of a tiny ``TrainConfig`` (a fresh dict per test)."""
    return dict(
        decoder={"width": 16, "num_heads": 2, "num_layers": 1, "num_bins": 8},
        prior={"max_dims": 2},
        max_context=24,
        num_targets=16,
        token_budget=256,
        max_batch=8,
        val_every=0,
        ckpt_every=1000,
        warmup_steps=2,
        num_threads=1,
    )
