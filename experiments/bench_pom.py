"""PoM forward time against its three matrix products alone (the floor) and against MHA.

    python experiments/bench_pom.py [--dim 384] [--lengths 256,1024,4096,16384] [--device cpu]

Variants run interleaved (A B A B ...) in one process; medians and ratios are printed.
"""
import argparse

import _bootstrap  # noqa: F401
import pandas as pd
import torch
import torch.nn.functional as F

import pomlab
from pomlab.benchmark import device_label, time_interleaved


def three_products(pom: pomlab.PoM, x: torch.Tensor) -> torch.Tensor:
    """The matrix work PoM cannot avoid: poly(x), gate(x) and out(.) on a state-sized input."""
    a = F.linear(x, pom.poly.weight, pom.poly.bias)
    g = F.linear(x, pom.gate.weight, pom.gate.bias)
    return F.linear(g, pom.out.weight, pom.out.bias) + a[..., :1]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--heads", type=int, default=6)
    p.add_argument("--degree", type=int, default=2)
    p.add_argument("--expand", type=int, default=2)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--lengths", default="256,1024,4096,16384")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--out", default=None, help="optional CSV path")
    args = p.parse_args(argv)

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    pom = pomlab.PoM(args.dim, args.degree, args.expand).to(device, dtype)
    mha = pomlab.MHA(args.dim, args.heads).to(device, dtype)
    variants_of = {"pom": pom}
    try:  # the fast path, when the library has one
        from pomlab.nn.pom_fast import FastPoM
        variants_of["pom_fast"] = FastPoM.from_reference(pom)
    except ImportError:
        pass

    rows = []
    print(f"# PoM (D={args.dim}, k={args.degree}, e={args.expand}) vs its three matmuls vs "
          f"MHA ({args.heads} heads), batch {args.batch}, {args.dtype}, {device_label(device)}")
    for n in [int(v) for v in args.lengths.split(",")]:
        x = torch.randn(args.batch, n, args.dim, device=device, dtype=dtype)
        with torch.no_grad():
            fns = {name: (lambda m=m: m(x)) for name, m in variants_of.items()}
            fns["matmuls"] = lambda: three_products(pom, x)
            fns["mha"] = lambda: mha(x)
            t = time_interleaved(fns, repeats=args.repeats, device=device)
        row = {"tokens": n, **{f"{k}_ms": v * 1e3 for k, v in t.items()}}
        for name in variants_of:
            row[f"{name}/matmuls"] = t[name] / t["matmuls"]
            row[f"mha/{name}"] = t["mha"] / t[name]
        row.update(device=device_label(device), dim=args.dim, dtype=args.dtype)
        rows.append(row)
    df = pd.DataFrame(rows)
    cols = [c for c in df.columns if c not in ("device", "dim", "dtype")]
    print(df[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.out:
        df.to_csv(args.out, index=False)
    return df


if __name__ == "__main__":
    main()
