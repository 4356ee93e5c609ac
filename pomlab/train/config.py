"""TrainConfig: everything that defines a training run (saved in every checkpoint and beside
every run). The CLIs' flags are generated from these fields (pomlab.cli), help from `metadata`."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..checks import as_setting_errors, check_choice, check_int, check_number
from ..data import DATASETS
from ..diffusion import CONVENTIONS, PROCESSES, check_convention
from ..models.registry import SCALES

PRECISIONS = ("auto", "fp32", "bf16")
LOGGERS = ("csv", "tensorboard")
SAMPLERS = ("euler", "heun", "ddim", "ddpm")
# lr when TrainConfig.lr is None: DiT's at paper scale; micro: stable on the digits (training.md)
DEFAULT_LR = {"paper": 1e-4, "micro": 1e-2}
# fields renamed since checkpoints were first written: old name -> new name
_RENAMED = {"sample_cfg": "cfg", "sample_guidance": "cfg_guidance"}


def option(default, help: str, **metadata):
    """A dataclass field with a default and the help text of its command-line flag."""
    factory = {"default_factory": default} if callable(default) else {"default": default}
    return field(**factory, metadata={"help": help, **metadata})


@dataclass
class TrainConfig:
    model: str = option("DiPoM-S/2", "e.g. DiPoM-S/2, DiT-B/4 (sizes S,B,L,XL; patch 2,4,8)")
    scale: str = option("micro", "model scale", choices=SCALES)
    model_overrides: dict = option(dict, "KEY=VALUE for pomlab.models.create (repeatable), e.g. "
                                   "depth=2; input_size, in_channels, num_classes: the dataset's")
    dataset: str = option("digits", "see pomlab.data.load_dataset", choices=DATASETS)
    data_path: str | None = option(None, "folder for --dataset folder|cifar10|latents")
    image_size: int | None = option(None, "side in pixels (digits 16, cifar10 32, folder 256)")
    channels: int | None = option(None, "image channels (1 or 3)", choices=(1, 3))
    num_workers: int = option(0, "DataLoader workers (image folders, large latent sets)")
    loss: str = option("flow", "flow, diffusion (epsilon), hybrid (+ ADM's learned variance)",
                       choices=PROCESSES)
    hflip: bool = option(False, "random horizontal flips of image-folder items (DiT's default)")
    shift: float | str | None = option(None, "flow time shift: a number or 'auto' = sqrt(side/32)")
    steps: int = option(1000, "training steps")
    batch_size: int = option(64, "global batch (split over DDP ranks)")
    lr: float | None = option(None, "learning rate; default 1e-4 at paper scale (DiT), 1e-2 micro")
    weight_decay: float = option(0.0, "AdamW weight decay")
    betas: tuple[float, float] = option((0.9, 0.999), "AdamW betas")
    warmup: int = option(0, "linear learning-rate warm-up steps")
    grad_clip: float | None = option(1.0, "max gradient norm (0 or none: off)")
    ema_decay: float = option(0.9999, "EMA decay (DiT: 0.9999)")
    ema_warmup: bool = option(True, "EMA decay min(decay, (1+n)/(10+n)); no: DiT's constant one")
    seed: int = option(0, "seed of weights, data order, noise")
    precision: str = option("auto", "auto: bf16 autocast on CUDA, fp32 on CPU", choices=PRECISIONS)
    compile: bool = option(False, "torch.compile the model")
    checkpointing: bool = option(False, "recompute blocks in backward (less memory, +1 forward)")
    accumulate: int = option(1, "N micro-batches per optimizer step (same noise, less memory)")
    device: str = option("auto", "auto: cuda:LOCAL_RANK when CUDA is available, else cpu")
    out: str | None = option(None, "run folder")
    logger: str = option("csv", "csv, or TensorBoard too (the tensorboard extra)", choices=LOGGERS)
    log_every: int = option(10, "steps between logged rows")
    ckpt_every: int = option(0, "steps between checkpoints (0: only at the end of each run)")
    keep_checkpoints: int = option(2, "checkpoints kept")
    sample_every: int = option(0, "steps between sample grids (0: none during training)")
    sample_at_end: bool = option(True, "a sample grid at the end")
    sample_steps: int = option(50, "sampler steps")
    sample_method: str | None = option(None, "sampler (default heun for flow, ddim for "
                                       "diffusion)", choices=SAMPLERS)
    cfg: float | str = option(1.0, "guidance scale, or 'paper' for w = 4 * image_side / 256")
    cfg_guidance: str = option("standard", "how --cfg reads: standard u + w(c - u), authors "
                               "c + w(c - u)", choices=CONVENTIONS)
    samples_per_class: int = option(8, "columns of the sample grids")

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "betas": list(self.betas)}

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = {_RENAMED.get(k, k): v for k, v in d.items()}
        if unknown := set(d) - {f.name for f in dataclasses.fields(cls)}:
            raise ValueError(f"unknown TrainConfig fields {sorted(unknown)}")
        return cls(**{**d, **({"betas": tuple(d["betas"])} if "betas" in d else {})})

    @as_setting_errors()
    def validate(self) -> "TrainConfig":
        """Check and resolve the fields (lr None -> the scale's); bad values are ValueErrors."""
        for name in ("steps", "batch_size", "log_every", "keep_checkpoints", "sample_steps",
                     "samples_per_class", "accumulate"):
            check_int(name, getattr(self, name))
        for name in ("warmup", "ckpt_every", "sample_every", "num_workers", "seed"):
            check_int(name, getattr(self, name), minimum=0)
        for name in ("checkpointing", "hflip", "compile", "ema_warmup", "sample_at_end"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        check_choice("scale", self.scale, SCALES)
        if self.lr is None:                   # resolved: the saved config records the value
            self.lr = DEFAULT_LR[self.scale]
        check_number("lr", self.lr, minimum=0, strict_minimum=True)
        self.grad_clip = None if self.grad_clip == 0 else self.grad_clip      # 0: off
        if self.grad_clip is not None:
            check_number("grad_clip", self.grad_clip, minimum=0, strict_minimum=True)
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("logger", self.logger, LOGGERS)
        if self.shift not in (None, "auto"):
            check_number("shift ('auto' or a number)", self.shift, minimum=0, strict_minimum=True)
        if self.loss != "flow" and self.shift is not None:
            raise ValueError("shift applies to the flow-matching loss only (loss='flow')")
        if self.cfg != "paper":
            check_number("cfg (a number or 'paper')", self.cfg)
        check_convention(self.cfg_guidance)
        if not isinstance(self.model_overrides, dict):
            raise ValueError(f"model_overrides must be a dict, got "
                             f"{type(self.model_overrides).__name__}")
        return self
