"""Training throughput of DiPoM vs DiT side by side: images/s and achieved FLOP/s.

    python experiments/bench_train.py                          # CPU: micro S/2 on 16x16 digits-sized input
    python experiments/bench_train.py --scale paper --sizes S,B,XL --image-size 256 --batch 64   # GPU

One training step = flow-matching loss, backward, grad clipping, AdamW step (pomlab.train's
training_step, bf16 autocast on CUDA). The two models' steps are timed interleaved
(A B A B ...), medians are reported; FLOP/s uses pomlab.models.gflops (DiT convention,
1 multiply-add = 1 FLOP) x 3 for forward + backward.
"""
import argparse

import _bootstrap  # noqa: F401
import pandas as pd
import torch

import pomlab.models
from pomlab.benchmark import device_label, time_interleaved
from pomlab.cli import ConfigParser, HelpFormatter, run
from pomlab.diffusion import make_process
from pomlab.train import training_step


def make_step(name, args, device, autocast_dtype):
    model = pomlab.models.create(name, scale=args.scale, input_size=args.side).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda" or None)
    forward = torch.compile(model) if args.compile else model
    process = make_process(args.loss)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, model.in_channels, args.side, args.side, generator=g).to(device)
    y = torch.randint(0, model.num_classes, (args.batch,), generator=g).to(device)
    params = list(model.parameters())

    def step():
        training_step(forward, process, optimizer, x, y, params=params, grad_clip=1.0,
                      autocast_dtype=autocast_dtype)
    return model, step


def main(argv=None):
    p = ConfigParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--scale", default=None, choices=["micro", "paper"],
                   help="default: paper on CUDA, micro on CPU")
    p.add_argument("--sizes", default="S", help="comma list of S,B,L,XL")
    p.add_argument("--patch", type=int, default=2)
    p.add_argument("--image-size", type=int, default=None,
                   help="pixels (paper models see latents at 1/8); default 256 paper, 16 micro")
    p.add_argument("--batch", type=int, default=None, help="default 32 (CUDA) / 16 (CPU)")
    p.add_argument("--loss", default="flow", choices=["flow", "diffusion"])
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--compile", action="store_true")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--out", default=None, help="optional CSV path")
    args = p.parse_args(argv)

    device = torch.device(args.device)
    args.scale = args.scale or ("paper" if device.type == "cuda" else "micro")
    args.image_size = args.image_size or (256 if args.scale == "paper" else 16)
    args.batch = args.batch or (32 if device.type == "cuda" else 16)
    args.side = args.image_size // pomlab.models.registry.SCALE_DEFAULTS[args.scale]["latent_scale"]
    bf16 = args.precision == "bf16" or (args.precision == "auto" and device.type == "cuda")
    autocast_dtype = torch.bfloat16 if bf16 else None
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    print(f"# training step (loss {args.loss}, AdamW, clip 1.0), {args.scale} scale, "
          f"{args.image_size}px images ({args.side}x{args.side} model input), batch {args.batch}, "
          f"{'bf16 autocast' if bf16 else 'fp32'}{', compiled' if args.compile else ''}, "
          f"{device_label(device)}; medians of {args.repeats} interleaved repeats")
    rows = []
    for size in args.sizes.split(","):
        names = [f"DiPoM-{size}/{args.patch}", f"DiT-{size}/{args.patch}"]
        steps, models = {}, {}
        for name in names:
            models[name], steps[name] = make_step(name, args, device, autocast_dtype)
        seconds = time_interleaved(steps, repeats=args.repeats, warmup=args.warmup, device=device)
        for name in names:
            gf = pomlab.models.gflops(models[name], args.image_size)
            rows.append({"model": name, "scale": args.scale, "image_size": args.image_size,
                         "batch": args.batch, "device": device_label(device),
                         "params_M": sum(q.numel() for q in models[name].parameters()) / 1e6,
                         "gflops_fwd": gf, "step_ms": seconds[name] * 1e3,
                         "images_per_s": args.batch / seconds[name],
                         "tflops_per_s": 3 * gf * args.batch / seconds[name] / 1e3})
        del models, steps
        if device.type == "cuda":
            torch.cuda.empty_cache()
        a, b = rows[-2], rows[-1]
        print(f"{size}/{args.patch}: DiPoM / DiT throughput ratio {a['images_per_s'] / b['images_per_s']:.2f}x")
    frame = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(frame.drop(columns=["device"]).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if args.out:
        from pomlab.io import atomic_to_csv
        atomic_to_csv(frame, args.out)
    return frame


if __name__ == "__main__":
    run(main)
