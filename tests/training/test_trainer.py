import json
import os
import subprocess
import sys

import pytest
import torch

from pfn_kernels.network import load_decoder
from pfn_kernels.training import Trainer, TrainConfig


def test_short_training_lowers_loss(tmp_path, tiny):
    cfg = TrainConfig(steps=60, lr=3e-3, seed=1, **tiny)
    trainer = Trainer(cfg, tmp_path, progress=False)
    # fixed batch: the loss on it must drop as training proceeds on prior draws
    from pfn_kernels.prior import sample_tasks

    fixed = sample_tasks(trainer.prior, 32, torch.Generator().manual_seed(7), num_dims=1, num_context=20)
    with torch.no_grad():
        before = trainer.objective(fixed)[0].item()
    trainer.fit()
    with torch.no_grad():
        after = trainer.objective(fixed)[0].item()
    assert after < before - 0.1, (before, after)
    assert (tmp_path / "checkpoint.pt").is_file() and (tmp_path / "decoder.safetensors").is_file()
    card = json.loads((tmp_path / "decoder.json").read_text())
    assert card["steps"] == 60 and card["architecture"]["width"] == 16
    load_decoder(tmp_path / "decoder.safetensors")  # loads cleanly


def test_resume_matches_uninterrupted(tmp_path, tiny):
    cfg = TrainConfig(steps=8, seed=3, **tiny)
    full = Trainer(cfg, tmp_path / "full", progress=False)
    full.fit()
    part = Trainer(cfg, tmp_path / "part", progress=False)
    part.fit(until=4)  # an interruption after step 4
    resumed = Trainer(cfg, tmp_path / "part", progress=False)
    assert resumed.step == 4
    resumed.fit()
    for (k, a), b in zip(full.decoder.state_dict().items(), resumed.decoder.state_dict().values()):
        assert torch.equal(a, b), k


def test_nan_loss_step_is_skipped(tmp_path, monkeypatch, tiny):
    cfg = TrainConfig(steps=3, seed=0, **tiny)
    trainer = Trainer(cfg, tmp_path, progress=False)
    before = {k: v.clone() for k, v in trainer.decoder.state_dict().items()}
    real = trainer.objective.forward

    def nan_forward(batch):
        loss, logs = real(batch)
        return loss * float("nan"), logs

    monkeypatch.setattr(trainer.objective, "forward", nan_forward)
    assert trainer.train_step() is None
    assert trainer.skipped == 1 and trainer.step == 1
    for k, v in trainer.decoder.state_dict().items():
        assert torch.equal(v, before[k])
    lines = [json.loads(s) for s in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert lines[-1]["skipped"] is True


def test_cli_and_ddp_two_cpu_processes(tmp_path, tiny):
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps({**tiny, "steps": 3}))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
           "-m", "pfn_kernels.train", "--config", str(cfg_path), "--out", str(tmp_path / "ddp"), "--no-progress",
           "--device", "cpu"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "ddp" / "checkpoint.pt").is_file()
    card = json.loads((tmp_path / "ddp" / "decoder.json").read_text())
    assert card["processes"] == 2 and card["steps"] == 3


def test_init_weights_start_a_new_run_from_saved_weights(tmp_path):
    from pfn_kernels.network.weights import WeightsError, save_decoder

    cfg = dict(steps=2, val_every=0, ckpt_every=10, min_context=4, max_context=16, num_targets=8,
               decoder={"width": 16, "num_heads": 2, "num_layers": 1}, prior={"max_dims": 2})
    source = Trainer(TrainConfig.from_dict({**cfg, "seed": 3}), tmp_path / "a", progress=False)
    path = save_decoder(source.decoder, tmp_path / "w.safetensors")
    run = Trainer(TrainConfig.from_dict({**cfg, "seed": 4, "init_weights": str(path)}), tmp_path / "b",
                  progress=False)
    for key, value in source.decoder.state_dict().items():
        assert torch.equal(run.decoder.state_dict()[key], value)
    other = {**cfg, "decoder": {"width": 32, "num_heads": 2, "num_layers": 1}, "init_weights": str(path)}
    with pytest.raises(WeightsError, match="do not match"):
        Trainer(TrainConfig.from_dict(other), tmp_path / "c", progress=False)
