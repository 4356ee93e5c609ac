"""Speed and memory of DiPoM vs DiT across image resolutions (the paper's Figure 1).

    python experiments/speed.py                       # CPU: S/2, depth 1, 128..2048 px
    python experiments/speed.py --device cuda         # GPU: XL/2 (full depth), bf16 autocast
    python experiments/speed.py --size B --depth 2 --resolutions 256,512,1024 --out DIR

For each image side (pixels; paper-scale models see 1/8-size latents, so a p=2 model has
(side/16)^2 tokens) the DiPoM and DiT models of one size run, timed interleaved
(A B C D A B C D ..., medians after warm-up; on CPU every resolution's variants are in one
interleaved loop, so that load changes on a shared machine do not bend the slopes):
  inference = forward under no_grad (eval mode);
  training  = forward + MSE backward + AdamW step (train mode; --no-optimizer drops the step).
Times are per image (batch time / batch). Peak memory is the peak of bytes allocated above the
starting level during one call: torch.cuda.max_memory_allocated on CUDA; on CPU the allocator totals
carried by the profiler's memory events (pomlab.benchmark.peak_memory). Parameters and optimiser
state allocated before the call are not counted.

Writes DIR/speed.csv (tidy, one row per model x mode x resolution, rewritten atomically after
each resolution; --resume skips resolutions already there), DIR/speed_summary.json (slopes of
log time vs log tokens, the crossover where DiPoM training becomes cheaper than DiT inference)
and DIR/speed.png/.pdf (log-log time and memory vs resolution).

    python experiments/speed.py --memory-budget 1 --depth 4 --resolutions 256,512,...

--memory-budget GIB: instead of timing, the largest resolution each of DiPoM and DiT can train
at (forward + backward + AdamW step, batch --batch) within GIB GiB, without and with per-block
activation checkpointing, DiPoM also with PoM's own recompute, DiT with torch's fused attention
kernel (SDPA) and with math attention (N x N scores kept for backward, the path of timm's
Attention in timm 0.6, which DiT's and the PoM authors' DiT code use). Training memory =
parameters + AdamW state + the peak above them
during a step (gradients and activations; pomlab.benchmark.peak_memory, measured after a first
step has allocated the optimizer state). Resolutions are tried in ascending order until one
does not fit. Writes DIR/memory_budget.csv (every measured point), DIR/memory_budget.json (the
largest fitting resolution per variant) and DIR/memory_budget.png/.pdf.
"""
import argparse
import contextlib
import gc
import json
import math
from pathlib import Path

import _bootstrap  # noqa: F401
import pandas as pd
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from tqdm import tqdm

import pomlab.models as M
from pomlab.benchmark import device_label, peak_memory, time_interleaved
from pomlab.cli import ConfigParser, HelpFormatter, run
from pomlab.figures import memory_budget_figure, speed_figure
from pomlab.io import atomic_to_csv, atomic_write_json, read_csv_exact
from pomlab.nn import pom_fast
from pomlab.speed import summarise_speed

FAMILIES = ("DiPoM", "DiT")
MODES = ("inference", "training")

# (family, per-block activation checkpointing, PoM's own recompute (pom_fast saves only its
# inputs), attention kernel: "sdpa" = torch's fused scaled_dot_product_attention (on CPU a
# flash kernel, memory linear in tokens), "math" = the N x N scores materialised and kept for
# backward, as timm's Attention computes them in timm 0.6, the timm of DiT's release (DiT and
# the authors' DiT baseline both use timm's Attention); wherever no fused kernel is used)
MEMORY_VARIANTS = [("DiPoM", False, False, None), ("DiPoM", False, True, None),
                   ("DiPoM", True, False, None), ("DiPoM", True, True, None),
                   ("DiT", False, False, "sdpa"), ("DiT", True, False, "sdpa"),
                   ("DiT", False, False, "math"), ("DiT", True, False, "math")]


def memory_variant_name(family: str, ckpt: bool, recompute: bool, attention: str | None) -> str:
    return (family + (" math attention" if attention == "math" else "")
            + (" + checkpointing" if ckpt else "") + (" + PoM recompute" if recompute else ""))


def parse_args(argv=None):
    p = ConfigParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--size", default=None, help="S, B, L or XL (default XL on CUDA, S on CPU)")
    p.add_argument("--patch", type=int, default=2, choices=M.PATCHES)
    p.add_argument("--resolutions", default=None,
                   help="image sides in pixels (default CPU 128..2048, CUDA 256..2048)")
    p.add_argument("--depth", type=int, default=None,
                   help="override the number of blocks (default: 1 on CPU, the model's on CUDA)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16"],
                   help="bfloat16 = autocast (default on CUDA); float32 default on CPU")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per variant "
                   "(default 3 on CPU, 10 on CUDA)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--no-optimizer", action="store_true", help="training = forward + backward only")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory calls")
    p.add_argument("--max-dit-train-tokens", type=int, default=None,
                   help="skip DiT training above this many tokens (default: 4096 on CPU, none "
                        "on CUDA); DiT inference always runs")
    p.add_argument("--interleave-resolutions", action=argparse.BooleanOptionalAction,
                   default=None, help="time every resolution in one interleaved loop (default "
                   "on CPU; off on CUDA, where all models at once may not fit)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--reference-pom", action="store_true",
                   help="run DiPoM through the reference pom.py instead of the fast path")
    p.add_argument("--out", default=None, help="output folder (default results/speed_<device>)")
    p.add_argument("--resume", action="store_true", help="keep rows already in DIR/speed.csv")
    p.add_argument("--memory-budget", type=float, default=None, metavar="GIB",
                   help="find the largest trainable resolution within GIB GiB (see above)")
    p.add_argument("--memory-variants", default=None, help="with --memory-budget: comma list "
                   "of variants to measure (default all: " + ", ".join(
                       memory_variant_name(*v) for v in MEMORY_VARIANTS) + ")")
    args = p.parse_args(argv)
    if args.memory_budget is not None and not args.memory_budget > 0:
        p.error(f"--memory-budget must be a positive number of GiB, got {args.memory_budget}")
    known = {memory_variant_name(*v): v for v in MEMORY_VARIANTS}
    args.memory_variants = [v.strip() for v in args.memory_variants.split(",")] \
        if args.memory_variants else list(known)
    unknown = [v for v in args.memory_variants if v not in known]
    if unknown:
        p.error(f"--memory-variants: unknown {unknown}; known: {', '.join(known)}")
    args.memory_variants = [known[v] for v in args.memory_variants]
    cuda = args.device.startswith("cuda")
    args.size = args.size or ("XL" if cuda else "S")
    if args.size not in M.SIZES:
        p.error(f"--size must be one of {', '.join(M.SIZES)}, got {args.size!r}")
    args.resolutions = [int(v) for v in (args.resolutions or (
        "256,512,1024,2048" if cuda else "128,256,512,1024,2048")).split(",")]
    args.depth = args.depth if args.depth is not None else (None if cuda else 1)
    args.dtype = args.dtype or ("bfloat16" if cuda else "float32")
    args.repeats = args.repeats or (10 if cuda else 3)
    if args.interleave_resolutions is None:
        args.interleave_resolutions = not cuda
    if args.max_dit_train_tokens is None and not cuda:
        args.max_dit_train_tokens = 4096
    args.out = Path(args.out or f"results/speed_{'cuda' if cuda else 'cpu'}")
    for name in ("batch", "repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    return args


def build(family: str, args, side: int, device) -> torch.nn.Module:
    overrides = {"input_size": side}
    if args.depth is not None:
        overrides["depth"] = args.depth
    model = M.create(f"{family}-{args.size}/{args.patch}", scale="paper", **overrides).to(device)
    return model


def step_functions(model, args, device):
    """(inference, training) callables for one model on a fixed random batch."""
    g = torch.Generator(device="cpu").manual_seed(0)
    side = model.input_size
    x = torch.randn(args.batch, model.in_channels, side, side, generator=g).to(device)
    t = torch.rand(args.batch, generator=g).to(device)
    y = torch.randint(0, model.num_classes, (args.batch,), generator=g).to(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bfloat16")
    opt = None if args.no_optimizer else torch.optim.AdamW(model.parameters(), lr=1e-4)

    def inference():
        model.eval()
        with torch.no_grad(), autocast:
            model(x, t, y)

    def training():
        model.train()
        try:
            with autocast:
                loss = model(x, t, y).float().square().mean()
            loss.backward()
            if opt is not None:
                opt.step()
        finally:                 # an out-of-memory step must not leave gradients behind
            model.zero_grad(set_to_none=True)

    return inference, training


def prepare(args, side_px: int, device) -> dict:
    """Both models at one resolution and their inference/training calls (each run once: a
    variant that does not fit in memory is dropped and marked, not fatal)."""
    side = side_px // 8                       # paper scale: VAE latents at 1/8
    tokens = (side // args.patch) ** 2
    models = {f: build(f, args, side, device) for f in FAMILIES}
    fns, status = {}, {}
    for family, model in models.items():
        for mode, fn in zip(MODES, step_functions(model, args, device)):
            key = f"{family}/{mode}"
            if (family, mode) == ("DiT", "training") and args.max_dit_train_tokens \
                    and tokens > args.max_dit_train_tokens:
                status[key] = f"skipped above {args.max_dit_train_tokens} tokens"
                continue
            try:
                fn()
                fns[key], status[key] = fn, "ok"
            except torch.cuda.OutOfMemoryError:
                status[key] = "out of memory"
            if status[key] != "ok":      # outside the except: its traceback holds the tensors
                torch.cuda.empty_cache()
    return dict(side_px=side_px, side=side, tokens=tokens, models=models, fns=fns,
                status=status)


def finish(args, prep: dict, times: dict, device) -> list[dict]:
    """Peak memory of each variant and the CSV rows of one resolution; drops its models."""
    rows = []
    for key, status in prep["status"].items():
        family, mode = key.split("/")
        peak = None
        if not args.no_memory and key in prep["fns"]:
            try:
                peak = peak_memory(prep["fns"][key], device)
            except torch.cuda.OutOfMemoryError:
                pass                     # peak stays None; the cache is emptied below
            if peak is None:
                torch.cuda.empty_cache()
        model = prep["models"][family]
        rows.append(dict(
            family=family, mixer=model.mixer, model=f"{family}-{args.size}/{args.patch}",
            mode=mode, resolution=prep["side_px"], latent_side=prep["side"],
            tokens=prep["tokens"], seconds_per_image=times.get(key, math.nan) / args.batch,
            peak_bytes=peak, status=status,
            gflops_forward=M.gflops(model, image_size=prep["side_px"]),
            params_m=sum(p.numel() for p in model.parameters()) / 1e6, depth=model.depth,
            batch=args.batch, dtype=args.dtype, optimizer=not args.no_optimizer,
            pom_path="reference" if pom_fast.get_implementation() == "reference" else "fast",
            interleaved_resolutions=args.interleave_resolutions,
            repeats=args.repeats, scale="paper", device=device_label(device)))
    prep.clear()
    return rows


def training_memory(model, args, device) -> int:
    """Bytes one training step needs: parameters + AdamW state + the peak above them."""
    _, training = step_functions(model, args, device)
    training()                                        # allocates the optimizer state
    kept = sum(p.numel() * p.element_size() for p in model.parameters())
    return kept * (1 if args.no_optimizer else 3) + peak_memory(training, device)


def memory_budget(args, device) -> tuple[pd.DataFrame, dict]:
    """The largest resolution of args.resolutions each variant trains at within the budget."""
    budget = args.memory_budget * 2**30
    rows, largest = [], {}
    for family, ckpt, recompute, attention in tqdm(args.memory_variants, desc="memory budget"):
        name = memory_variant_name(family, ckpt, recompute, attention)
        largest[name] = None
        def kernel():
            return sdpa_kernel(SDPBackend.MATH) if attention == "math" else contextlib.nullcontext()
        for side_px in sorted(args.resolutions):
            model = build(family, args, side_px // 8, device)
            model.checkpointing = ckpt
            try:
                with pom_fast.options(recompute=True if recompute else None), kernel():
                    used = training_memory(model, args, device)
            except torch.cuda.OutOfMemoryError:
                used = math.inf
            del model
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
            fits = used <= budget
            rows.append(dict(family=family, checkpointing=ckpt, pom_recompute=recompute,
                             attention=attention or "none", variant=name,
                             model=f"{family}-{args.size}/{args.patch}", resolution=side_px,
                             tokens=(side_px // 8 // args.patch) ** 2, training_bytes=used,
                             fits=fits, budget_gib=args.memory_budget, batch=args.batch,
                             depth=args.depth or M.default_config(
                                 f"DiT-{args.size}/{args.patch}")["depth"],
                             dtype=args.dtype, optimizer=not args.no_optimizer,
                             device=device_label(device)))
            atomic_to_csv(pd.DataFrame(rows), args.out / "memory_budget.csv")
            if not fits:
                break
            largest[name] = side_px
    df = pd.DataFrame(rows)
    summary = {"budget_gib": args.memory_budget, "largest_resolution_px": largest,
               "resolutions_tried": sorted(args.resolutions), "model_size": args.size,
               "patch": args.patch, "depth": int(df.depth.iloc[0]), "batch": args.batch,
               "dtype": args.dtype, "device": device_label(device), "scale": "paper"}
    atomic_write_json(args.out / "memory_budget.json", summary)
    memory_budget_figure(df, args.out / "memory_budget", summary)
    table = df.pivot_table(index="resolution", columns="variant", values="training_bytes") / 2**20
    print(f"# training memory (MiB), {summary['device']}, {args.dtype}, batch {args.batch}, "
          f"{args.size}/{args.patch} depth {summary['depth']}; budget {args.memory_budget} GiB")
    print(table.to_string(float_format=lambda v: f"{v:.0f}"))
    print(json.dumps({"largest_resolution_px": largest}, indent=1))
    return df, summary


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.reference_pom:
        pom_fast.set_implementation("reference")
    device = torch.device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.memory_budget is not None:
        for side_px in args.resolutions:
            if side_px % (8 * args.patch):
                raise ValueError(f"--resolutions: {side_px} px is not a multiple of 8 x patch "
                                 f"({8 * args.patch})")
        return memory_budget(args, device)
    csv = args.out / "speed.csv"
    depth = args.depth or M.default_config(f"DiT-{args.size}/{args.patch}")["depth"]
    config = dict(size=f"{args.size}/{args.patch}", depth=depth, batch=args.batch,
                  dtype=args.dtype, optimizer=not args.no_optimizer)

    device_name = device_label(device)

    def same_config(row) -> bool:
        # "DiT-XL/2" must not pass for "L/2": compare the whole size/patch part of the name
        return (row["model"].split("-", 1)[1] == config["size"] and row["depth"] == depth
                and row.get("pom_path", "fast") == ("reference" if args.reference_pom else "fast")
                and row["batch"] == args.batch and row["dtype"] == args.dtype
                and bool(row["optimizer"]) == config["optimizer"]
                and row["device"] == device_name)

    rows = read_csv_exact(csv).to_dict("records") if args.resume and csv.exists() else []
    have = {r["resolution"] for r in rows if same_config(r)}
    for side_px in args.resolutions:
        if side_px % (8 * args.patch):
            raise ValueError(f"--resolutions: {side_px} px is not a multiple of 8 x patch "
                             f"({8 * args.patch})")
    todo = [r for r in args.resolutions if r not in have]
    # one interleaved timing over every resolution: load changes on a shared machine then hit
    # all points alike instead of bending the slopes
    groups = [todo] if args.interleave_resolutions and todo else [[r] for r in todo]
    for group in tqdm(groups, desc="resolution groups"):
        preps = [prepare(args, side_px, device) for side_px in group]
        fns = {f"{p['side_px']}px {key}": fn for p in preps for key, fn in p["fns"].items()}
        times = time_interleaved(fns, repeats=args.repeats, warmup=args.warmup, device=device)
        for prep in preps:
            prefix = f"{prep['side_px']}px "
            own = {k[len(prefix):]: v for k, v in times.items() if k.startswith(prefix)}
            rows += finish(args, prep, own, device)
            atomic_to_csv(pd.DataFrame(rows), csv)
        del preps, fns, times                  # free this group's models before the next
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    df = pd.DataFrame([r for r in rows if same_config(r) and r["resolution"] in args.resolutions])
    summary = summarise_speed(df)
    atomic_write_json(args.out / "speed_summary.json", summary)
    speed_figure(df, args.out / "speed", summary)
    table = df.pivot_table(index=["resolution", "tokens"], columns=["family", "mode"],
                           values="seconds_per_image")
    print(f"# seconds per image, {summary['device']}, {args.dtype}, batch {args.batch}, "
          f"{args.size}/{args.patch} depth {summary['depth']}")
    print(table.to_string(float_format=lambda v: f"{v:.4g}"))
    print(json.dumps({k: v for k, v in summary.items() if k != "device"}, indent=1))
    return df, summary


if __name__ == "__main__":
    run(main)
