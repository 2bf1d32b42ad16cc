"""Saving and loading decoder weights as safetensors, with a JSON model card beside them.

A weights file holds only tensors plus string metadata (the architecture config as JSON), so
loading never executes code: a pickle (``torch.save``) file is rejected whatever its name. Every
problem with a file (missing, truncated, corrupt, not safetensors, no or unreadable config, tensors
that do not fit the architecture, non-finite values) is a :class:`WeightsError` saying which.
The config's size fields (width, layers, bins, ...) are checked against the tensors' shapes before
the model is built, so a corrupt config cannot ask for a huge model. Files are written atomically.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from pfn_kernels.network.decoder import DecoderConfig, SpectralDecoder
from pfn_kernels.validation import DecoderWarning

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


class WeightsError(RuntimeError):
    """A weights file is missing, corrupt, or does not match the architecture."""


def weights_path(name: str) -> Path:
    """Path of shipped weights ``<name>.safetensors`` inside the package."""
    return WEIGHTS_DIR / f"{name}.safetensors"


def default_decoder(device: torch.device | str | None = None) -> SpectralDecoder:
    """The shipped pretrained decoder on ``device`` (default: CPU), loaded on first use and
    cached: one load per process, one copy per device. The fitting functions use the copy on
    the training data's device, so that GPU data is decoded on the GPU."""
    return _default_decoder(str(torch.device("cpu" if device is None else device)))


@functools.lru_cache(maxsize=8)
def _default_decoder(device: str) -> SpectralDecoder:
    # Loaded outside inference mode even when first asked for inside it: the cached copy's
    # parameters must stay ordinary tensors, usable with autograd later in the process.
    with torch.inference_mode(False):
        if device == "cpu":
            return SpectralDecoder.pretrained().eval()
        return copy.deepcopy(_default_decoder("cpu")).to(device)


default_decoder.cache_clear = _default_decoder.cache_clear  # type: ignore[attr-defined]


def save_decoder(decoder: SpectralDecoder, path: str | Path, card: dict[str, Any] | None = None) -> Path:
    """Write ``decoder``'s weights to ``path`` (.safetensors) and, if given, ``card`` to .json."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in decoder.state_dict().items()}
    # Written beside the target and renamed: an interrupted save never leaves a truncated file.
    tmp = path.with_name(path.name + ".tmp")
    metadata = {"config": json.dumps(decoder.config.to_dict()), "format": "pfn_kernels-1"}
    save_file(state, str(tmp), metadata=metadata)
    os.replace(tmp, path)
    if card is not None:
        card_tmp = path.with_suffix(".json.tmp")
        card_tmp.write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")
        os.replace(card_tmp, path.with_suffix(".json"))
    return path


def load_decoder(path: str | Path, map_location: str | torch.device = "cpu") -> SpectralDecoder:
    """Load a decoder saved by :func:`save_decoder`; clear :class:`WeightsError` on any problem."""
    from safetensors.torch import load_file, safe_open

    path = Path(path)
    if not path.is_file():
        raise WeightsError(
            f"No decoder weights at {path}. Shipped weights live in {WEIGHTS_DIR}; reinstall the "
            "package, or pass the path of weights you trained (pfn_kernels.train)."
        )
    with open(path, "rb") as f:
        head = f.read(8)
    if head[:1] == b"\x80" or head[:4] == b"PK\x03\x04":
        raise WeightsError(
            f"{path} is a pickle or torch.save file, not safetensors. Pickles can run code when "
            "loaded and are never opened here; convert the weights with "
            "pfn_kernels.network.save_decoder in a trusted environment."
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path), device=str(map_location))
    except Exception as err:  # any parse failure of the file (SafetensorError, OSError, ...)
        raise WeightsError(f"Decoder weights at {path} are corrupt or truncated: {err}") from err
    if "config" not in meta:
        raise WeightsError(f"{path} has no architecture config in its metadata; not a pfn_kernels weights file.")
    try:
        data = json.loads(meta["config"])
        if not isinstance(data, dict):
            raise TypeError(f"expected a JSON object, got {type(data).__name__}")
        config = DecoderConfig.from_dict(data)
    except (json.JSONDecodeError, TypeError, ValueError, AttributeError) as err:
        raise WeightsError(f"{path} has an unreadable architecture config: {err}") from err
    _check_state(path, state, config)
    try:
        decoder = SpectralDecoder(config)
        _fill_random_features(path, state, decoder)
        decoder.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, ValueError) as err:
        raise WeightsError(f"{path} does not match the decoder architecture: {err}") from err
    return decoder.to(map_location).eval()


def _fill_random_features(path: Path, state: dict[str, torch.Tensor], decoder: SpectralDecoder) -> None:
    """Files written before the linear-attention random features were saved lack them: use the
    decoder's seeded ones (only a decoder trained with ``attention="linear"`` ever read them)."""
    fresh = decoder.state_dict()
    missing = [k for k in fresh if k.endswith(".attn.rff") and k not in state]
    for key in missing:
        state[key] = fresh[key]
    if missing and decoder.config.attention == "linear":
        warnings.warn(
            f"{path} was saved without its linear-attention random features (a file from before "
            "they were saved); it uses freshly seeded ones and computes a different attention "
            "than in training.",
            DecoderWarning,
            stacklevel=3,
        )


def _check_state(path: Path, state: dict[str, torch.Tensor], config: DecoderConfig) -> None:
    """Dtypes and finiteness of the tensors, and the config's size fields against their shapes
    (before the model is built: a corrupt config must not allocate a huge model)."""
    for k, v in state.items():
        if not v.is_floating_point():
            raise WeightsError(f"{path}: tensor {k!r} has dtype {v.dtype}; weights are floating point.")
        if not torch.isfinite(v).all():
            raise WeightsError(f"{path}: tensor {k!r} has non-finite values (NaN or inf): corrupt.")
    c, e = config, config.width
    layers = {k.split(".")[1] for k in state if k.startswith("dva.")}
    pooled = 1 if c.pooling == "mean" else c.num_pool_queries  # vectors per pooling module
    sizes = [  # (what, tensor, dimension, value the config implies)
        ("width", "x_embed.net.2.weight", 0, e),
        ("num_x_frequencies", "x_embed.net.0.weight", 1, 1 + 2 * c.num_x_frequencies),
        ("ffn_mult", "dva.0.ffn.net.1.weight", 0, c.ffn_mult * e),
        *([] if c.pooling == "mean" else [("num_pool_queries", "pool_h.queries", 0, c.num_pool_queries)]),
        ("num_periodogram", "fuse.0.weight", 1, 3 * pooled * e + c.num_periodogram + 1),
        ("num_bins", "filter_bank.head.3.weight", 0, 4 * (c.num_bins + 1)),
        *([("num_random_features", "dva.0.attn.rff", 0, c.num_random_features)]
          if "dva.0.attn.rff" in state else []),
    ]
    wrong = [] if len(layers) == c.num_layers else [f"num_layers={c.num_layers} but {len(layers)} DVA blocks"]
    for what, key, dim, value in sizes:
        t = state.get(key)
        if t is None or t.dim() <= dim or t.shape[dim] != value:
            found = "missing" if t is None else f"shape {tuple(t.shape)}"
            wrong.append(f"{what}={getattr(c, what)} but {key} is {found}")
    if wrong:
        raise WeightsError(
            f"{path} does not match the decoder architecture in its config: {'; '.join(wrong)}."
        )


def load_card(name_or_path: str | Path) -> dict[str, Any]:
    """The model card (JSON) of shipped weights ``name`` or of a weights path."""
    path = Path(name_or_path)
    if path.suffix != ".safetensors":
        path = weights_path(str(name_or_path))
    card = path.with_suffix(".json")
    if not card.is_file():
        raise WeightsError(f"No model card at {card}.")
    return json.loads(card.read_text())
