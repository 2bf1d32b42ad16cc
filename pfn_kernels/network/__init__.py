"""The amortized spectral decoder network: ``(X, y) -> SpectralParams`` in one forward pass."""

from pfn_kernels.network.decoder import DecoderConfig, DecoderOutput, SpectralDecoder
from pfn_kernels.network.weights import WeightsError, load_decoder, save_decoder

__all__ = ["DecoderConfig", "DecoderOutput", "SpectralDecoder", "WeightsError", "load_decoder", "save_decoder"]
