"""Memory of frame-by-frame generation with PoM.step vs parallel block-causal mixing.

    python experiments/bench_state_memory.py [--dim 256] [--tokens-per-frame 256]
        [--frames 1,2,4,8,16,32,64] [--layers 2] [--device cpu] [--out results/state_memory]

A stack of ``--layers`` residual PoM layers (x <- x + PoM(x)) mixes a video of T frames of P
tokens so that frame t sees frames <= t, three ways (inference, no_grad):
  sequential : frames arrive one at a time (drawn inside the loop, as a sampler would make
               them); each layer carries its (H, n) state with PoM.step; outputs are consumed.
  parallel   : the whole video (T*P tokens) and its block_causal(T, P) mask at once, through
               the fast path (per-frame sums + cumsum over frames). The (N x N) bool mask is
               made before the measured call: its N^2 bytes come on top (column mask_bytes).
  parallel_reference : the same through the reference pom.py (dense (N x N) mask product);
               run up to --reference-max-frames only (quadratic).
Peak memory = peak bytes allocated above the starting level during one call
(pomlab.benchmark.peak_memory: CUDA allocator peak, or on CPU the profiler's memory events);
time per frame = median of interleaved calls. Writes CSV and PNG/PDF figures to --out.
"""
import argparse
from pathlib import Path

import _bootstrap  # noqa: F401
import pandas as pd
import torch
from tqdm import tqdm

import pomlab
from pomlab.benchmark import device_label, peak_memory, time_interleaved
from pomlab.cli import ConfigParser, HelpFormatter, run
from pomlab.figures import state_memory_figure
from pomlab.io import atomic_to_csv
from pomlab.masks import block_causal
from pomlab.nn import pom_fast


def sequential(layers, frames, per_frame, dim, device, seed=0):
    """Frame-by-frame mixing with per-layer states; returns the last frame's output."""
    g = torch.Generator(device=device).manual_seed(seed)
    states = [None] * len(layers)
    y = None
    for _ in range(frames):
        y = torch.randn(1, per_frame, dim, device=device, generator=g)
        for i, layer in enumerate(layers):
            out, states[i] = layer.step(y, states[i])
            y = y + out
    return y


def parallel(layers, mask, frames, per_frame, dim, device, seed=0):
    """The whole video at once with a block-causal mask; returns the last frame's output."""
    g = torch.Generator(device=device).manual_seed(seed)
    x = torch.cat([torch.randn(1, per_frame, dim, device=device, generator=g)
                   for _ in range(frames)], dim=1)
    for layer in layers:
        x = x + layer(x, mask=mask)
    return x[:, -per_frame:]


def run_method(method, layers, frames, args, device, mask=None):
    if method == "sequential":
        return sequential(layers, frames, args.tokens_per_frame, args.dim, device)
    if mask is None:
        mask = block_causal(frames, args.tokens_per_frame, device=device)[None]
    with pom_fast.implementation("auto" if method == "parallel" else "reference"):
        return parallel(layers, mask, frames, args.tokens_per_frame, args.dim, device)


def main(argv=None):
    p = ConfigParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--degree", type=int, default=2)
    p.add_argument("--expand", type=int, default=2)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--tokens-per-frame", type=int, default=256)
    p.add_argument("--frames", default="1,2,4,8,16,32,64")
    p.add_argument("--reference-max-frames", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default="results/state_memory")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    layers = [pomlab.PoM(args.dim, args.degree, args.expand).to(device) for _ in range(args.layers)]
    frame_counts = [int(v) for v in args.frames.split(",")]

    with torch.no_grad():      # the two schedules compute the same thing: check once
        t = min(f for f in frame_counts if f > 1) if max(frame_counts) > 1 else 1
        a = run_method("sequential", layers, t, args, device)
        b = run_method("parallel", layers, t, args, device)
        err = ((a - b).abs().max() / b.abs().max()).item()
        if not err < 1e-4:       # a real check, not an assert that python -O would drop
            raise RuntimeError(f"sequential and parallel disagree: relative error {err:.2e}")

    rows = []
    for frames in tqdm(frame_counts, desc="frames"):
        methods = ["sequential", "parallel"]
        if frames <= args.reference_max_frames:
            methods.append("parallel_reference")
        # the (N x N) bool mask is made outside the measured calls (its bytes are in the CSV)
        mask = block_causal(frames, args.tokens_per_frame, device=device)[None]
        with torch.no_grad():
            fns = {m: (lambda m=m: run_method(m, layers, frames, args, device, mask))
                   for m in methods}
            times = time_interleaved(fns, repeats=args.repeats, warmup=1, device=device)
            for m in methods:
                rows.append(dict(method=m, frames=frames, tokens=frames * args.tokens_per_frame,
                                 peak_bytes=peak_memory(fns[m], device),
                                 seconds_per_frame=times[m] / frames, dim=args.dim,
                                 mask_bytes=0 if m == "sequential" else mask.numel(),
                                 layers=args.layers, tokens_per_frame=args.tokens_per_frame,
                                 device=device_label(device)))
        df = pd.DataFrame(rows)
        atomic_to_csv(df, out / "state_memory.csv")
    state_memory_figure(df, out / "state_memory")
    table = df.pivot_table(index="frames", columns="method", values="peak_bytes") / 2**20
    print(f"# peak MiB above start, {args.layers} PoM layers D={args.dim}, "
          f"{args.tokens_per_frame} tokens/frame, {device_label(device)}")
    print(table.to_string(float_format=lambda v: f"{v:.1f}"))
    return df


if __name__ == "__main__":
    run(main)
