"""Scaling-law sweep (the paper's Figure 5): DiPoM and DiT, sizes S..XL, FID and IS against
training compute with log-log fits.

    python experiments/scaling_laws.py --sizes S,B,L,XL                  # micro scale on CPU (~7 min)
    python experiments/scaling_laws.py --sizes S,B --mixers pom --steps 200 --out results/quick
    python experiments/scaling_laws.py --scale paper --data-path data/in256_latents   # on GPUs
    torchrun --nproc_per_node 8 experiments/scaling_laws.py --scale paper --sizes XL \\
        --data-path data/in256_latents --out results/scaling_paper      # one size per torchrun job

Without a GPU the default is the micro scale on the embedded digits with the digits metric
backend (digits-FID/IS); with one, the paper scale (VAE latents, Inception FID/IS). Rerunning the
same command resumes: finished evaluations are skipped, unfinished training continues from its
checkpoint. OUT gets results.csv, fits.json/fits.csv, scaling.png/pdf, timings.csv and
runs/<model>/. See docs/scaling.md.
"""
import argparse
import os
import time

import _bootstrap  # noqa: F401
from train import _override

from pomlab.cli import HelpFormatter, run
from pomlab.data import DATASETS
from pomlab.diffusion import CONVENTIONS
from pomlab.metrics import BACKENDS
from pomlab.models import SCALES
from pomlab.scaling import SCALE_DEFAULTS, SweepConfig, run_sweep, slopes_table
from pomlab.scaling.sweep import resolve_device
from pomlab.train import DEFAULT_LR, PRECISIONS


def _steps_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated steps, got {text!r}") from None


def parse_args(argv=None) -> argparse.Namespace:
    micro, paper = SCALE_DEFAULTS["micro"], SCALE_DEFAULTS["paper"]

    def both(key, fmt=str):
        return f"default {fmt(micro[key])} (micro) / {fmt(paper[key])} (paper)"

    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    a = p.add_argument
    a("--sizes", default="S,B,L,XL", help="comma-separated sizes from S,B,L,XL")
    a("--mixers", default="pom,mha", help="pom (DiPoM), mha (DiT) or both (default)")
    a("--scale", choices=SCALES, default=None, help="default: paper with a GPU, micro without")
    a("--dataset", choices=DATASETS, default=None, help=both("dataset"))
    a("--data-path", default=None, help="latent folder (experiments/encode_latents.py) or image folder")
    a("--image-size", type=int, default=None, help="pixels for digits/folder/cifar10")
    a("--patch", type=int, default=None, choices=[2, 4, 8], help="patch size (default 2)")
    a("--override", type=_override, action="append", default=[], metavar="KEY=VALUE",
      help="model override for every model, e.g. depth=2 (repeatable)")
    a("--steps", type=int, default=None, help=both("steps"))
    a("--batch-size", type=int, default=None, help=both("batch_size"))
    a("--lr", type=float, default=None, help=f"default: pomlab.train's (micro {DEFAULT_LR['micro']:g}, "
                                             f"paper {DEFAULT_LR['paper']:g})")
    a("--warmup", type=int, default=None)
    a("--seed", type=int, default=None, help="training and evaluation seed (default 0)")
    a("--seeds", default=None, metavar="S1,S2,...",
      help="train every model once per seed (replicates, e.g. 0,1,2): points become means over "
           "seeds and the fits' intervals a bootstrap over runs (default: --seed alone)")
    a("--eval-every", type=int, default=None,
      help=f"evaluate every N steps (and at the end); default: micro {micro['eval_points']} "
           f"log-spaced points, paper every {paper['eval_every']}")
    a("--eval-points", type=int, default=None, help="K log-spaced evaluations: steps/2^(K-1) ... steps")
    a("--eval-at", type=_steps_list, default=None, help="explicit evaluation steps, e.g. 100,200,400")
    a("--fid-samples", type=int, default=None, help=both("fid_samples"))
    a("--sample-steps", type=int, default=None, help=both("sample_steps"))
    a("--sample-method", choices=["euler", "heun", "ddim", "ddpm"], default=None,
      help="default heun (flow)")
    a("--cfg", type=float, default=None,
      help="guidance scale (default: micro 1 standard = none; paper 1 authors, Fig. 5's protocol)")
    a("--cfg-guidance", choices=CONVENTIONS, default=None,
      help="how --cfg reads: standard u + w(c - u), authors c + w(c - u) (docs/scaling.md)")
    a("--backend", choices=BACKENDS, default=None, help=both("backend"))
    a("--weights", default=None, help="metric backend weights (default built-in / torch hub cache)")
    a("--reference", default=None,
      help="'data' (default: the training set) or an .npz of mu/sigma statistics or of images, "
           "or a folder of PNGs")
    a("--reference-samples", type=int, default=None, help="real images for --reference data")
    a("--vae", default=None, help="VAE for decoding latent samples (default: the one in meta.json)")
    a("--eval-chunk", type=int, default=None, help=both("eval_chunk"))
    a("--sample-batch", type=int, default=None, help="sampling batch size (default 256)")
    a("--precision", choices=PRECISIONS, default=None)
    a("--checkpointing", action="store_true", default=None,
      help="per-block activation checkpointing in training (less memory)")
    a("--accumulate", type=int, default=None, metavar="N",
      help="gradient accumulation: each batch in N micro-batches (default 1)")
    a("--device", default=None, help="auto (default), cpu, cuda, cuda:1 ...")
    a("--ckpt-every", type=int, default=None, help=both("ckpt_every"))
    a("--jobs", type=int, default=None, help="parallel models: CPU min(2, cores), GPU one per device")
    a("--threads", type=int, default=None, help="torch threads per job (CPU default 1)")
    a("--out", default=None, help=both("out"))
    a("--no-progress", action="store_true")
    return p.parse_args(argv)


def build_config(args: argparse.Namespace) -> SweepConfig:
    device = resolve_device(args.device or "auto")
    scale = args.scale or ("paper" if device.type == "cuda" else "micro")
    given = {"sizes": args.sizes, "mixers": args.mixers, "dataset": args.dataset,
             "data_path": args.data_path, "image_size": args.image_size, "patch": args.patch,
             "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
             "warmup": args.warmup, "seed": args.seed, "eval_steps": args.eval_at,
             "fid_samples": args.fid_samples, "sample_steps": args.sample_steps,
             "sample_method": args.sample_method, "cfg": args.cfg,
             "cfg_guidance": args.cfg_guidance, "backend": args.backend,
             "backend_weights": args.weights, "reference": args.reference,
             "reference_samples": args.reference_samples, "vae": args.vae,
             "eval_chunk": args.eval_chunk, "sample_batch": args.sample_batch,
             "precision": args.precision, "checkpointing": args.checkpointing,
             "accumulate": args.accumulate, "device": args.device, "ckpt_every": args.ckpt_every,
             "out": args.out}
    if args.seeds is not None:
        if args.seed is not None:
            raise ValueError("give --seed or --seeds, not both")
        given["seeds"] = args.seeds
    given = {k: v for k, v in given.items() if v is not None}
    if args.override:
        given["model_overrides"] = dict(args.override)
    return SweepConfig.for_scale(scale, eval_every=args.eval_every, eval_points=args.eval_points,
                                 **given)


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    config = build_config(args)
    result = run_sweep(config, jobs=args.jobs, threads=args.threads, progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) != 0:             # torchrun: rank 0 reports
        return result
    if result.fits is not None:
        print("log10 metric = a + b log10 training GFLOPs (b: slope, 95% CI); "
              f"{result.results['fid_name'].iloc[0]} and {result.results['is_name'].iloc[0]}")
        print(slopes_table(result.fits["fits"]).to_string(index=False))
    print(f"{len(result.results)} evaluations in {result.out / 'results.csv'} "
          f"({result.evaluations} new); fits in {result.out / 'fits.json'}; figure "
          f"{result.out / 'scaling.png'}; wall time {time.perf_counter() - start:.0f} s")
    return result


if __name__ == "__main__":
    run(main)
