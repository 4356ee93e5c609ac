"""One run that exercises every CUDA path of pomlab once and writes one JSON report.

    python experiments/gpu_check.py --dry-run            # any machine: the plan, arguments checked
    python experiments/gpu_check.py                      # one GPU, under 8 minutes on an H100/H200
    python experiments/gpu_check.py --only triton,nccl --out results/gpu_check

Checks (each records status ok / failed / skipped, seconds, its numbers and any error):

  triton       the Triton kernels against the reference PoM (float32 and bf16, both
               polynomials, no mask / padding / causal / block-causal, values and gradients)
               and one PoM layer's forward+backward with Triton vs torch kernels (interleaved
               medians, n = 4096, D = 1152)
  train        bf16-autocast training of DiPoM-S/2 and DiT-S/2 at paper scale (32x32x4
               latents, 1000 classes) through pomlab.train, eager and torch.compile, plus one
               run with --checkpointing and --accumulate 2
  memory       peak training memory of DiPoM-XL/2 and DiT-XL/2 at 1024 px with and without
               activation checkpointing
  speed        experiments/speed.py: DiT-XL/2 vs DiPoM-XL/2, 256..1024 px (bf16, full depth)
  nccl         an nccl process group (world size 1): all_reduce, all_gather_object, barrier
  inception    the Inception FID/IS backend on the GPU with randomly initialised weights
  sweep        the scaling sweep with its CUDA defaults (paper scale, latents, Inception,
               bf16) for a few steps, on a synthetic latent set and a random-weight VAE

Random weights and synthetic data everywhere: the check proves that the code runs and agrees
with the reference on a GPU, not any FID. The report (DIR/gpu_check.json) is rewritten
atomically after every check, so an interrupted run keeps what it measured. Record its numbers
in docs/speed.md with the device named.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import math
import platform
import socket
import sys
import tempfile
import time
import traceback
from pathlib import Path

import _bootstrap  # noqa: F401
import torch

from pomlab.cli import ConfigParser, HelpFormatter, run
from pomlab.io import atomic_write_json

# name -> (estimated seconds on one H100/H200, what it needs besides CUDA)
CHECKS = {
    "triton": (60, ["triton"]),       # includes compiling the torch kernels it is timed against
    "train": (110, []),
    "memory": (40, []),
    "speed": (150, []),
    "nccl": (10, []),
    "inception": (20, ["torch_fidelity"]),
    "sweep": (90, ["torch_fidelity", "diffusers"]),
}
BUDGET_S = 480          # 8 minutes


def parse_args(argv=None) -> argparse.Namespace:
    p = ConfigParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--dry-run", action="store_true",
                   help="list what would run and check the arguments; needs no GPU")
    p.add_argument("--only", default=",".join(CHECKS),
                   help=f"comma-separated checks from {','.join(CHECKS)} (default: all)")
    p.add_argument("--device", default="cuda", help="CUDA device (default cuda)")
    p.add_argument("--out", default="results/gpu_check", help="folder of gpu_check.json")
    p.add_argument("--budget", type=float, default=BUDGET_S,
                   help="seconds; a check whose estimate no longer fits is skipped (default 480)")
    p.add_argument("--resolutions", default="256,512,1024",
                   help="image sides for the speed check (multiples of 16)")
    p.add_argument("--train-steps", type=int, default=20, help="steps per training run")
    args = p.parse_args(argv)
    checks = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = [c for c in checks if c not in CHECKS]
    if unknown or not checks:
        raise ValueError(f"--only: unknown check(s) {unknown}; choose from {','.join(CHECKS)}")
    args.checks = checks
    try:
        args.resolutions = [int(v) for v in args.resolutions.split(",")]
    except ValueError:
        raise ValueError(f"--resolutions must be comma-separated integers, got {args.resolutions!r}")
    bad = [r for r in args.resolutions if r < 16 or r % 16]
    if bad:
        raise ValueError(f"--resolutions must be multiples of 16 (8x VAE, patch 2), got {bad}")
    if not args.budget > 0:
        raise ValueError(f"--budget must be > 0 seconds, got {args.budget}")
    if args.train_steps < 2:
        raise ValueError(f"--train-steps must be >= 2, got {args.train_steps}")
    if not args.device.startswith("cuda"):
        raise ValueError(f"--device must be a CUDA device (cuda, cuda:1 ...), got {args.device!r}")
    args.out = Path(args.out)
    return args


def missing_modules(check: str) -> list[str]:
    return [m for m in CHECKS[check][1] if importlib.util.find_spec(m) is None]


def environment() -> dict:
    env = {"torch": torch.__version__, "python": platform.python_version(),
           "cuda_available": torch.cuda.is_available(), "host": platform.node(),
           "time_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    if torch.cuda.is_available():
        env["device_name"] = torch.cuda.get_device_name()
        env["cuda"] = torch.version.cuda
    if importlib.util.find_spec("triton") is not None:
        import triton
        env["triton"] = triton.__version__
    return env


# --- the checks ------------------------------------------------------------------------------
# Each takes (args, device, scratch folder) and returns a dict of numbers; raising marks it failed.

def check_triton(args, device, scratch) -> dict:
    import pomlab
    from pomlab.benchmark import time_interleaved
    from pomlab.masks import BlockCausal
    from pomlab.nn import pom_fast

    errors = {}
    for dtype, tol in ((torch.float32, 1e-4), (torch.bfloat16, 5e-2)):
        for polynomial in ("products", "powers"):
            for kind in ("none", "padding", "causal", "block"):
                torch.manual_seed(0)
                pom = pomlab.PoM(64, degree=3 if polynomial == "products" else 2, expand=2,
                                 polynomial=polynomial).to(device)
                ref = pomlab.PoM(64, degree=pom.degree, expand=2, polynomial=polynomial)
                ref.load_state_dict(pom.state_dict())
                ref = ref.to(device, torch.float64)
                pom = pom.to(dtype)
                x = torch.randn(2, 48, 64, device=device, dtype=dtype, requires_grad=True)
                c, mask = None, None
                if kind == "padding":
                    c = torch.randn(2, 40, 64, device=device, dtype=dtype, requires_grad=True)
                    mask = torch.rand(2, 40, device=device) < 0.6
                elif kind == "causal":
                    mask = "causal"
                elif kind == "block":
                    mask = BlockCausal(4, 12)
                cot = torch.randn(2, 48, 64, device=device, dtype=torch.float64)

                def grads(module, inputs, kernels):
                    for t in inputs:
                        t.grad = None
                    module.zero_grad(set_to_none=True)
                    with pom_fast.implementation(kernels or "reference"):
                        y = module(inputs[0], context=inputs[1] if len(inputs) > 1 else None,
                                   mask=mask)
                    (y.double() * cot).sum().backward()
                    return [y.detach()] + [t.grad for t in inputs] + \
                        [p.grad for p in module.parameters()]

                inputs = [x] if c is None else [x, c]
                got = grads(pom, inputs, "triton")
                ref_inputs = [t.detach().double().requires_grad_() for t in inputs]
                want = grads(ref, ref_inputs, None)
                err = max(float((a.double() - b).abs().max() / b.abs().max().clamp_min(1.0))
                          for a, b in zip(got, want))
                errors[f"{str(dtype).split('.')[-1]}/{polynomial}/{kind}"] = err
                if not err <= tol:
                    raise AssertionError(f"triton {dtype} {polynomial} {kind}: relative error "
                                         f"{err:.2e} > {tol}")
    # one DiPoM-XL-sized layer, fwd+bwd, Triton vs torch kernels, bf16 autocast
    torch.manual_seed(0)
    pom = pomlab.PoM(1152).to(device)
    x = torch.randn(4, 4096, 1152, device=device, requires_grad=True)
    variants = {}
    for kernels in ("triton", "torch"):
        for kind, mask in (("mean", None), ("causal", "causal")):
            def run(kernels=kernels, mask=mask):
                with pom_fast.implementation(kernels), torch.autocast("cuda", torch.bfloat16):
                    y = pom(x, mask=mask)
                y.float().square().mean().backward()
            variants[f"{kind}/{kernels}"] = run
    times = time_interleaved(variants, repeats=10, warmup=3, device=device)
    return {"max_relative_error": errors, "layer_fwd_bwd_ms": {k: 1e3 * v for k, v in
                                                               times.items()},
            "layer": "PoM(1152, k=2, e=2), batch 4, n 4096, bf16 autocast",
            "triton_over_torch": {kind: times[f"{kind}/triton"] / times[f"{kind}/torch"]
                                  for kind in ("mean", "causal")}}


def synthetic_latents(folder: Path, count: int = 256) -> Path:
    """A paper-shaped latent set (4 x 32 x 32, 1000 classes), made once per run."""
    from pomlab.data.latents import LatentShardWriter

    root = folder / "latents"
    if (root / "meta.json").exists():
        return root
    writer = LatentShardWriter(root, num_classes=1000, scale_factor=0.18215,
                               vae="synthetic (gpu_check)", image_size=256, shard_size=128)
    g = torch.Generator().manual_seed(0)
    writer.add(torch.randn(count, 4, 32, 32, generator=g), torch.randint(0, 1000, (count,),
                                                                          generator=g))
    writer.close()
    return root


def random_vae(folder: Path) -> Path:
    """An SD-shaped AutoencoderKL (8x, 4 latent channels) with random weights, saved locally."""
    if (folder / "config.json").exists():
        return folder
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4,
                        block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                        down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, sample_size=256)
    vae.save_pretrained(folder)
    return folder


def check_train(args, device, scratch) -> dict:
    from pomlab.train import TrainConfig, Trainer

    data = synthetic_latents(scratch)
    out = {}
    runs = [(m, compile_, {}) for m in ("DiPoM-S/2", "DiT-S/2") for compile_ in (False, True)]
    runs.append(("DiPoM-S/2", False, {"checkpointing": True, "accumulate": 2}))
    for model, compile_, savers in runs:
        torch.cuda.reset_peak_memory_stats(device)
        config = TrainConfig(model=model, scale="paper", dataset="latents", data_path=str(data),
                             steps=args.train_steps, batch_size=32, log_every=args.train_steps // 2,
                             precision="auto", compile=compile_, device=str(device),
                             sample_at_end=False, **savers)
        start = time.perf_counter()
        trainer = Trainer(config, progress=False)
        result = trainer.run()
        if not math.isfinite(result.final_loss):
            raise AssertionError(f"{model} compile={compile_}: loss {result.final_loss}")
        label = f"{model} {'compiled' if compile_ else 'eager'}" + \
            "".join(f" {k}={v}" for k, v in savers.items())
        out[label] = {"final_loss": result.final_loss,
                      "images_per_s_last_interval": result.history[-1]["images_per_s"],
                      "wall_s": time.perf_counter() - start,
                      "peak_gib": torch.cuda.max_memory_allocated(device) / 2**30,
                      "autocast": str(trainer.autocast_dtype)}
        del trainer
        torch.cuda.empty_cache()
    return {"runs": out, "batch": 32, "steps": args.train_steps,
            "data": "synthetic 4x32x32 latents, 1000 classes"}


def check_memory(args, device, scratch) -> dict:
    import pomlab.models as M
    from pomlab.benchmark import peak_memory

    out = {}
    for family in ("DiPoM", "DiT"):
        model = M.create(f"{family}-XL/2", scale="paper", input_size=128).to(device)
        x = torch.randn(1, 4, 128, 128, device=device)
        t, y = torch.rand(1, device=device), torch.randint(0, 1000, (1,), device=device)
        for flag in (False, True):
            model.checkpointing = flag

            def step():
                with torch.autocast("cuda", torch.bfloat16):
                    loss = model(x, t, y).float().square().mean()
                loss.backward()
                model.zero_grad(set_to_none=True)
            try:
                step()
                out[f"{family}-XL/2 checkpointing={flag}"] = peak_memory(step, device) / 2**30
            except torch.cuda.OutOfMemoryError:
                out[f"{family}-XL/2 checkpointing={flag}"] = "out of memory"
            torch.cuda.empty_cache()
        del model
        torch.cuda.empty_cache()
    return {"peak_training_gib_1024px_batch1_bf16": out}


def check_speed(args, device, scratch) -> dict:
    import speed

    df, summary = speed.main(["--device", str(device), "--size", "XL",
                              "--resolutions", ",".join(map(str, args.resolutions)),
                              "--repeats", "3", "--out", str(scratch / "speed")])
    table = df.pivot_table(index="resolution", columns=["family", "mode"],
                           values="seconds_per_image")
    return {"seconds_per_image": {f"{f}/{m}": {int(r): float(v) for r, v in table[(f, m)].items()}
                                  for f, m in table.columns},
            "status": {f"{r.resolution}px {r.family}/{r.mode}": r.status
                       for r in df.itertuples()},
            "summary": summary}


def check_nccl(args, device, scratch) -> dict:
    import torch.distributed as dist

    if dist.is_initialized():
        raise RuntimeError("a process group already exists in this process")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=0,
                            world_size=1, device_id=device)
    try:
        value = torch.arange(4.0, device=device)
        dist.all_reduce(value)
        gathered = [None]
        dist.all_gather_object(gathered, {"rank": 0})
        dist.barrier()
        if value.tolist() != [0.0, 1.0, 2.0, 3.0] or gathered != [{"rank": 0}]:
            raise AssertionError(f"nccl collectives returned {value.tolist()}, {gathered}")
        return {"backend": dist.get_backend(), "world_size": dist.get_world_size()}
    finally:
        dist.destroy_process_group()


def random_inception(scratch: Path) -> Path:
    from pomlab.metrics.backends import write_random_inception_weights

    path = scratch / "inception_random.pth"
    return path if path.exists() else write_random_inception_weights(path)


def check_inception(args, device, scratch) -> dict:
    from pomlab import metrics

    weights = random_inception(scratch)
    backend = metrics.get_backend("inception", weights=weights, device=device)
    g = torch.Generator().manual_seed(0)
    real, fake = torch.rand(64, 3, 64, 64, generator=g), torch.rand(64, 3, 64, 64, generator=g)
    start = time.perf_counter()
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                 # rank-deficient: 64 << 2048 samples
        fid = metrics.fid(real, fake, backend, device=device)
        is_mean = metrics.inception_score(fake, backend, device=device)
    if not (math.isfinite(fid) and math.isfinite(is_mean)):
        raise AssertionError(f"non-finite scores: fid {fid}, is {is_mean}")
    return {"fid_random_weights": fid, "is_random_weights": is_mean, "images": 64,
            "seconds": time.perf_counter() - start, "device": str(backend.device)}


SWEEP_SUMMARY = ("scale", "dataset", "backend", "precision", "steps", "batch_size", "eval_steps")


def sweep_config(device, scratch: Path, data: Path, inception: Path, vae: Path):
    """The sweep check's SweepConfig: paper scale, a few steps, on the given files."""
    from pomlab.scaling import SweepConfig

    return SweepConfig.for_scale(
        "paper", sizes=("S",), steps=4, eval_steps=(2, 4), fid_samples=16, eval_chunk=16,
        sample_steps=2, batch_size=16, data_path=str(data), backend_weights=str(inception),
        reference_samples=16, device=str(device), vae=str(vae), ckpt_every=2,
        out=str(scratch / "sweep"))


def sweep_summary(config) -> dict:
    """SWEEP_SUMMARY's settings of a SweepConfig: its own fields, the training ones (scale,
    dataset, precision, steps, batch_size) from its `train` section."""
    d = config.to_dict()
    flat = {**d.pop("train"), **d}
    return {k: flat[k] for k in SWEEP_SUMMARY}


def check_sweep(args, device, scratch) -> dict:
    from pomlab.scaling import run_sweep

    config = sweep_config(device, scratch, synthetic_latents(scratch), random_inception(scratch),
                          random_vae(scratch / "vae"))
    rows = run_sweep(config, jobs=1, progress=False, log=lambda *_: None).results
    return {"rows": len(rows), "columns": sorted(rows.columns)[:40], "config": sweep_summary(config)}


RUNNERS = {"triton": check_triton, "train": check_train, "memory": check_memory,
           "speed": check_speed, "nccl": check_nccl, "inception": check_inception,
           "sweep": check_sweep}


def plan(args) -> list[dict]:
    return [{"check": c, "estimate_s": CHECKS[c][0], "needs": CHECKS[c][1],
             "missing": missing_modules(c)} for c in args.checks]


def main(argv=None) -> dict:
    args = parse_args(argv)
    report = {"script": "experiments/gpu_check.py", "argv": sys.argv[1:] if argv is None
              else list(argv), "dry_run": args.dry_run, "environment": environment(),
              "plan": plan(args), "budget_s": args.budget, "checks": {}}
    path = args.out / "gpu_check.json"
    if args.dry_run:
        if "sweep" in args.checks:          # its settings, built from placeholder file names
            scratch = Path("SCRATCH")
            report["sweep_config"] = sweep_summary(sweep_config(
                args.device, scratch, scratch / "latents", scratch / "inception.pth",
                scratch / "vae"))
        total = sum(p["estimate_s"] for p in report["plan"])
        for p in report["plan"]:
            extra = f"  (missing here: {', '.join(p['missing'])})" if p["missing"] else ""
            print(f"would run {p['check']:<10} ~{p['estimate_s']:>4} s{extra}")
        print(f"total estimate {total} s of a {args.budget:.0f} s budget; report: {path}")
        atomic_write_json(path, report)
        return report
    if not torch.cuda.is_available():
        raise SystemExit("gpu_check needs a CUDA device (torch.cuda.is_available() is False); "
                         "use --dry-run to check the plan on this machine")
    device = torch.device(args.device)
    torch.cuda.set_device(device)
    report["environment"]["device_name"] = torch.cuda.get_device_name(device)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pomlab_gpu_check_") as tmp:
        scratch = Path(tmp)
        for check in args.checks:
            left = args.budget - (time.perf_counter() - started)
            entry = {"status": "skipped"}
            if missing_modules(check):
                entry["reason"] = f"not installed: {', '.join(missing_modules(check))}"
            elif CHECKS[check][0] > left:
                entry["reason"] = f"estimate {CHECKS[check][0]} s exceeds the {left:.0f} s left"
            else:
                start = time.perf_counter()
                try:
                    entry = {"status": "ok", **RUNNERS[check](args, device, scratch)}
                except Exception as error:              # report it, go on with the next
                    entry = {"status": "failed", "error": f"{type(error).__name__}: {error}",
                             "traceback": traceback.format_exc()[-4000:]}
                entry["seconds"] = time.perf_counter() - start
                with contextlib.suppress(Exception):
                    torch.cuda.synchronize(device)
                    torch.cuda.empty_cache()
            report["checks"][check] = entry
            report["elapsed_s"] = time.perf_counter() - started
            atomic_write_json(path, report)
            print(f"{check:<10} {entry['status']:<8} {entry.get('seconds', 0):6.1f} s "
                  f"{entry.get('error', entry.get('reason', ''))}", flush=True)
    failed = [c for c, e in report["checks"].items() if e["status"] == "failed"]
    print(f"report: {path}; {len(failed)} failed {failed}; {report['elapsed_s']:.0f} s")
    return report


if __name__ == "__main__":
    run(main)
