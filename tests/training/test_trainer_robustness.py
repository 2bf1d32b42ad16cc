"""Training robustness: NaN steps are skipped and logged (also under DDP), bad checkpoints and
bad command lines give clear errors. (Resume equality: tests/training/test_trainer.py.)"""

from __future__ import annotations

import json
import logging
import math

import pytest
import torch
import torch.distributed as dist

from pfn_kernels import train
from pfn_kernels.training import Trainer, TrainConfig


def inject_nan_at(trainer: Trainer, monkeypatch, step: int) -> None:
    real = trainer.objective.forward

    def forward(batch):
        loss, logs = real(batch)
        return (loss * math.nan if trainer.step == step else loss), logs

    monkeypatch.setattr(trainer.objective, "forward", forward)


def test_nan_step_inside_a_run_is_skipped_logged_and_not_propagated(tmp_path, monkeypatch, caplog, tiny):
    trainer = Trainer(TrainConfig(steps=4, seed=2, **tiny), tmp_path, progress=False)
    inject_nan_at(trainer, monkeypatch, step=1)
    with caplog.at_level(logging.WARNING, logger="pfn_kernels.train"):
        trainer.fit()
    assert trainer.step == 4 and trainer.skipped == 1
    assert "step 1: non-finite loss" in caplog.text
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r.get("skipped")] == [1]
    assert all(torch.isfinite(p).all() for p in trainer.decoder.parameters())
    assert all(torch.isfinite(v).all() for s in trainer.optimizer.state.values() for v in s.values())
    assert json.loads((tmp_path / "decoder.json").read_text())["skipped_steps"] == 1


def test_nan_step_under_ddp_keeps_processes_in_step(tmp_path, monkeypatch, tiny):
    """Every process skips together (one skipping its backward alone would hang the others)."""
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        trainer = Trainer(TrainConfig(steps=3, seed=0, **tiny), tmp_path / "run", progress=False)
        trainer.distributed = True
        trainer.model = DistributedDataParallel(trainer.objective, find_unused_parameters=True)
        inject_nan_at(trainer, monkeypatch, step=1)
        assert trainer.train_step() is not None
        before = {k: v.clone() for k, v in trainer.decoder.state_dict().items()}
        assert trainer.train_step() is None and trainer.skipped == 1
        assert all(torch.equal(v, before[k]) for k, v in trainer.decoder.state_dict().items())
        assert trainer.train_step() is not None  # DDP is not left waiting for the skipped step
        assert all(torch.isfinite(p).all() for p in trainer.decoder.parameters())
    finally:
        dist.destroy_process_group()


def test_bad_checkpoints_are_clear_errors(tmp_path, tiny):
    cfg = TrainConfig(steps=1, seed=0, **tiny)
    (tmp_path / "checkpoint.pt").write_bytes(b"PK\x03\x04 not really a checkpoint")
    with pytest.raises(RuntimeError, match="unreadable"):
        Trainer(cfg, tmp_path, progress=False)
    good = Trainer(cfg, tmp_path / "good", progress=False)
    good.save_checkpoint()
    other = TrainConfig(steps=1, seed=0, **{**tiny, "decoder": {**tiny["decoder"], "width": 32}})
    with pytest.raises(RuntimeError, match="does not fit this run's configuration"):
        Trainer(other, tmp_path / "good", progress=False)


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--config", "missing.json"], "cannot read --config"),
        (["--set", "lr=abc"], "is not JSON"),
        (["--set", "nokey"], "KEY=JSON"),
        (["--set", "no_such_field=1"], "Unknown training config keys"),
        (["--set", 'decoder={"no_such": 1}'], "invalid training config"),
    ],
)
def test_cli_usage_errors(tmp_path, capsys, extra, match):
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--out", str(tmp_path / "run"), "--no-progress", *extra])
    assert exit_info.value.code == 2
    assert match in capsys.readouterr().err
