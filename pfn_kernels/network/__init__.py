"""The amortized spectral decoder network, ``(x, y) -> DecoderOutput``, and its weight files."""

from pfn_kernels.network.decoder import DecoderConfig, DecoderOutput, SpectralDecoder
from pfn_kernels.network.weights import WeightsError, default_decoder, load_decoder, save_decoder

__all__ = [
    "DecoderConfig",
    "DecoderOutput",
    "SpectralDecoder",
    "WeightsError",
    "default_decoder",
    "load_decoder",
    "save_decoder",
]
