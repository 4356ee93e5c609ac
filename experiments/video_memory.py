"""Memory and time of frame-by-frame vs parallel video generation, from 4 to 64 frames.

    python experiments/video_memory.py --out results/video_memory

For each clip length, pomlab.video.sample generates one clip (batch 1) with the block-causal
video DiPoM, once frame by frame through the carried PoM states (mode="sequential") and once
with all frames in parallel (mode="parallel"). Both give the same clip.

- Peak memory: tensor bytes allocated during the call above the level before it (on CPU
  through torch.profiler's allocation events, pomlab.benchmark.peak_memory; on CUDA the allocator's
  peak counter). It includes the noise and the output clip, which are O(frames) but tiny;
  working_mib subtracts them (float32 noise + output = 2 clips).
- Time: the two modes timed interleaved (A B A B, pomlab.benchmark.time_interleaved), medians;
  per-frame time = median / frames.

Writes OUT/video_memory.csv and OUT/video_memory.{png,pdf} (pomlab.figures.video_memory_figure).
"""
import argparse
from pathlib import Path

import _bootstrap  # noqa: F401
import pandas as pd
import torch

from pomlab import models
from pomlab.benchmark import device_label, peak_memory, time_interleaved
from pomlab.cli import ConfigParser, HelpFormatter, run
from pomlab.data.text import TOY_VOCABULARY, Vocabulary
from pomlab.figures import video_memory_figure
from pomlab.io import atomic_to_csv
from pomlab.results import load_table
from pomlab.video import MODES, sample


def parse_args(argv=None):
    p = ConfigParser(description=__doc__, formatter_class=HelpFormatter)
    a = p.add_argument
    a("--out", default="results/video_memory")
    a("--model", default="VideoDiPoM-S/2", help="64 tokens per 16x16 frame at patch 2")
    a("--scale", default="micro", choices=["micro", "paper"])
    a("--frames", default="4,8,16,32,64")
    a("--steps", type=int, default=4, help="Euler steps (the sequential state grows with them)")
    a("--repeats", type=int, default=3)
    a("--threads", type=int, default=1)
    a("--device", default="cpu")
    a("--plot-only", action="store_true", help="redraw the figure from OUT/video_memory.csv")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out)
    if args.plot_only:
        video_memory_figure(load_table(out, "video_memory"), out / "video_memory")
        return
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = models.create(args.model, scale=args.scale).to(device).eval()
    with torch.no_grad():                        # random weights: a fresh model is all zeros
        for p in model.parameters():
            p.normal_(0.0, 0.05)
    # a four-word caption: the toy one, or placeholder words of the model's vocabulary size
    if model.vocab_size == len(TOY_VOCABULARY):
        vocab, caption = TOY_VOCABULARY, ["a 3 moving left"]
    else:
        vocab, caption = Vocabulary([f"w{i}" for i in range(1, model.vocab_size)]), ["w1 w2 w3 w4"]

    def run(mode, frames):
        return lambda: sample(model, caption, frames, mode=mode, steps=args.steps, method="euler",
                              generator=torch.Generator(device=device).manual_seed(0), vocab=vocab)

    rows = []
    for frames in [int(f) for f in args.frames.split(",")]:
        times = time_interleaved({mode: run(mode, frames) for mode in MODES},
                                 repeats=args.repeats, warmup=1, device=device)
        for mode in MODES:
            peak = peak_memory(run(mode, frames), device)
            clip = 2 * frames * model.in_channels * model.input_size ** 2 * 4   # noise + output
            rows.append({"frames": frames, "mode": mode, "peak_mib": peak / 2**20,
                         "noise_and_output_mib": clip / 2**20,
                         "working_mib": (peak - clip) / 2**20,
                         "seconds": times[mode], "seconds_per_frame": times[mode] / frames,
                         "model": model.label, "tokens_per_frame": (model.input_size // model.patch_size) ** 2,
                         "steps": args.steps, "sampler": "euler", "batch": 1,
                         "memory_method": "cuda max_memory_allocated" if device.type == "cuda"
                         else "torch.profiler allocation events (tensor bytes)",
                         "device": device_label(device)})
        last = {r["mode"]: r for r in rows[-2:]}
        print(f"{frames:3d} frames: sequential {last['sequential']['peak_mib']:.2f} MiB "
              f"{last['sequential']['seconds_per_frame'] * 1e3:.1f} ms/frame | parallel "
              f"{last['parallel']['peak_mib']:.2f} MiB {last['parallel']['seconds_per_frame'] * 1e3:.1f} "
              f"ms/frame | memory ratio parallel/sequential "
              f"{last['parallel']['peak_mib'] / last['sequential']['peak_mib']:.1f}x", flush=True)
    table = pd.DataFrame(rows)
    atomic_to_csv(table, out / "video_memory.csv")

    video_memory_figure(table, out / "video_memory")
    print(f"wrote {out / 'video_memory.csv'} and {out / 'video_memory.png'}")


if __name__ == "__main__":
    run(main)
