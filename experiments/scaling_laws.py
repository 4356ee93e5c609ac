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
runs/<model>/ and config.yaml (the resolved settings: `--config OUT/config.yaml --out OUT2`
repeats the sweep). Every flag is a field of pomlab.scaling.SweepConfig or of its
TrainConfig (same name). See docs/scaling.md.
"""
import argparse
import os
import time

import _bootstrap  # noqa: F401

from pomlab.cli import ConfigParser, run
from pomlab.scaling import SWEEP_DEFAULTS, SweepConfig, run_sweep, slopes_table
from pomlab.scaling.config import PER_MODEL
from pomlab.scaling.sweep import resolve_device
from pomlab.train import TrainConfig


def parse_args(argv=None) -> argparse.Namespace:
    micro, paper = SWEEP_DEFAULTS["micro"], SWEEP_DEFAULTS["paper"]
    shown = {k: f"{micro.get(k)} (micro) / {paper.get(k)} (paper)" for k in {*micro, *paper}}
    p = ConfigParser(description=__doc__)
    p.nested.add("train")
    p.add_fields(SweepConfig, defaults={**shown, "eval_points": f"{micro['eval_points']} (micro)",
                                        "eval_every": f"{paper['eval_every']} (paper)"})
    p.add_fields(TrainConfig, skip=PER_MODEL, defaults={
        **shown, "scale": "paper with a GPU, micro without", "sample_at_end": False,
        "lr": "pomlab.train's per scale", "cfg": "1 standard = none (micro), 1 authors (paper)",
        "cfg_guidance": "standard (micro) / authors (paper)"})
    p.add_argument("--jobs", type=int, default=None,
                   help="parallel models: CPU min(2, cores), GPU one per device")
    p.add_argument("--threads", type=int, default=None, help="torch threads per job (CPU default 1)")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def build_config(args: argparse.Namespace) -> SweepConfig:
    given = {**ConfigParser.given(args, SweepConfig), **ConfigParser.given(args, TrainConfig)}
    seeds = given.get("seeds")      # OUT/config.yaml holds both, seed = seeds[0]: no conflict
    if "seed" in given and seeds is not None and list(seeds)[:1] != [given["seed"]]:
        raise ValueError("give --seed or --seeds, not both")
    scale = given.pop("scale", None) or (
        "paper" if resolve_device(given.get("device", "auto")).type == "cuda" else "micro")
    return SweepConfig.for_scale(scale, **given)


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
