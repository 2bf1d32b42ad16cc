"""Small randomly initialized decoders for tests (fast, no weights); fixtures in conftest.py."""

from __future__ import annotations

import torch

from pfn_kernels.network import DecoderConfig, SpectralDecoder

#: A decoder small enough for tests of the plumbing (milliseconds per pass).
TINY = DecoderConfig(width=16, num_heads=2, num_layers=1, num_bins=8)
#: A somewhat larger one, for tests of the network's own behaviour.
SMALL = DecoderConfig(width=32, num_heads=4, num_layers=2, num_bins=12)


def make_decoder(config: DecoderConfig = TINY, seed: int = 0, **changes) -> SpectralDecoder:
    """A fresh decoder with ``config`` (plus ``changes``), initialized from ``seed``, in eval mode."""
    if changes:
        config = DecoderConfig(**{**config.to_dict(), **changes})
    torch.manual_seed(seed)
    return SpectralDecoder(config).eval()
