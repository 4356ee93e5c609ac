"""Toy seq2seq tasks that need mixing: PoM vs MHA vs a token-wise MLP as width, depth and
PoM's degree grow. Resumable (finished rows in the CSV are skipped), saved after every run.

    python experiments/universal_approximation.py --out results/theory

Writes universal_approximation.csv (one row per run, tidy) and figures
universal_approximation_params.{png,pdf} (held-out error vs parameters per mixer per task)
and universal_approximation_degree.{png,pdf} (PoM error vs degree).
"""
import _bootstrap  # noqa: F401  (makes `import pomlab` work from a checkout)

import time
from pathlib import Path

import pandas as pd
import torch

from pomlab.cli import ConfigParser, run
from pomlab.theory import TASKS, capacity_sweep, largest_model_errors, train_toy_runs
from pomlab.theory.plots import plot_error_vs_degree, plot_error_vs_params


def main(argv=None) -> pd.DataFrame:
    ap = ConfigParser(description=__doc__)
    ap.add_argument("--tasks", default=",".join(TASKS), help="comma-separated task names")
    ap.add_argument("--steps", type=int, default=800, help="training steps per run")
    ap.add_argument("--tokens", type=int, default=8, help="sequence length")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--time-limit", type=float, default=None,
                    help="minutes after which no new run starts (rerun to resume)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="results/theory")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    runs = capacity_sweep(args.tasks.split(","), steps=args.steps, tokens=args.tokens,
                          seed=args.seed)
    out = Path(args.out)
    deadline = None if args.time_limit is None else time.time() + 60 * args.time_limit
    df = train_toy_runs(runs, out / "universal_approximation.csv", deadline=deadline)
    done = len(df)
    print(f"{done} rows in {out / 'universal_approximation.csv'} "
          f"({len(runs)} runs requested; rerun to finish any left)")
    if done:
        plot_error_vs_params(df, out / "universal_approximation_params")
        plot_error_vs_degree(df, out / "universal_approximation_degree")
        with pd.option_context("display.float_format", "{:.4f}".format):
            print("held-out relative MSE, largest model of each mixer:")
            print(largest_model_errors(df).to_string())
    return df


if __name__ == "__main__":
    run(main)
