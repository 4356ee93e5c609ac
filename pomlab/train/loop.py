"""The training loop: training_step, the Trainer and train(). Under torchrun each rank takes its
slice of every epoch (batch_size is global) and rank 0 writes every file."""
from __future__ import annotations

import contextlib
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..data import ImageDataset, ShardedBatchSampler, load_dataset
from ..diffusion import EMA, generate, make_process, paper_guidance_scale, shift_for_side
from ..faults import fault_point
from ..io import atomic_to_csv, atomic_torch_save, atomic_write_json, atomic_write_yaml
from .checkpoints import (CHECKPOINT_FORMAT, checkpoint_path, list_checkpoints, load_checkpoint,
                          rng_state, seed_all, set_rng_state, verify_checkpoint)
from .config import TrainConfig
from .loggers import Logger, grid_image, save_png


@dataclass
class TrainResult:
    step: int
    final_loss: float                   # mean training loss over the last logging interval
    images_per_s: float                 # median over logging intervals (all ranks together)
    history: list[dict]                 # one row per logging interval: step, loss, lr, ...
    checkpoint: Path | None
    samples: Path | None
    out: Path | None


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or inf."""


def distributed_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) without it."""
    env = os.environ.get
    return int(env("RANK", "0")), int(env("WORLD_SIZE", "1")), int(env("LOCAL_RANK", "0"))


def pick_device(pref: str, local_rank: int) -> torch.device:
    """"auto" -> cuda:LOCAL_RANK when CUDA is available, else cpu; "cuda" -> cuda:LOCAL_RANK."""
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device("cuda", local_rank) if pref == "cuda" else torch.device(pref)


def join_process_group(device: torch.device) -> bool:
    """Under torchrun, join (nccl/gloo) unless a group exists; True if created (caller destroys)."""
    if distributed_env()[1] == 1:
        return False
    if device.type == "cuda":
        torch.cuda.set_device(device)      # nccl and its object collectives use the current GPU
    if dist.is_initialized():
        return False
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return True


def training_step(forward: Callable, process, optimizer: torch.optim.Optimizer, x: Tensor,
                  y: Tensor, *, params: Sequence[Tensor], grad_clip: float | None = None,
                  autocast_dtype: torch.dtype | None = None, micro_batches: int = 1,
                  model: nn.Module | None = None) -> tuple[Tensor, Tensor | None]:
    """Loss, backward, clip, optimizer step; (loss, grad norm) as device tensors (no sync).
    micro_batches > 1: gradient accumulation (model: the module behind forward), the whole
    batch drawn first (draw_training_noise), pieces weighted by their share; DDP syncs the last."""
    if micro_batches > 1 and model is None:
        raise ValueError("training_step with micro_batches > 1 needs model= (the module behind "
                         "forward: its label dropout is drawn for the whole batch)")
    optimizer.zero_grad(set_to_none=True)
    drawn, y = draw_training_noise(process, model, x, y) if micro_batches > 1 else ({}, y)
    embedder = getattr(model, "y_embedder", None) if micro_batches > 1 else None
    dropout = getattr(embedder, "dropout_prob", None)
    split = [t.tensor_split(micro_batches) for t in (x, y, *drawn.values())]
    pieces = [piece for piece in zip(*split) if len(piece[0])]       # no empty micro-batches
    losses = []
    try:
        if embedder is not None:
            embedder.dropout_prob = 0.0                          # labels were dropped above
        for i, (xi, yi, *noise) in enumerate(pieces):
            sync = i == len(pieces) - 1 or not hasattr(forward, "no_sync")   # DDP: the last one
            with contextlib.nullcontext() if sync else forward.no_sync():
                with torch.autocast(x.device.type, dtype=autocast_dtype or torch.bfloat16,
                                    enabled=autocast_dtype is not None):
                    loss = process.loss(forward, xi, yi, **dict(zip(drawn, noise)))
                    loss = loss * (xi.shape[0] / x.shape[0])
                loss.backward()
            losses.append(loss.detach())
    finally:
        if embedder is not None:
            embedder.dropout_prob = dropout
    norm = torch.nn.utils.clip_grad_norm_(params, grad_clip) if grad_clip is not None else None
    optimizer.step()
    return sum(losses), norm


def accumulated_step(forward: Callable, model: nn.Module, process,
                     optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor, micro_batches: int,
                     **options) -> tuple[Tensor, Tensor | None]:
    """training_step(..., micro_batches=micro_batches, model=model): gradient accumulation."""
    return training_step(forward, process, optimizer, x, y, micro_batches=micro_batches,
                         model=model, **options)


def draw_training_noise(process, model: nn.Module, x: Tensor, y: Tensor) -> tuple[dict, Tensor]:
    """(loss keyword arguments, labels): process.loss's draws and the label dropout for a whole
    batch, in one full-batch step's order, so micro-batches cut from them see identical inputs."""
    noise = torch.randn_like(x)
    if hasattr(process, "warp"):                                 # flow matching
        times = {"t": process.warp(torch.rand(x.shape[0], device=x.device))}
    else:                                                        # epsilon diffusion
        times = {"steps": torch.randint(0, process.num_steps, (x.shape[0],), device=x.device)}
    embedder = getattr(model, "y_embedder", None)
    if model.training and embedder is not None and embedder.dropout_prob > 0:
        y = embedder.drop_labels(y)
    return {"noise": noise, **times}, y


Callback = Callable[["Trainer", dict], None]


class Trainer:
    """A run: build or resume, then run(until=step) as many times as wanted. model / dataset:
    ready-made objects (default: from the config). resume: False (refuses a folder holding
    checkpoints), True (continue from out's latest one if any) or a checkpoint path. callbacks:
    callback(trainer, row) after each logging interval, on every rank."""

    def __init__(self, config: TrainConfig, *, model: nn.Module | None = None,
                 dataset: ImageDataset | None = None, resume: bool | str | os.PathLike = False,
                 progress: bool = True, callbacks: Sequence[Callback] = ()):
        self.config = config.validate()
        self.progress, self.callbacks = progress, list(callbacks)
        self.rank, self.world_size, local_rank = distributed_env()
        self.device = pick_device(config.device, local_rank)
        cuda = self.device.type == "cuda"
        if cuda:                    # collectives, kernels, contexts: never cuda:0 by default
            torch.cuda.set_device(self.device)
        self._owns_group = join_process_group(self.device)
        per_rank, rest = divmod(config.batch_size, self.world_size)
        if rest:
            raise ValueError(f"batch_size {config.batch_size} (global) is not divisible by the "
                             f"{self.world_size} ranks")
        if per_rank < config.accumulate:
            raise ValueError(f"accumulate {config.accumulate} exceeds the per-rank batch "
                             f"{per_rank}")
        self.out, self.is_main = Path(config.out) if config.out else None, self.rank == 0

        self.data = dataset if dataset is not None else load_dataset(
            config.dataset, root=config.data_path, split="train", image_size=config.image_size,
            channels=config.channels, hflip=config.hflip)
        seed_all(config.seed)                                   # same initial weights on every rank
        self.model = model if model is not None else self._build_model()
        self._check_model_fits_data()
        self.model.to(self.device)
        if config.checkpointing:
            if not hasattr(self.model, "checkpointing"):
                raise ValueError(f"checkpointing: model {type(self.model).__name__} has no "
                                 "per-block checkpointing switch (pomlab.models' image models do)")
            self.model.checkpointing = True
        shift = shift_for_side(self.data.size) if config.shift == "auto" else config.shift
        self.process = make_process("flow", shift=shift) if config.loss == "flow" else \
            make_process(config.loss)
        bf16 = config.precision == "bf16" or (config.precision == "auto" and cuda)
        self.autocast_dtype = torch.bfloat16 if bf16 else None
        self.ema = EMA(self.model, config.ema_decay, warmup=config.ema_warmup)
        self.lr = config.lr                                     # resolved by validate
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=self.lr, betas=tuple(config.betas),
            weight_decay=config.weight_decay, fused=cuda or None)
        self.forward = self.model
        if self.world_size > 1:
            self.forward = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if cuda else None)
        if config.compile:
            self.forward = torch.compile(self.forward)

        self.sampler = ShardedBatchSampler(len(self.data), per_rank, rank=self.rank,
                                           world_size=self.world_size, seed=config.seed)
        tensors = self.data.tensors
        self._in_memory = None if tensors is None else tuple(t.to(self.device) for t in tensors)
        self._loader_iter = None
        self.step, self.history = 0, []
        self.ema.update_parameters(self.model)                  # EMA starts as a copy (DiT)
        seed_all(config.seed * 1000003 + 1 + self.rank)          # per-rank noise, label dropout

        ckpt = self._resume_checkpoint(resume)
        if ckpt is not None:
            self.load_state(ckpt)
        if self.out is not None and self.is_main:
            if ckpt is None:
                atomic_write_json(self.out / "config.json", {"train": config.to_dict(), "model":
                                  self.model_config, "process": self.process.config()})
            # this invocation's resolved settings: `--config out/config.yaml` repeats the run
            atomic_write_yaml(self.out / "config.yaml",
                              {k: v for k, v in config.to_dict().items() if k != "out"})
        self.logger = Logger(config.logger, self.out if self.is_main else None)

    def _build_model(self) -> nn.Module:
        from .. import models

        overrides = dict(self.config.model_overrides)
        for key, value in (("input_size", self.data.size), ("in_channels", self.data.channels),
                           ("num_classes", self.data.num_classes)):
            if overrides.get(key, value) != value:
                raise ValueError(f"model override {key}={overrides[key]} disagrees with the "
                                 f"dataset ({self.data.describe()})")
            overrides[key] = value
        if self.config.loss == "hybrid":         # ADM's hybrid loss learns the variance too
            overrides.setdefault("learn_sigma", True)
        return models.create(self.config.model, scale=self.config.scale, **overrides)

    def _check_model_fits_data(self) -> None:
        m, d = self.model, self.data
        if (m.in_channels, m.num_classes) != (d.channels, d.num_classes):
            raise ValueError(f"model {getattr(m, 'name', type(m).__name__)} has in_channels="
                             f"{m.in_channels}, num_classes={m.num_classes}; dataset "
                             f"{d.describe()} needs {d.channels} and {d.num_classes}")
        learned = self.config.loss == "hybrid"
        if getattr(m, "out_channels", m.in_channels) != m.in_channels * (2 if learned else 1):
            raise ValueError("loss='hybrid' needs a learn_sigma=True model (epsilon and variance)"
                             if learned else "the model predicts extra channels (learn_sigma=True):"
                             " only loss='hybrid' trains them; build it with learn_sigma=False")

    @property
    def model_config(self) -> dict:
        return dict(getattr(self.model, "config", {"class": type(self.model).__name__}))

    def _resume_checkpoint(self, resume) -> dict | None:
        """The checkpoint to resume from; True: out's newest readable one (bad ones: *.corrupt)."""
        if resume is False or resume is None:
            if self.out is not None and list_checkpoints(self.out):
                raise FileExistsError(f"{str(self.out)!r} already holds checkpoints: pass "
                                      "resume=True (--resume) to continue, or choose a new --out")
            return None
        if resume is not True:
            return load_checkpoint(resume)
        if self.out is None:
            raise ValueError("resume=True needs config.out (the run folder)")
        for path in reversed(list_checkpoints(self.out)):
            try:
                return load_checkpoint(path)
            except (ValueError, FileNotFoundError) as err:
                if self.is_main:
                    print(f"warning: {err}; resuming from the checkpoint before it",
                          file=sys.stderr)
                    with contextlib.suppress(FileNotFoundError):
                        path.rename(path.with_name(path.name + ".corrupt"))
        return None

    def _gather(self, obj) -> list:
        gathered = [obj] * self.world_size
        if self.world_size > 1:
            dist.all_gather_object(gathered, obj)
        return gathered

    def state_dict(self) -> dict:
        """The full checkpoint (collective under DDP: every rank must call it)."""
        return {"format": CHECKPOINT_FORMAT, "step": self.step, "world_size": self.world_size,
                "model": self.model.state_dict(), "ema": self.ema.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "rng": self._gather(rng_state(self.device)),
                "sampler": self._gather(self.sampler.state_dict()),
                "model_config": self.model_config, "train_config": self.config.to_dict(),
                "process": self.process.config(), "history": list(self.history)}

    def load_state(self, ckpt: dict) -> None:
        where = ckpt.get("path", "the checkpoint")
        old, new = ckpt["model_config"], self.model_config
        if old != new:
            diff = {k: (old.get(k), new.get(k)) for k in old | new if old.get(k) != new.get(k)}
            raise ValueError(f"{where} was written for another model: (checkpoint, this run) "
                             f"differ in {diff}")
        if ckpt["process"] != self.process.config():
            raise ValueError(f"{where} was trained with {ckpt['process']}, this run uses "
                             f"{self.process.config()}")
        if ckpt["world_size"] != self.world_size:
            raise ValueError(f"{where} was written by {ckpt['world_size']} rank(s); resume it "
                             f"with the same number (this run has {self.world_size})")
        try:
            self.model.load_state_dict(ckpt["model"])
            self.ema.load_state_dict(ckpt["ema"])
        except RuntimeError as err:
            raise ValueError(f"{where} does not fit this model: {err}") from err
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.sampler.load_state_dict(ckpt["sampler"][self.rank])
        set_rng_state(ckpt["rng"][self.rank], self.device)
        self.step, self.history = ckpt["step"], list(ckpt["history"])
        self._loader_iter = None

    def save_checkpoint(self) -> Path | None:
        """Write out/checkpoints/step_N.pt atomically (rank 0); refuse non-finite weights."""
        if self.out is None:
            return None
        # one device reduction (not a host sync per parameter)
        bad = torch.stack([~torch.isfinite(p).all() for p in self.model.parameters()]).any().float()
        if self.world_size > 1:
            dist.all_reduce(bad)
        if bad.item():
            raise NonFiniteLossError(f"the weights are not finite at step {self.step}; not "
                                     "overwriting the last good checkpoint")
        state = self.state_dict()
        path = checkpoint_path(self.out, self.step)
        if self.is_main:
            atomic_torch_save(state, path, fault="checkpoint_write")
            verify_checkpoint(path, self.step)      # the older ones stay until it reads back
            for old in list_checkpoints(self.out)[:-self.config.keep_checkpoints]:
                old.unlink()
            if self.history:
                atomic_to_csv(pd.DataFrame(self.history), self.out / "metrics.csv")
        return path

    def _next_batch(self) -> tuple[Tensor, Tensor]:
        if self._in_memory is not None:
            idx = self.sampler.next_batch().to(self.device)
            return self._in_memory[0][idx], self._in_memory[1][idx]
        if self._loader_iter is None:
            self._loader_iter = iter(torch.utils.data.DataLoader(
                self.data, batch_sampler=self.sampler.remaining().tolist(),
                num_workers=self.config.num_workers, pin_memory=self.device.type == "cuda",
                generator=torch.Generator().manual_seed(self.config.seed)))  # not the global RNG
        x, y = next(self._loader_iter)
        self.sampler.advance()
        if self.sampler.position == 0:                           # epoch done: next loader
            self._loader_iter = None
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def lr_at(self, step: int) -> float:
        """Linear warm-up over `warmup` steps, then constant (DiT)."""
        warmup = self.config.warmup
        return self.lr * min(1.0, (step + 1) / warmup) if warmup else self.lr

    def run(self, until: int | None = None) -> TrainResult:
        """Train to step `until` (default config.steps); checkpoint and sample at the end."""
        cfg = self.config
        until = cfg.steps if until is None else until
        if isinstance(until, bool) or not isinstance(until, int) or until < self.step:
            raise ValueError(f"until must be an int >= the current step {self.step}, got {until!r}")
        params = [p for p in self.model.parameters() if p.requires_grad]
        bar = tqdm(total=until, initial=self.step, desc=getattr(self.model, "name", "train"),
                   unit="step", dynamic_ncols=True, disable=not (self.progress and self.is_main))
        self.model.train()
        # device accumulators (no host sync per step); norm_sum: the clipped steps' gradient norms
        loss_sum, norm_sum = (torch.zeros((), device=self.device) for _ in range(2))
        count, tick = 0, time.perf_counter()
        try:
            while self.step < until:
                x, y = self._next_batch()
                for group in self.optimizer.param_groups:
                    group["lr"] = self.lr_at(self.step)
                loss, norm = training_step(self.forward, self.process, self.optimizer, x, y,
                                           params=params, grad_clip=cfg.grad_clip,
                                           autocast_dtype=self.autocast_dtype,
                                           micro_batches=cfg.accumulate, model=self.model)
                fault_point("train_step")
                self.ema.update_parameters(self.model)
                self.step, count = self.step + 1, count + 1
                loss_sum += loss
                if norm is not None:
                    norm_sum += norm.detach().float()
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == until:
                    row = self._log_row(loss_sum / count, count, time.perf_counter() - tick)
                    if self.logger.writer is not None:
                        norm = {"grad_norm": norm_sum.item() / count} if cfg.grad_clip else {}
                        self.logger.scalars(self.step, {**row, **norm}, "train/")
                    bar.set_postfix(loss=f"{row['loss']:.4f}", img_s=f"{row['images_per_s']:.0f}")
                    for callback in self.callbacks:
                        callback(self, row)
                    loss_sum.zero_()
                    norm_sum.zero_()
                    count, tick = 0, None
                if cfg.ckpt_every and self.step % cfg.ckpt_every == 0 and self.step != until:
                    self.save_checkpoint()
                if cfg.sample_every and self.step % cfg.sample_every == 0 and self.step != until:
                    self.save_samples()
                if tick is None:                                 # time only the training steps
                    tick = time.perf_counter()
        finally:
            bar.close()
        ckpt = self.save_checkpoint()
        samples = self.save_samples() if cfg.sample_at_end else None
        if self.world_size > 1:
            self.check_replicas()
        rates = [r["images_per_s"] for r in self.history if r["images_per_s"] > 0]
        return TrainResult(self.step, self.history[-1]["loss"] if self.history else math.nan,
                           statistics.median(rates) if rates else math.nan, list(self.history),
                           checkpoint=ckpt, samples=samples, out=self.out)

    def _log_row(self, mean: Tensor, count: int, seconds: float) -> dict:
        """The interval's row (mean loss of all ranks); NonFiniteLossError if a loss was NaN/inf."""
        if self.world_size > 1:
            dist.all_reduce(mean)
            mean /= self.world_size
        if not math.isfinite(loss := mean.item()):
            last = list_checkpoints(self.out) if self.out is not None else []
            raise NonFiniteLossError(
                f"the training loss became NaN/inf by step {self.step}; last good checkpoint: "
                f"{str(last[-1]) if last else 'none'} (it is kept). Lower the learning rate, "
                "enable grad clipping, or check the data for NaN")
        row = {"step": self.step, "loss": loss, "lr": self.lr_at(self.step - 1),
               "epoch": self.sampler.epoch,
               "images_per_s": count * self.config.batch_size / seconds if seconds > 0 else 0.0,
               "device": str(self.device), "world_size": self.world_size}
        self.history.append(row)
        return row

    def check_replicas(self) -> None:
        """Under DDP, raise if the ranks' weights differ: per-parameter float64 sums compared
        exactly (small to gather; no float64 copy of all weights, 5.4 GB at XL/2)."""
        names, params = zip(*((n, p.detach()) for n, p in self.model.named_parameters()))
        summary = torch.stack([torch.stack([p.double().sum(), p.double().square().sum(),
                                            p.abs().max().double()]) for p in params]).cpu()
        gathered = self._gather(summary)
        for rank, other in enumerate(gathered[1:], start=1):
            if not torch.equal(gathered[0], other):
                first = int((gathered[0] != other).any(1).nonzero()[0])
                raise RuntimeError(f"DDP replicas diverged at step {self.step}: rank {rank}'s "
                                   f"{names[first]} differs from rank 0's")

    def sample_cfg(self) -> float:
        """The guidance scale of config.cfg ('paper': 4 * image side / 256)."""
        if self.config.cfg == "paper":
            return paper_guidance_scale(self.data.size * getattr(self.model, "latent_scale", 1))
        return float(self.config.cfg)

    def grid_labels(self) -> Tensor:
        """One row per class (10 evenly spaced classes when there are more)."""
        n = self.data.num_classes
        classes = torch.arange(n) if n <= 10 else torch.linspace(0, n - 1, 10).round().long()
        return classes.repeat_interleave(self.config.samples_per_class)

    def generate(self, labels: Tensor, *, steps: int | None = None, method: str | None = None,
                 cfg: float | None = None, seed: int = 0, ema: bool = True,
                 batch_size: int = 256, guidance: str | None = None) -> Tensor:
        """Samples for these labels in model space like pomlab.diffusion.generate; the config's
        sampler settings by default (cfg reads in the `guidance` convention)."""
        c = self.config
        return generate(self.ema.module if ema else self.model, self.process, labels,
                        steps=steps or c.sample_steps, method=method or c.sample_method,
                        cfg=self.sample_cfg() if cfg is None else cfg, seed=seed,
                        batch_size=batch_size, autocast_dtype=self.autocast_dtype,
                        guidance=guidance or c.cfg_guidance)

    def save_samples(self) -> Path | None:
        """A class-conditional grid (EMA weights, fixed noise): out/samples/step_N.png (rank 0)."""
        if self.out is None or not self.is_main:
            return None
        labels = self.grid_labels()
        x = self.generate(labels, seed=self.config.seed)
        image = grid_image(x, len(labels) // self.config.samples_per_class, kind=self.data.kind)
        self.logger.image("samples", self.step, image)
        return save_png(image, self.out / "samples" / f"step_{self.step:08d}.png")

    def close(self) -> None:
        self.logger.close()
        self._loader_iter = None                      # ends DataLoader worker processes now
        if self._owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self._owns_group = False


def train(config: TrainConfig, *, resume: bool | str | os.PathLike = False, progress: bool = True,
          callbacks: Sequence[Callback] = (), model: nn.Module | None = None,
          dataset: ImageDataset | None = None) -> TrainResult:
    """Build (or resume) a run, train to config.steps, checkpoint, sample; see Trainer."""
    trainer = Trainer(config, model=model, dataset=dataset, resume=resume, progress=progress,
                      callbacks=callbacks)
    try:
        return trainer.run(config.steps)
    finally:
        trainer.close()
