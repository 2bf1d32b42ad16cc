"""Saving and loading decoder weights as safetensors, with a JSON model card beside them.

A weights file holds only tensors plus string metadata (the architecture config as JSON), so
loading never executes code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from pfn_kernels.network.decoder import DecoderConfig, SpectralDecoder

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


class WeightsError(RuntimeError):
    """A weights file is missing, corrupt, or does not match the architecture."""


def weights_path(name: str) -> Path:
    """Path of shipped weights ``<name>.safetensors`` inside the package."""
    return WEIGHTS_DIR / f"{name}.safetensors"


def save_decoder(decoder: SpectralDecoder, path: str | Path, card: dict[str, Any] | None = None) -> Path:
    """Write ``decoder``'s weights to ``path`` (.safetensors) and, if given, ``card`` to .json."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in decoder.state_dict().items()}
    save_file(state, str(path), metadata={"config": json.dumps(decoder.config.to_dict()), "format": "pfn_kernels-1"})
    if card is not None:
        path.with_suffix(".json").write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")
    return path


def load_decoder(path: str | Path, map_location: str | torch.device = "cpu") -> SpectralDecoder:
    """Load a decoder saved by :func:`save_decoder`; clear :class:`WeightsError` on any problem."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = Path(path)
    if not path.is_file():
        raise WeightsError(
            f"No decoder weights at {path}. Shipped weights live in {WEIGHTS_DIR}; reinstall the "
            "package, or pass the path of weights you trained (pfn_kernels.train)."
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as err:
        raise WeightsError(f"Decoder weights at {path} are corrupt or truncated: {err}") from err
    if "config" not in meta:
        raise WeightsError(f"{path} has no architecture config in its metadata; not a pfn_kernels weights file.")
    try:
        config = DecoderConfig.from_dict(json.loads(meta["config"]))
    except (json.JSONDecodeError, TypeError, ValueError) as err:
        raise WeightsError(f"{path} has an unreadable architecture config: {err}") from err
    decoder = SpectralDecoder(config)
    try:
        decoder.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise WeightsError(f"{path} does not match the decoder architecture: {err}") from err
    return decoder.eval()


def load_card(name_or_path: str | Path) -> dict[str, Any]:
    """The model card (JSON) of shipped weights ``name`` or of a weights path."""
    path = Path(name_or_path)
    if path.suffix != ".safetensors":
        path = weights_path(str(name_or_path))
    card = path.with_suffix(".json")
    if not card.is_file():
        raise WeightsError(f"No model card at {card}.")
    return json.loads(card.read_text())
