"""Fixtures shared by the whole suite: small randomly initialized decoders (fast, no weights)."""

from __future__ import annotations

import pytest

from decoders import SMALL, TINY, make_decoder
from pfn_kernels.network import SpectralDecoder


@pytest.fixture(scope="session")
def tiny_decoder() -> SpectralDecoder:
    """One shared :data:`TINY` decoder (read-only: do not train or mutate it)."""
    return make_decoder(TINY)


@pytest.fixture(scope="session")
def small_decoder() -> SpectralDecoder:
    """One shared :data:`SMALL` decoder (read-only)."""
    return make_decoder(SMALL)
