"""The training loop: prior batches -> decoder -> loss, with checkpoints, validation and DDP.

Every random draw (task shapes and the tasks themselves) comes from one seeded
:class:`torch.Generator` whose state is checkpointed, so a resumed run continues exactly where an
uninterrupted one would be. Under ``torchrun`` each rank draws from its own stream (seed + rank)
and gradients are averaged by :class:`~torch.nn.parallel.DistributedDataParallel`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from pfn_kernels.exact_gp import exact_gp_scores
from pfn_kernels.inference import decode_spectral_params
from pfn_kernels.kernels import spectral_mixture_covariance
from pfn_kernels.network.decoder import DecoderConfig, SpectralDecoder
from pfn_kernels.network.weights import save_decoder
from pfn_kernels.prior import PriorConfig, sample_tasks
from pfn_kernels.training.losses import DecoderObjective, LossWeights

logger = logging.getLogger("pfn_kernels.train")


@dataclass
class TrainConfig:
    """A training run.

    :param seed: seed of the data stream and of the initialization.
    :param steps: optimizer steps in total.
    :param lr: peak AdamW learning rate (linear warm-up, then cosine decay to ``lr * final_lr_frac``).
    :param token_budget: tasks per batch are
        ``clamp(token_budget / (n * d * max(1, n / 64)), min_batch, max_batch)``.
    :param min_context: smallest context size drawn for training; ``max_context`` the largest
        (log-uniform integers).
    :param num_targets: held-out target points per task (the end-to-end loss).
    :param curriculum_frac: the number of spectral peaks grows from 1 to the prior's
        ``max_peaks`` over this fraction of ``steps``.
    :param val_every: validate every so many steps (0: never); ``ckpt_every`` likewise.
    :param val_tasks: validation tasks per d in ``val_dims`` (n = ``val_context``).
    :param init_weights: path of decoder weights (``.safetensors``, same architecture) that a new
        run starts from instead of a random initialization, e.g. the shipped weights to continue
        their training with a fresh optimizer. Ignored when ``out_dir`` holds a checkpoint.
    """

    seed: int = 0
    steps: int = 20000
    lr: float = 5e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 500
    final_lr_frac: float = 0.05
    grad_clip: float = 1.0
    token_budget: int = 6144
    min_batch: int = 4
    max_batch: int = 32
    min_context: int = 4
    max_context: int = 256
    num_targets: int = 64
    curriculum_frac: float = 0.3
    val_every: int = 1000
    ckpt_every: int = 500
    val_tasks: int = 32
    val_dims: tuple[int, ...] = (1, 2, 4, 8)
    val_context: int = 50
    val_targets: int = 100
    num_threads: int = 0
    device: str = "auto"
    decoder: dict[str, Any] = field(default_factory=dict)
    prior: dict[str, Any] = field(default_factory=dict)
    loss: dict[str, Any] = field(default_factory=dict)
    init_weights: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"Unknown training config keys: {sorted(unknown)}.")
        data = dict(data)
        if "val_dims" in data:
            data["val_dims"] = tuple(data["val_dims"])
        return cls(**data)


def _prior_config(cfg: TrainConfig) -> PriorConfig:
    return PriorConfig(**{**{"max_context": cfg.max_context, "num_targets": cfg.num_targets}, **cfg.prior})


def _lr_factor(cfg: TrainConfig, step: int) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.final_lr_frac + (1 - cfg.final_lr_frac) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def draw_shape(cfg: TrainConfig, prior: PriorConfig, step: int, gen: torch.Generator) -> tuple[int, int, int, int]:
    """(d, n, batch size, max peaks) of the next batch."""
    d = int(torch.randint(prior.min_dims, prior.max_dims + 1, (1,), generator=gen))
    lo, hi = math.log(cfg.min_context), math.log(cfg.max_context + 1)
    n = min(cfg.max_context, int(math.exp(lo + (hi - lo) * float(torch.rand((), generator=gen)))))
    # attention costs ~ n^2 per dimension: beyond n = 64, shrink the batch further
    b = max(cfg.min_batch, min(cfg.max_batch, int(cfg.token_budget / (n * d * max(1.0, n / 64)))))
    frac = step / max(1.0, cfg.curriculum_frac * cfg.steps)
    peaks = max(1, min(prior.max_peaks, 1 + int(frac * prior.max_peaks)))
    return d, n, b, peaks


def validation_set(cfg: TrainConfig, prior: PriorConfig) -> list:
    """Fixed held-out tasks (seed 12345), one batch per d in ``cfg.val_dims``."""
    gen = torch.Generator().manual_seed(12345)
    return [
        sample_tasks(prior, cfg.val_tasks, gen, num_dims=d, num_context=cfg.val_context, num_targets=cfg.val_targets)
        for d in cfg.val_dims
        if d <= prior.max_dims
    ]


@torch.no_grad()
def evaluate(decoder: SpectralDecoder, batches: list) -> dict[str, float]:
    """Mean target NLL of the decoded GP and its gap to the oracle (true kernel, noise and mean), per d."""
    res = {}
    for b in batches:
        p = decode_spectral_params(b.x_context, b.y_context, decoder)  # every inference stage
        kern = lambda x1, x2, diag=False: spectral_mixture_covariance(  # noqa: E731
            x1, x2, p.weights, p.means, p.scales, p.outputscale, diag=diag
        )
        dec = exact_gp_scores(kern(b.x_context, b.x_context), kern(b.x_target, b.x_context),
                              kern(b.x_target, b.x_target, diag=True), p.noise, b.y_context, b.y_target,
                              mean=p.constant_mean)
        orc = b.oracle_scores()
        d = b.num_dims
        res[f"nll_d{d}"] = float(dec.target_nll.mean())
        res[f"gap_d{d}"] = float((dec.target_nll - orc.target_nll).mean())
        res[f"mse_ratio_d{d}"] = float(dec.target_mse.mean() / orc.target_mse.mean())
    return res


class Trainer:
    """Runs (or resumes) a training run in ``out_dir``.

    Files: ``checkpoint.pt`` (model, optimizer, step, generator state; loaded with
    ``weights_only=True``), ``decoder.safetensors`` + ``decoder.json`` (the weights and model card
    at the last checkpoint), ``log.jsonl`` (training and validation logs).
    """

    def __init__(self, cfg: TrainConfig, out_dir: str | Path, progress: bool = True) -> None:
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.progress = progress
        self.distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        self.rank = int(os.environ.get("RANK", "0"))
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        if cfg.device == "auto":
            self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        else:
            self.device = torch.device(cfg.device)
        if self.distributed:
            if not dist.is_initialized():
                dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
            if self.device.type == "cuda":
                self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
                torch.cuda.set_device(self.device)
        torch.manual_seed(cfg.seed)
        self.prior = _prior_config(cfg)
        self.decoder = SpectralDecoder(DecoderConfig(**{
            "trained_max_dims": self.prior.max_dims, "trained_max_context": cfg.max_context, **cfg.decoder
        })).to(self.device)
        self.objective = DecoderObjective(self.decoder, LossWeights(**cfg.loss))
        self.model = self.objective
        if self.distributed:
            from torch.nn.parallel import DistributedDataParallel

            self.model = DistributedDataParallel(self.objective, find_unused_parameters=True)
        self.optimizer = torch.optim.AdamW(self.decoder.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.gen = torch.Generator().manual_seed(cfg.seed + 1000 * self.rank)
        self.step = 0
        self.wall_time = 0.0
        self.skipped = 0
        self.last_val: dict[str, float] = {}
        if (self.out_dir / "checkpoint.pt").is_file():
            self.load_checkpoint(self.out_dir / "checkpoint.pt")
        elif cfg.init_weights:
            self.load_initial_weights(Path(cfg.init_weights))

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict[str, Any]:
        return {
            "decoder": self.decoder.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "generator": self.gen.get_state(),
            "wall_time": self.wall_time,
            "skipped": self.skipped,
            "last_val": self.last_val,
            "config": json.dumps(asdict(self.cfg)),
        }

    def save_checkpoint(self) -> None:
        if self.rank != 0:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.out_dir / "checkpoint.pt.tmp"
        torch.save(self.state(), tmp)
        os.replace(tmp, self.out_dir / "checkpoint.pt")
        save_decoder(self.decoder, self.out_dir / "decoder.safetensors", self.model_card())

    def load_initial_weights(self, path: Path) -> None:
        """Start from the weights at ``path`` (written by :func:`save_decoder`)."""
        from pfn_kernels.network.weights import WeightsError, load_decoder

        source = load_decoder(path)  # a clear WeightsError for a missing or corrupt file
        try:
            self.decoder.load_state_dict(source.state_dict(), strict=True)
        except RuntimeError as err:
            raise WeightsError(
                f"init_weights {path} do not match this run's decoder config: {err}. Use the "
                "architecture recorded in their model card (the 'decoder' field of the config)."
            ) from err
        logger.info("initialized from %s", path)

    def load_checkpoint(self, path: Path) -> None:
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as err:  # truncated zip, not a checkpoint, disallowed pickle content
            raise RuntimeError(
                f"Checkpoint {path} is unreadable (truncated or corrupt): {err}. Move it away to "
                "start the run over, or restore a good copy."
            ) from err
        try:
            self.decoder.load_state_dict(state["decoder"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (KeyError, RuntimeError, ValueError) as err:
            raise RuntimeError(
                f"Checkpoint {path} does not fit this run's configuration (another decoder "
                f"architecture or optimizer?): {err}. Use the run's own config, or another --out."
            ) from err
        self.step = int(state["step"])
        self.gen.set_state(state["generator"].cpu())  # map_location moved it to the run's device
        self.wall_time = float(state["wall_time"])
        self.skipped = int(state.get("skipped", 0))
        self.last_val = dict(state.get("last_val", {}))
        logger.info("resumed from %s at step %d", path, self.step)

    def model_card(self) -> dict[str, Any]:
        cpu = platform.processor() or platform.machine()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        hw = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else f"CPU ({cpu}), {torch.get_num_threads()} threads"
        world = dist.get_world_size() if self.distributed else 1
        return {
            "architecture": self.decoder.config.to_dict(),
            "parameters": sum(p.numel() for p in self.decoder.parameters()),
            "prior": asdict(self.prior),
            "training": asdict(self.cfg),
            "steps": self.step,
            "skipped_steps": self.skipped,
            "hardware": hw,
            "processes": world,
            "wall_time_s": round(self.wall_time, 1),
            "validation": self.last_val,
            "torch": torch.__version__,
        }

    def _log(self, record: dict[str, Any]) -> None:
        if self.rank != 0:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    # ------------------------------------------------------------------ loop
    def train_step(self) -> dict[str, float] | None:
        cfg = self.cfg
        d, n, b, peaks = draw_shape(cfg, self.prior, self.step, self.gen)
        batch = sample_tasks(self.prior, b, self.gen, num_dims=d, num_context=n, max_peaks=peaks).to(self.device)
        for group in self.optimizer.param_groups:
            group["lr"] = cfg.lr * _lr_factor(cfg, self.step)
        self.optimizer.zero_grad(set_to_none=True)
        loss, logs = self.model(batch)
        if not self._finite_everywhere(loss):
            if self.distributed:  # keep DDP's gradient all-reduce in step: a backward that is discarded
                (loss.nan_to_num(0.0, 0.0, 0.0) * 0).backward()
                self.optimizer.zero_grad(set_to_none=True)
            self.skipped += 1
            logger.warning("step %d: non-finite loss (d=%d, n=%d); skipped", self.step, d, n)
            self._log({"step": self.step, "skipped": True, "d": d, "n": n})
            self.step += 1
            return None
        loss.backward()
        grads = [p.grad for p in self.decoder.parameters() if p.grad is not None]
        if any(not torch.isfinite(g).all() for g in grads):
            self.skipped += 1
            self.optimizer.zero_grad(set_to_none=True)
            logger.warning("step %d: non-finite gradient; skipped", self.step)
            self._log({"step": self.step, "skipped": True, "d": d, "n": n})
            self.step += 1
            return None
        torch.nn.utils.clip_grad_norm_(self.decoder.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.step += 1
        return {**logs, "d": d, "n": n, "b": b}

    def _finite_everywhere(self, loss: torch.Tensor) -> bool:
        """Whether the loss is finite on every process: all must skip a step together."""
        finite = bool(torch.isfinite(loss).all())
        if not self.distributed:
            return finite
        flag = torch.tensor([1.0 if finite else 0.0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item() > 0)

    def fit(self, max_seconds: float | None = None, until: int | None = None) -> dict[str, float]:
        """Train until ``cfg.steps``, or step ``until``, or ``max_seconds`` of wall time, whichever
        comes first (with a checkpoint there); returns the last validation metrics."""
        cfg = self.cfg
        val = validation_set(cfg, self.prior) if (cfg.val_every and self.rank == 0) else []
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not self.progress or self.rank != 0, desc="train")
        start = time.perf_counter()
        ema: dict[str, float] = {}
        self.decoder.train()
        while self.step < cfg.steps:
            t0 = time.perf_counter()
            logs = self.train_step()
            self.wall_time += time.perf_counter() - t0
            bar.update(1)
            if logs is not None:
                for k in ("loss", "target_nll", "supervised"):
                    ema[k] = logs[k] if k not in ema else 0.98 * ema[k] + 0.02 * logs[k]
                bar.set_postfix({k: f"{v:.3f}" for k, v in ema.items()} | {k: f"{v:.2f}" for k, v in self.last_val.items() if k.startswith("gap")})
                if self.step % 50 == 0:
                    self._log({"step": self.step, **logs, "lr": self.optimizer.param_groups[0]["lr"]})
            if val and (self.step % cfg.val_every == 0 or self.step == cfg.steps):
                self.last_val = evaluate(self.decoder, [v.to(self.device) for v in val])
                self._log({"step": self.step, "validation": self.last_val})
            if self.step % cfg.ckpt_every == 0 or self.step == cfg.steps:
                self.save_checkpoint()
            if (max_seconds is not None and time.perf_counter() - start > max_seconds) or self.step == until:
                self.save_checkpoint()
                break
        bar.close()
        return self.last_val
