"""PoM time: reference (pom.py) vs fast path (pom_fast.py) vs its three matrix products alone
(the floor) vs MHA, forward and forward+backward.

    python experiments/bench_pom.py [--dim 384] [--lengths 256,1024,4096,16384] [--device cpu]
                                    [--modes forward,train] [--compile] [--out results.csv]
    python experiments/bench_pom.py --backward --lengths 4096 --threads 1   # both, one table

The reference and the fast path are the same module, timed with the pom_fast switch off and on.
"train" = forward + backward (gradients of the input and every parameter); the matmul floor
then counts its backward too (9 products). Variants run interleaved (A B A B ...) in one
process; medians and ratios are printed. --compile adds the fast path with its elementwise
kernels torch.compile'd (reports the first call's time, compilation included).
"""
import argparse
import time

import _bootstrap  # noqa: F401
import pandas as pd
import torch
import torch.nn.functional as F

import pomlab
from pomlab.benchmark import device_label, synchronize, time_interleaved
from pomlab.cli import ConfigParser, HelpFormatter, run
from pomlab.io import atomic_to_csv
from pomlab.nn import pom_fast


def three_products(pom: pomlab.PoM, x: torch.Tensor) -> torch.Tensor:
    """The matrix work PoM cannot avoid: poly(x), gate(x) and out(.) on a state-sized input."""
    a = F.linear(x, pom.poly.weight, pom.poly.bias)
    g = F.linear(x, pom.gate.weight, pom.gate.bias)
    return F.linear(g, pom.out.weight, pom.out.bias) + a[..., :1]


def runner(fn, x, train: bool):
    """One timed call: fn(x) without autograd, or fn(x) then backward of its sum."""
    if not train:
        def call():
            with torch.no_grad():
                fn(x)
        return call

    def call():
        x.grad = None
        fn(x).sum().backward()
    return call


def main(argv=None):
    p = ConfigParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--heads", type=int, default=6)
    p.add_argument("--degree", type=int, default=2)
    p.add_argument("--expand", type=int, default=2)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--lengths", default="256,1024,4096,16384")
    p.add_argument("--modes", default="forward,train", help="comma list of forward, train")
    p.add_argument("--backward", action="store_true",
                   help="forward and forward+backward in one run (= --modes forward,train), "
                        "each against its matrix-product floor and beside MHA")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--no-mha", action="store_true", help="skip MHA (O(N^2), slow at long N)")
    p.add_argument("--compile", action="store_true", help="also time the compiled fast path")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", default=None, help="optional CSV path")
    args = p.parse_args(argv)
    if args.backward:
        args.modes = "forward,train"
    if args.threads:
        torch.set_num_threads(args.threads)

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    pom = pomlab.PoM(args.dim, args.degree, args.expand).to(device, dtype)
    mha = pomlab.MHA(args.dim, args.heads).to(device, dtype)

    def reference(x):
        with pom_fast.implementation("reference"):
            return pom(x)

    def fast(x):
        with pom_fast.implementation("auto"):
            return pom(x)

    def compiled(x):
        with pom_fast.implementation("auto"), pom_fast.options(compile=True):
            return pom(x)

    variants = {"reference": reference, "fast": fast, "matmuls": lambda x: three_products(pom, x)}
    if args.compile:
        variants["compiled"] = compiled
    if not args.no_mha:
        variants["mha"] = mha

    rows = []
    print(f"# PoM (D={args.dim}, k={args.degree}, e={args.expand}) reference vs fast vs its three "
          f"matmuls vs MHA ({args.heads} heads), batch {args.batch}, {args.dtype}, "
          f"{device_label(device)}")
    for mode in args.modes.split(","):
        if mode not in ("forward", "train"):
            raise ValueError(f"--modes: expected forward and/or train, got {mode!r}")
        for n in [int(v) for v in args.lengths.split(",")]:
            x = torch.randn(args.batch, n, args.dim, device=device, dtype=dtype,
                            requires_grad=mode == "train")
            fns = {name: runner(fn, x, mode == "train") for name, fn in variants.items()}
            row = {"mode": mode, "tokens": n}
            if args.compile:
                synchronize(device)
                start = time.perf_counter()
                fns["compiled"]()
                synchronize(device)
                row["compiled_first_call_s"] = time.perf_counter() - start
            t = time_interleaved(fns, repeats=args.repeats, device=device)
            row.update({f"{k}_ms": v * 1e3 for k, v in t.items()})
            for name in variants:
                if name not in ("matmuls", "mha"):
                    row[f"{name}/matmuls"] = t[name] / t["matmuls"]
            row["reference/fast"] = t["reference"] / t["fast"]
            if "mha" in t:
                row["mha/fast"] = t["mha"] / t["fast"]
            row.update(device=device_label(device), dim=args.dim, dtype=args.dtype,
                       batch=args.batch, repeats=args.repeats)
            rows.append(row)
            pom.zero_grad(set_to_none=True)
            mha.zero_grad(set_to_none=True)
    df = pd.DataFrame(rows)
    cols = [c for c in df.columns if c not in ("device", "dim", "dtype", "batch", "repeats")]
    print(df[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.out:
        atomic_to_csv(df, args.out)
    return df


if __name__ == "__main__":
    run(main)
