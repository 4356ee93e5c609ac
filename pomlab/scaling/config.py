"""What a scaling sweep is: the models (mixer x size), how long they train, when and how they are
evaluated, and the defaults of the two scales.

"micro": the micro model family on the embedded digits, digits-FID/IS, sized so that S, B, L and
XL for both mixers train and evaluate on 2 CPU cores in about 7 minutes.
"paper": the DiT paper's sizes on VAE latents (ImageNet 256), Inception FID/IS, on GPUs.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from ..data import DATASETS
from ..diffusion import check_convention
from ..metrics import BACKENDS
from ..models.registry import FAMILIES, PATCHES, SCALES, SIZES
from ..train import DEFAULT_LR, PRECISIONS

MIXERS = ("pom", "mha")
FAMILY_OF = {mixer: family for family, mixer in FAMILIES.items()}      # "pom" -> "DiPoM"
SETTINGS_FORMAT = "pomlab-scaling-v1"

# Defaults per scale (the CLI's and SweepConfig.for_scale's).
SCALE_DEFAULTS = {
    # 600 steps of batch 32 = 13 epochs of the 1437 digits at pomlab.train's micro learning rate
    # (1e-2: stable at batch 32 for every micro size, docs/scaling.md); evaluation at 5 log-spaced
    # steps (38 ... 600), 250 samples each with Heun, 10 steps (20 model calls per sample).
    # Half the CPU time of batch 64 / 500 samples (a training step of micro XL at batch 32 costs
    # 0.48-0.52x one at 64, measured interleaved), so the whole sweep takes ~7 min on 2 cores;
    # the digits-FID slopes stay clearly negative (S and B: -0.52 ... -0.76, 95% CIs below -0.2).
    "micro": dict(dataset="digits", backend="digits", steps=600, batch_size=32, eval_points=5,
                  eval_every=None, fid_samples=250, sample_steps=10, eval_chunk=250,
                  ckpt_every=0, out="results/scaling"),
    # DiT's 400K steps at batch 256, evaluated every 50K steps on 10K samples (DiT's scaling
    # figures use FID-50K; raise --fid-samples for final numbers), 50 Heun steps.
    # Guidance as in the PoM paper's Fig. 5 ("FID/IS computed on 10k samples with classifier free
    # guidance (w=1)"): w = 1 in the authors' convention c + w (c - u), i.e. standard scale 2
    # (docs/scaling.md gives the reading and its evidence).
    "paper": dict(dataset="latents", backend="inception", steps=400_000, batch_size=256,
                  eval_points=None, eval_every=50_000, fid_samples=10_000, sample_steps=50,
                  eval_chunk=1000, ckpt_every=10_000, out="results/scaling_paper",
                  cfg=1.0, cfg_guidance="authors"),
}

# Fields that may differ between invocations writing into one --out (they do not change any
# number in results.csv except the device column): which models run, where, how often
# checkpoints are written (resuming is exact), which seeds are trained (each seed's runs are
# their own, labelled by the seed column).
COMPATIBLE_FIELDS = ("sizes", "mixers", "seed", "seeds", "out", "device", "ckpt_every")


def model_name(mixer: str, size: str, patch: int) -> str:
    """("pom", "S", 2) -> "DiPoM-S/2"."""
    return f"{FAMILY_OF[mixer]}-{size}/{patch}"


def run_folder_name(mixer: str, size: str, patch: int, seed: int = 0) -> str:
    """A file-system name for one model's run: "DiPoM-S-2" (seed 0, the name runs had before
    --seeds), "DiPoM-S-2-seed1"."""
    name = model_name(mixer, size, patch).replace("/", "-")
    return name if seed == 0 else f"{name}-seed{seed}"


def log_spaced_steps(steps: int, points: int) -> tuple[int, ...]:
    """`points` evaluation steps ending at `steps`, each half the next (steps/2^(points-1), ...,
    steps/2, steps): evenly spaced in log compute, which is what the log-log fit wants."""
    _check_int("steps", steps)
    _check_int("eval_points", points)
    found = sorted({max(1, round(steps / 2 ** k)) for k in range(points)})
    return tuple(found)


def every_steps(steps: int, every: int) -> tuple[int, ...]:
    """every, 2*every, ..., and always the final step."""
    _check_int("steps", steps)
    _check_int("eval_every", every)
    return tuple(sorted(set(range(every, steps + 1, every)) | {steps}))


def _check_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _check_applies(config: "SweepConfig") -> None:
    """Refuse settings the chosen dataset or reference would silently ignore."""
    if config.dataset == "digits" and config.data_path:
        raise ValueError(f"--data-path / data_path does not apply to dataset 'digits' (embedded, "
                         f"no files), got {config.data_path!r}: pass --dataset folder, cifar10 "
                         "or latents to train on it")
    if config.vae and config.dataset != "latents":
        raise ValueError(f"--vae / vae decodes latent samples: it needs dataset 'latents', "
                         f"got dataset {config.dataset!r}")
    if config.reference_samples is not None and config.reference != "data":
        raise ValueError("--reference-samples / reference_samples counts training images for "
                         f"reference 'data'; reference {config.reference!r} is a file")


def _parse_list(name: str, value, allowed: tuple) -> tuple[str, ...]:
    items = tuple(v.strip() for v in value.split(",")) if isinstance(value, str) else tuple(value)
    if not items or any(v not in allowed for v in items) or len(set(items)) != len(items):
        raise ValueError(f"{name} must be distinct values from {', '.join(allowed)} "
                         f"(comma-separated), got {value!r}")
    return tuple(v for v in allowed if v in items)        # canonical order: S, B, L, XL / pom, mha


@dataclass
class SweepConfig:
    """One scaling sweep. Every (mixer, size) model is trained through pomlab.train with the same
    data, optimiser and seed, and evaluated (EMA weights, fixed noise and labels) at eval_steps.
    Build it with SweepConfig.for_scale(scale, ...) to get the scale's defaults."""

    sizes: tuple[str, ...] = SIZES
    mixers: tuple[str, ...] = MIXERS
    scale: str = "micro"
    patch: int = 2
    model_overrides: dict = field(default_factory=dict)   # for every model, e.g. {"depth": 1}
    # data (pomlab.data.load_dataset)
    dataset: str = "digits"
    data_path: str | None = None
    image_size: int | None = None
    # training (pomlab.train.TrainConfig)
    steps: int = 600
    batch_size: int = 32
    lr: float | None = None               # None: pomlab.train's per-scale default (recorded)
    warmup: int = 0
    ema_decay: float = 0.9999
    loss: str = "flow"
    seed: int = 0                         # the seed of one run (training and evaluation noise)
    seeds: tuple[int, ...] | None = None  # replicates: every model trained once per seed
                                          # (None: (seed,); else seed = seeds[0]); for_seed
    precision: str = "auto"
    checkpointing: bool = False           # memory savers, see pomlab.train.TrainConfig
    accumulate: int = 1
    # evaluation
    eval_steps: tuple[int, ...] = field(default_factory=lambda: log_spaced_steps(600, 5))
    fid_samples: int = 250
    sample_steps: int = 10
    sample_method: str | None = None      # None: heun (flow) / ddim (diffusion)
    cfg: float = 1.0
    cfg_guidance: str = "standard"        # how cfg reads: "standard" u + w(c - u) (1 = none) or
                                          # "authors" c + w(c - u) (0 = none), see guidance.py
    backend: str = "digits"
    backend_weights: str | None = None    # None: the built-in digits classifier / hub cache
    reference: str = "data"               # "data" (the training set) or a stats/images file
    reference_samples: int | None = None  # real images for "data" references (None: all / fid_samples)
    vae: str | None = None                # latents only; None: the VAE named in meta.json
    eval_chunk: int = 250                 # samples per noise seed (fixed: results do not depend
                                          # on how many processes share the sampling)
    sample_batch: int = 256
    # where and how
    device: str = "auto"
    ckpt_every: int = 0
    out: str = "results/scaling"

    @classmethod
    def for_scale(cls, scale: str = "micro", *, eval_every: int | None = None,
                  eval_points: int | None = None, **overrides) -> "SweepConfig":
        """The scale's defaults (SCALE_DEFAULTS), then `overrides`; the evaluation steps come
        from eval_every (linear) or eval_points (log-spaced) unless eval_steps is given."""
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
        d = dict(SCALE_DEFAULTS[scale])
        every, points = d.pop("eval_every"), d.pop("eval_points")
        if eval_every is not None:
            every, points = eval_every, None
        elif eval_points is not None:
            every, points = None, eval_points
        d.update(overrides, scale=scale)
        if "eval_steps" not in overrides:
            d["eval_steps"] = (every_steps(d["steps"], every) if every is not None
                               else log_spaced_steps(d["steps"], points))
        return cls(**d).validate()

    def validate(self) -> "SweepConfig":
        self.sizes = _parse_list("sizes", self.sizes, SIZES)
        self.mixers = _parse_list("mixers", self.mixers, MIXERS)
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {self.scale!r}")
        if self.patch not in PATCHES:
            raise ValueError(f"patch must be one of {PATCHES}, got {self.patch!r}")
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, got {self.dataset!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.backend == "digits" and self.dataset != "digits":
            raise ValueError(f"backend 'digits' scores the embedded digits only; dataset "
                             f"{self.dataset!r} needs backend='inception'")
        _check_applies(self)
        if self.dataset in ("latents", "folder", "cifar10") and not self.data_path:
            hint = (" (a latent folder made by experiments/encode_latents.py)"
                    if self.dataset == "latents" else "")
            raise ValueError(f"dataset {self.dataset!r} needs data_path / --data-path{hint}")
        if self.lr is None:                   # resolved, so sweep.json records the value used
            self.lr = DEFAULT_LR[self.scale]
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not isinstance(self.checkpointing, bool):
            raise ValueError(f"checkpointing must be a bool, got {self.checkpointing!r}")
        for name in ("steps", "batch_size", "fid_samples", "sample_steps", "eval_chunk",
                     "sample_batch", "accumulate"):
            _check_int(name, getattr(self, name))
        if self.fid_samples < 2 or self.eval_chunk < 2:
            raise ValueError("fid_samples and eval_chunk must be at least 2 (a covariance needs "
                             f"2 samples), got {self.fid_samples} and {self.eval_chunk}")
        if self.reference_samples is not None:
            _check_int("reference_samples", self.reference_samples)
        if self.seeds is None:
            self.seeds = (self.seed,)
        if isinstance(self.seeds, str):
            try:
                self.seeds = tuple(int(v) for v in self.seeds.split(","))
            except ValueError:
                raise ValueError(f"seeds must be comma-separated ints >= 0, got {self.seeds!r}") from None
        seeds = tuple(self.seeds)
        if (not seeds or len(set(seeds)) != len(seeds) or
                any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in seeds)):
            raise ValueError(f"seeds must be distinct ints >= 0, got {self.seeds!r}")
        self.seeds, self.seed = seeds, seeds[0]
        for name in ("warmup", "seed", "ckpt_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        if not (isinstance(self.cfg, (int, float)) and math.isfinite(self.cfg) and self.cfg >= 0):
            raise ValueError(f"cfg must be a number >= 0 (no guidance: 1 standard, 0 authors), "
                             f"got {self.cfg!r}")
        check_convention(self.cfg_guidance)
        steps = tuple(self.eval_steps)
        if (not steps or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in steps)
                or list(steps) != sorted(set(steps)) or steps[-1] != self.steps):
            raise ValueError(f"eval_steps must be increasing positive ints ending at steps="
                             f"{self.steps}, got {self.eval_steps!r}")
        self.eval_steps = steps
        if not isinstance(self.model_overrides, dict):
            raise TypeError(f"model_overrides must be a dict, got {type(self.model_overrides).__name__}")
        return self

    def for_seed(self, seed: int) -> "SweepConfig":
        """The configuration of one replicate: seed `seed` for training and evaluation."""
        return dataclasses.replace(self, seed=seed, seeds=(seed,))

    def models(self) -> list[tuple[str, str]]:
        """The (mixer, size) pairs of this sweep."""
        return [(mixer, size) for mixer in self.mixers for size in self.sizes]

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for key in ("sizes", "mixers", "eval_steps", "seeds"):
            d[key] = list(d[key])
        return d

    def settings(self) -> dict:
        """Everything that changes a number in results.csv (what one --out must agree on)."""
        settings = {k: v for k, v in self.to_dict().items() if k not in COMPATIBLE_FIELDS}
        if settings["cfg_guidance"] == "standard":    # sweeps recorded before the field existed
            del settings["cfg_guidance"]
        return settings
