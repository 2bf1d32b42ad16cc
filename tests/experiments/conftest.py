"""Fixtures shared by the tests of the BO harness (:mod:`pfn_kernels.experiments`)."""

from __future__ import annotations

import pytest
import torch

from pfn_kernels.network import DecoderConfig, SpectralDecoder


@pytest.fixture(scope="module")
def tiny_decoder():
    torch.manual_seed(0)
    return SpectralDecoder(DecoderConfig(width=16, num_heads=2, num_layers=1, num_bins=8)).eval()
