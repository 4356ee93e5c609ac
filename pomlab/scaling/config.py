"""What a scaling sweep is: the models (mixer x size), when and how they are evaluated, and one
TrainConfig (`train`) that trains every model (no field of it is repeated here). The scales
("micro": digits on 2 CPU cores, "paper": ImageNet latents on GPUs) are in docs/scaling.md."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..checks import as_setting_errors, check_choice, check_int
from ..metrics import BACKENDS
from ..models.registry import FAMILIES, PATCHES, SCALES, SIZES
from ..train.config import TrainConfig, option

MIXERS = ("pom", "mha")
FAMILY_OF = {mixer: family for family, mixer in FAMILIES.items()}      # "pom" -> "DiPoM"
SETTINGS_FORMAT = "pomlab-scaling-v1"

# Defaults per scale (the CLI's and SweepConfig.for_scale's), sweep and training fields alike.
SWEEP_DEFAULTS = {
    # 13 epochs of the digits, 5 log-spaced evaluations: ~7 min on 2 cores (docs/scaling.md)
    "micro": dict(dataset="digits", backend="digits", steps=600, batch_size=32, eval_points=5,
                  eval_every=None, fid_samples=250, sample_steps=10, eval_chunk=250,
                  ckpt_every=0, out="results/scaling"),
    # DiT's schedule; the PoM paper's Fig. 5 guidance w = 1 in the authors' convention
    "paper": dict(dataset="latents", backend="inception", steps=400_000, batch_size=256,
                  eval_points=None, eval_every=50_000, fid_samples=10_000, sample_steps=50,
                  eval_chunk=1000, ckpt_every=10_000, out="results/scaling_paper",
                  cfg=1.0, cfg_guidance="authors"),
}
# Training fields the sweep sets per model, and fields that may differ between invocations
# writing into one --out (they change no number in results.csv except the device column).
PER_MODEL = ("model", "out")
COMPATIBLE_FIELDS = ("sizes", "mixers", "seed", "seeds", "out", "device", "ckpt_every",
                     "eval_every", "eval_points", "num_workers", "logger", "log_every",
                     "keep_checkpoints", "sample_every", "sample_at_end", "samples_per_class")
# Training fields a sweep has always recorded in sweep.json; the others only when not default.
_RECORDED = ("scale", "model_overrides", "dataset", "data_path", "image_size", "steps",
             "batch_size", "lr", "warmup", "ema_decay", "loss", "precision", "checkpointing",
             "accumulate", "sample_steps", "sample_method", "cfg")


def model_name(mixer: str, size: str, patch: int) -> str:
    """("pom", "S", 2) -> "DiPoM-S/2"."""
    return f"{FAMILY_OF[mixer]}-{size}/{patch}"


def run_folder_name(mixer: str, size: str, patch: int, seed: int = 0) -> str:
    """"DiPoM-S-2" (seed 0, the name runs had before --seeds), "DiPoM-S-2-seed1"."""
    name = model_name(mixer, size, patch).replace("/", "-")
    return name if seed == 0 else f"{name}-seed{seed}"


def log_spaced_steps(steps: int, points: int) -> tuple[int, ...]:
    """`points` evaluation steps ending at `steps`, each half the next (steps/2^(points-1), ...,
    steps/2, steps): evenly spaced in log compute, which is what the log-log fit wants."""
    check_int("steps", steps), check_int("eval_points", points)
    return tuple(sorted({max(1, round(steps / 2 ** k)) for k in range(points)}))


def every_steps(steps: int, every: int) -> tuple[int, ...]:
    """every, 2*every, ..., and always the final step."""
    check_int("steps", steps), check_int("eval_every", every)
    return tuple(sorted(set(range(every, steps + 1, every)) | {steps}))


def _parse_list(name: str, value, allowed: tuple) -> tuple[str, ...]:
    items = tuple(v.strip() for v in value.split(",")) if isinstance(value, str) else tuple(value)
    if not items or any(v not in allowed for v in items) or len(set(items)) != len(items):
        raise ValueError(f"{name} must be distinct values from {', '.join(allowed)} "
                         f"(comma-separated), got {value!r}")
    return tuple(v for v in allowed if v in items)        # canonical order: S, B, L, XL / pom, mha


def _sweep_train_defaults() -> TrainConfig:
    return TrainConfig(steps=600, batch_size=32, sample_steps=10, sample_at_end=False)


@dataclass
class SweepConfig:
    """One scaling sweep: every (mixer, size) model trained with `train` and evaluated at
    eval_steps; for_scale(scale, ...) gives the scale's defaults. config.steps reads train's."""

    sizes: tuple[str, ...] = option(SIZES, "comma-separated sizes from S,B,L,XL")
    mixers: tuple[str, ...] = option(MIXERS, "pom (DiPoM), mha (DiT) or both")
    patch: int = option(2, "patch size", choices=PATCHES)
    seeds: tuple[int, ...] | None = option(None, "train every model once per seed (replicates, "
                                           "e.g. 0,1,2): points become means over seeds and the "
                                           "fits' intervals a bootstrap over runs "
                                           "(default: --seed)")
    eval_every: int | None = option(None, "evaluate every N steps (and at the end)")
    eval_points: int | None = option(None, "K log-spaced evaluations: steps/2^(K-1) ... steps")
    eval_steps: tuple[int, ...] | None = option(None, "explicit evaluation steps, e.g. 100,200,400 "
                                                "(default: from --eval-every / --eval-points)")
    fid_samples: int = option(250, "samples per evaluation")
    backend: str = option("digits", "metric backend", choices=BACKENDS)
    backend_weights: str | None = option(None, "metric backend weights (default: built-in / "
                                         "torch hub cache)")
    reference: str = option("data", "'data' (the training set) or an .npz of mu/sigma statistics "
                            "or of images, or a folder of PNGs")
    reference_samples: int | None = option(None, "real images for --reference data (default: "
                                           "all / fid_samples)")
    vae: str | None = option(None, "VAE decoding latent samples (default: the one in meta.json)")
    eval_chunk: int = option(250, "samples per noise seed (results do not depend on how many "
                             "processes share the sampling)")
    sample_batch: int = option(256, "sampling batch size")
    out: str = option("results/scaling", "the sweep's folder")
    train: TrainConfig = dataclasses.field(default_factory=_sweep_train_defaults)

    def __getattr__(self, name: str):
        if name.startswith("__") or name == "train":       # (unpickling, before __dict__)
            raise AttributeError(name)
        return getattr(self.train, name)

    @classmethod
    def for_scale(cls, scale: str = "micro", *, train: dict | TrainConfig | None = None,
                  **overrides) -> "SweepConfig":
        """The scale's defaults (SWEEP_DEFAULTS), then `overrides` (training fields too, flat or
        as `train`); a given eval_every or eval_points wins over the scale's."""
        check_choice("scale", scale, SCALES)
        given = {**(dataclasses.asdict(train) if isinstance(train, TrainConfig) else train or {}),
                 **overrides}
        if given.get("eval_every") is not None or given.get("eval_points") is not None:
            given = {"eval_every": None, "eval_points": None, **given}
        d = {**SWEEP_DEFAULTS[scale], **given, "scale": scale}
        own = {f.name for f in dataclasses.fields(cls)}
        trained = {k: v for k, v in d.items() if k not in own}
        return cls(**{k: v for k, v in d.items() if k in own},
                   train=TrainConfig(**{**dataclasses.asdict(_sweep_train_defaults()), **trained})
                   ).validate()

    @as_setting_errors()
    def validate(self) -> "SweepConfig":
        """Check and resolve the fields (lists parsed, seeds and evaluation steps filled in)."""
        self.sizes = _parse_list("sizes", self.sizes, SIZES)
        self.mixers = _parse_list("mixers", self.mixers, MIXERS)
        check_choice("patch", self.patch, PATCHES)
        check_choice("backend", self.backend, BACKENDS)
        t = self.train.validate()
        if self.backend == "digits" and t.dataset != "digits":
            raise ValueError(f"backend 'digits' scores the embedded digits only; dataset "
                             f"{t.dataset!r} needs backend='inception'")
        if t.dataset == "digits" and t.data_path:
            raise ValueError(f"--data-path / data_path does not apply to dataset 'digits' "
                             f"(embedded, no files), got {t.data_path!r}: pass --dataset folder, "
                             "cifar10 or latents to train on it")
        if t.dataset != "digits" and not t.data_path:
            hint = (" (a latent folder made by experiments/encode_latents.py)"
                    if t.dataset == "latents" else "")
            raise ValueError(f"dataset {t.dataset!r} needs data_path / --data-path{hint}")
        if self.vae and t.dataset != "latents":
            raise ValueError(f"--vae / vae decodes latent samples: it needs dataset 'latents', "
                             f"got dataset {t.dataset!r}")
        if self.reference_samples is not None:
            check_int("reference_samples", self.reference_samples)
            if self.reference != "data":
                raise ValueError("--reference-samples / reference_samples counts training images "
                                 f"for reference 'data'; reference {self.reference!r} is a file")
        for name in ("fid_samples", "eval_chunk", "sample_batch"):
            check_int(name, getattr(self, name))
        if self.fid_samples < 2 or self.eval_chunk < 2:
            raise ValueError("fid_samples and eval_chunk must be at least 2 (a covariance needs "
                             f"2 samples), got {self.fid_samples} and {self.eval_chunk}")
        if self.cfg == "paper" or self.cfg < 0:
            raise ValueError(f"cfg must be a number >= 0 (no guidance: 1 standard, 0 authors), "
                             f"got {self.cfg!r}")
        seeds = (self.seeds.split(",") if isinstance(self.seeds, str) else
                 self.seeds if self.seeds is not None else (t.seed,))
        seeds = tuple(int(s) if isinstance(s, str) and s.strip().isdigit() else s for s in seeds)
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct ints >= 0, got {self.seeds!r}")
        self.seeds = tuple(check_int("seeds", s, minimum=0) for s in seeds)
        t.seed = self.seeds[0]
        steps = tuple(self.eval_steps if self.eval_steps is not None else
                      every_steps(t.steps, self.eval_every) if self.eval_every is not None
                      else log_spaced_steps(t.steps, self.eval_points or 5))
        if (not steps or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in steps)
                or list(steps) != sorted(set(steps)) or steps[-1] != t.steps):
            raise ValueError(f"eval_steps must be increasing positive ints ending at steps="
                             f"{t.steps}, got {self.eval_steps!r}")
        self.eval_steps = steps
        return self

    def for_seed(self, seed: int) -> "SweepConfig":
        """The configuration of one replicate: seed `seed` for training and evaluation."""
        return dataclasses.replace(self, seeds=(seed,),
                                   train=dataclasses.replace(self.train, seed=seed))

    def models(self) -> list[tuple[str, str]]:
        """The (mixer, size) pairs of this sweep."""
        return [(mixer, size) for mixer in self.mixers for size in self.sizes]

    def to_dict(self) -> dict:
        """Every setting (the per-model training fields left out), YAML- and JSON-ready."""
        d = dataclasses.asdict(self)
        d["train"] = {k: v for k, v in self.train.to_dict().items() if k not in PER_MODEL}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    def settings(self) -> dict:
        """Everything that changes a number in results.csv (what one --out must agree on), flat
        as sweep.json has always recorded it."""
        d, default = self.to_dict(), _sweep_train_defaults().to_dict()
        train = {k: v for k, v in d.pop("train").items()    # cfg_guidance: "standard" unrecorded
                 if k in _RECORDED or v != default[k]}
        return {k: v for k, v in {**d, **train}.items() if k not in COMPATIBLE_FIELDS}
