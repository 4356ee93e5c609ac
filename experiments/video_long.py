"""Long clips at flat cost: 256 frames generated frame by frame, beside parallel generation
until it needs more memory than the frame-by-frame run of 256 frames.

    python experiments/video_long.py --out results/video_long

1. One clip of --frames (256) frames generated frame by frame (pomlab.video.sample,
   mode="sequential"), --repeats times: the time of every frame (pomlab.video.sample's
   on_frame callback, median over the repeats) and, in one more run under torch.profiler,
   the peak tensor memory inside every frame's range (pomlab.benchmark.cpu_peak_memory_by_range,
   above the level before the call, so it includes the noise and output clip drawn up front).
2. The memory budget = the whole 256-frame sequential call's peak. Clip lengths 1, 2, 4, ...:
   parallel generation's peak (pomlab.benchmark.peak_memory) until it exceeds the budget;
   the sequential peak at the same lengths beside it.

Random weights (a fresh model is AdaLN-Zero: all zeros); a small model, batch 1, few Euler
steps: the cost per frame, not the clip, is what is measured. Writes OUT/video_long_frames.csv,
OUT/video_long_lengths.csv and OUT/video_long.{png,pdf}.
"""
import argparse
import statistics
import time
from pathlib import Path

import _bootstrap  # noqa: F401
import pandas as pd
import torch
from tqdm.auto import tqdm

from pomlab import models, plotting
from pomlab.cli import ConfigParser, HelpFormatter, run
from pomlab.benchmark import cpu_peak_memory_by_range, device_label, peak_memory
from pomlab.io import atomic_to_csv
from pomlab.video import sample
from pomlab.video.sampling import FRAME_RANGE

MIB = 2 ** 20


def parse_args(argv=None):
    p = ConfigParser(description=__doc__, formatter_class=HelpFormatter)
    a = p.add_argument
    a("--out", default="results/video_long")
    a("--model", default="VideoDiPoM-S/2", help="64 tokens per 16x16 frame at patch 2")
    a("--frames", type=int, default=256)
    a("--steps", type=int, default=4, help="Euler steps")
    a("--repeats", type=int, default=3)
    a("--threads", type=int, default=1)
    return p.parse_args(argv)


def figure(frames: pd.DataFrame, lengths: pd.DataFrame, budget_mib: float, stem: Path):
    with plotting.style():
        fig, axes = plotting.figure(ncols=3, width=3.2, height=2.6)
        axes = axes.ravel()
        axes[0].plot(frames.frame, frames.ms, color="C0", lw=0.8)
        axes[0].set(xlabel="frame index", ylabel="ms per frame", ylim=(0, None),
                    title="time of each frame (sequential)")
        axes[1].plot(frames.frame, frames.peak_mib, color="C0", lw=0.8)
        axes[1].set(xlabel="frame index", ylabel="peak tensor MiB", ylim=(0, None),
                    title="peak memory inside each frame")
        for mode, color in (("sequential", "C0"), ("parallel", "C3")):
            part = lengths[lengths["mode"] == mode]
            axes[2].plot(part.frames, part.peak_mib, "o-", color=color, ms=3, label=mode)
        axes[2].axhline(budget_mib, color="k", ls=":", lw=0.8, label="budget: 256 frames sequential")
        axes[2].set(xscale="log", yscale="log", xlabel="clip length (frames)",
                    ylabel="peak tensor MiB", title="whole clip")
        axes[2].legend(fontsize=7)
        fig.suptitle(f"{frames.model.iloc[0]}, batch 1, {frames.steps.iloc[0]} Euler steps, "
                     f"{frames.device.iloc[0]}; experiments/video_long.py", fontsize=8, y=1.03)
        return plotting.save(fig, stem)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    model = models.create(args.model, scale="micro").eval()
    with torch.no_grad():                        # random weights: a fresh model is all zeros
        for p in model.parameters():
            p.normal_(0.0, 0.05)
    labels = {"model": model.label, "steps": args.steps, "sampler": "euler", "batch": 1,
              "device": device_label(torch.device("cpu")),
              "memory_method": "torch.profiler allocation events (tensor bytes)"}

    def run(mode, frames, on_frame=None):
        return sample(model, ["a 3 moving left"], frames, mode=mode, steps=args.steps,
                      method="euler", generator=torch.Generator().manual_seed(0),
                      on_frame=on_frame)

    # 1. every frame of one long sequential clip
    per_frame = [[] for _ in range(args.frames)]
    for _ in tqdm(range(args.repeats), desc=f"{args.frames} frames, timed"):
        last = [time.perf_counter()]

        def tick(f, _frame):
            now = time.perf_counter()
            per_frame[f].append(now - last[0])
            last[0] = now
        run("sequential", args.frames, tick)
    whole_peak, ranges = cpu_peak_memory_by_range(lambda: run("sequential", args.frames), FRAME_RANGE)
    frames = pd.DataFrame({"frame": range(args.frames),
                           "ms": [1e3 * statistics.median(t) for t in per_frame],
                           "peak_mib": [ranges[f"{FRAME_RANGE}{f}"] / MIB for f in range(args.frames)],
                           "repeats": args.repeats, **labels})
    atomic_to_csv(frames, out / "video_long_frames.csv")
    budget = whole_peak / MIB

    # 2. parallel until it needs more than the budget; sequential beside it
    rows, n = [], 1
    while n <= args.frames:
        for mode in ("sequential", "parallel"):
            rows.append({"frames": n, "mode": mode,
                         "peak_mib": peak_memory(lambda: run(mode, n), "cpu") / MIB, **labels})
        print(f"{n:4d} frames: sequential {rows[-2]['peak_mib']:.3f} MiB, parallel "
              f"{rows[-1]['peak_mib']:.3f} MiB (budget {budget:.3f})", flush=True)
        if rows[-1]["peak_mib"] > budget:
            break
        n *= 2
    lengths = pd.DataFrame(rows).assign(budget_mib=budget)
    atomic_to_csv(lengths, out / "video_long_lengths.csv")
    figure(frames, lengths, budget, out / "video_long")
    quarter = args.frames // 4
    first, later = frames.iloc[1:quarter], frames.iloc[-quarter:]
    print(f"sequential {args.frames} frames: median {first.ms.median():.1f} ms/frame (frames 1.."
          f"{quarter - 1}) vs {later.ms.median():.1f} (last {quarter}); peak per frame "
          f"{first.peak_mib.max():.4f} vs {later.peak_mib.max():.4f} MiB; whole call {budget:.3f} MiB")
    print(f"wrote {out / 'video_long_frames.csv'}, {out / 'video_long_lengths.csv'}, {out / 'video_long.png'}")


if __name__ == "__main__":
    run(main)
