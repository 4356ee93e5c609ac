"""Training-step time of the micro DiT/DiPoM family (forward + backward + AdamW step).

    python experiments/bench_micro_models.py [--batch 64] [--patch 2] [--threads 2] [--out CSV]

All models are timed interleaved (A B C ... A B C ...) in one process on flow-matching-shaped
inputs (16x16 grey digits size); medians are printed with the micro label, parameters,
GFLOPs per image and the estimated time of a sweep of --steps steps per model.
Besides wall time, the process CPU time of each step is recorded: with --threads 1 it is the
time an unshared core would take, which wall time overstates on a busy machine.
One thread is the default: on a shared 2-core machine, 2 OpenMP threads made the micro
models' ops up to ~50x slower (threads waiting for each other).
"""
import argparse
import os
import statistics
import time

import _bootstrap  # noqa: F401
import pandas as pd
import torch
import torch.nn.functional as F

import pomlab.models as M
from pomlab.benchmark import device_label, time_interleaved
from pomlab.cli import ConfigParser, HelpFormatter, run
from pomlab.io import atomic_to_csv


def with_cpu_time(fn, record: list):
    def timed():
        start = time.process_time()
        fn()
        record.append(time.process_time() - start)
    return timed


def make_step(model, batch: int, device):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, model.in_channels, model.input_size, model.input_size, device=device)
    y = torch.randint(0, model.num_classes + 1, (batch,), device=device)

    def step():
        t = torch.rand(batch, device=device)
        loss = F.mse_loss(model(x, t, y), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def main(argv=None):
    p = ConfigParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--patch", type=int, default=2, choices=M.PATCHES)
    p.add_argument("--sizes", default=",".join(M.SIZES))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=300, help="steps per model for the sweep estimate")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None, help="optional CSV path")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    models, steps, cpu = {}, {}, {}
    for size in args.sizes.split(","):
        for family in ("DiT", "DiPoM"):
            model = M.create(f"{family}-{size}/{args.patch}", scale="micro").to(device).train()
            models[model.label] = model
            cpu[model.label] = []
            steps[model.label] = with_cpu_time(make_step(model, args.batch, device),
                                               cpu[model.label])
    times = time_interleaved(steps, repeats=args.repeats, warmup=1, device=device)

    rows = [{"model": label, "params_M": sum(q.numel() for q in m.parameters()) / 1e6,
             "gflops_per_image": M.gflops(m), "step_ms": 1e3 * times[label],
             # the records start with the warm-up call: keep the timed ones only
             "step_cpu_ms": 1e3 * statistics.median(cpu[label][-args.repeats:]),
             "batch": args.batch} for label, m in models.items()]
    df = pd.DataFrame(rows)
    df["ratio_to_first"] = df.step_ms / df.step_ms.iloc[0]
    print(f"micro family, train step (fwd+bwd+AdamW), batch {args.batch}, 16x16x1 inputs, "
          f"median of {args.repeats}, {device_label(device)}, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(df.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    wall, busy = (df[c].sum() / 1e3 * args.steps / 60 for c in ("step_ms", "step_cpu_ms"))
    print(f"estimated sweep: {len(df)} models x {args.steps} steps = {wall:.1f} min at these "
          f"wall times, {busy:.1f} min of CPU time (training steps only)")
    if args.out:
        atomic_to_csv(df.assign(device=device_label(device)), args.out)


if __name__ == "__main__":
    run(main)
