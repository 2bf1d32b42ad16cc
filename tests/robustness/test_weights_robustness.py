"""Weight files: every bad file is a clear WeightsError, and loading never runs code."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch
from decoders import TINY
from safetensors.torch import load_file, save_file

from pfn_kernels.network import SpectralDecoder, WeightsError, load_decoder, save_decoder
from pfn_kernels.inference import decode_spectral_params



@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    decoder = SpectralDecoder(TINY).eval()
    path = save_decoder(decoder, tmp_path_factory.mktemp("w") / "tiny.safetensors", card={"steps": 0})
    return decoder, path


class _RunsCode:
    """Unpickling this object would create a file: proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickles_renamed_safetensors_are_rejected_without_running(saved, tmp_path):
    decoder, _ = saved
    marker = tmp_path / "code_ran"
    files = {
        "torch_save": lambda p: torch.save(decoder.state_dict(), p),
        "pickle2": lambda p: p.write_bytes(pickle.dumps(_RunsCode(str(marker)), protocol=2)),
        "pickle0": lambda p: p.write_bytes(pickle.dumps(_RunsCode(str(marker)), protocol=0)),
    }
    for name, write in files.items():
        path = tmp_path / f"{name}.safetensors"
        write(path)
        with pytest.raises(WeightsError):
            load_decoder(path)
    assert not marker.exists()
    with pytest.raises(WeightsError, match="pickle or torch.save file"):
        load_decoder(tmp_path / "torch_save.safetensors")


def _variant(path, out, state=None, config=None):
    state = dict(load_file(str(path))) if state is None else state
    config = json.dumps(TINY.to_dict()) if config is None else config
    save_file(state, str(out), metadata={"config": config})
    return out


@pytest.mark.parametrize(
    "change, match",
    [
        ("truncate", "corrupt or truncated"),
        ("empty", "corrupt or truncated"),
        ("no_config", "no architecture config"),
        ("bad_json", "unreadable architecture config"),
        ("list_config", "unreadable architecture config"),
        ("invalid_config", "unreadable architecture config"),
        ("other_arch", "does not match the decoder architecture"),
        ("huge_arch", "does not match the decoder architecture"),
        ("extra_tensor", "Unexpected key"),
        ("nan", "non-finite"),
        ("int_tensor", "dtype"),
    ],
)
def test_bad_files_give_weights_errors(saved, tmp_path, change, match):
    _, path = saved
    out = tmp_path / "bad.safetensors"
    state = dict(load_file(str(path)))
    key = next(iter(state))
    if change == "truncate":
        data = path.read_bytes()
        out.write_bytes(data[: len(data) - 100])
    elif change == "empty":
        out.write_bytes(b"")
    elif change == "no_config":
        save_file(state, str(out))
    elif change == "bad_json":
        _variant(path, out, config="{not json")
    elif change == "list_config":
        _variant(path, out, config="[1, 2]")
    elif change == "invalid_config":
        _variant(path, out, config=json.dumps({"width": 15, "num_heads": 2}))
    elif change == "other_arch":
        _variant(path, out, config=json.dumps({**TINY.to_dict(), "num_layers": 2}))
    elif change == "huge_arch":  # checked against the tensors first: no memory for a huge model
        _variant(path, out, config=json.dumps({**TINY.to_dict(), "width": 1 << 20}))
    elif change == "extra_tensor":
        _variant(path, out, state={**state, "surprise": torch.zeros(3)})
    elif change == "nan":
        _variant(path, out, state={**state, key: torch.full_like(state[key], float("nan"))})
    elif change == "int_tensor":
        _variant(path, out, state={**state, key: state[key].to(torch.int32)})
    with pytest.raises(WeightsError, match=match):
        load_decoder(out)


def test_fresh_loads_are_bit_identical(saved):
    decoder, path = saved
    a, b = load_decoder(path), load_decoder(path)
    X = torch.rand(40, 3, generator=torch.Generator().manual_seed(0))
    y = torch.sin(5 * X[:, 0])
    y = (y - y.mean()) / y.std()
    with torch.no_grad():
        pa, pb, pc = (decode_spectral_params(X, y, dec) for dec in (a, b, decoder))
    for f in ("weights", "means", "scales", "outputscale", "noise"):
        assert torch.equal(getattr(pa, f), getattr(pb, f)) and torch.equal(getattr(pa, f), getattr(pc, f))


def test_old_files_without_new_config_fields_load(saved, tmp_path):
    """Weights written before a config field existed keep loading (defaults fill the gap), and
    so do files whose config still holds the inference options of older versions (ignored)."""
    _, path = saved
    old = {k: v for k, v in TINY.to_dict().items() if k != "random_feature_seed"}
    old.update(calibrate=False, outputscale_mode="predicted", max_context=40, extra={})
    state = load_file(str(path))
    state = {k: v for k, v in state.items() if not k.endswith(".attn.rff")}  # not saved before
    out = _variant(path, tmp_path / "old.safetensors", config=json.dumps(old), state=state)
    loaded = load_decoder(out)
    assert loaded.config == TINY
    assert torch.equal(loaded.dva[0].attn.rff, SpectralDecoder(TINY).dva[0].attn.rff)


def test_save_is_atomic(saved, tmp_path, monkeypatch):
    decoder, path = saved
    target = tmp_path / "w.safetensors"
    target.write_bytes(path.read_bytes())
    before = target.read_bytes()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_decoder(decoder, target)
    assert target.read_bytes() == before  # the old file is intact, never half-written
