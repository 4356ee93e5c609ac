"""The Triton kernels (pom_triton.py) against the reference pom.py, run on CPU by Triton's
interpreter: values and gradients (input, context, every parameter) for no mask, padding,
causal (self and cross), block-causal, step, chunked recompute, both polynomials.

Run by tests/test_pom_triton.py in a fresh process with TRITON_INTERPRET=1: Triton reads it when
it is imported and when it decorates kernels (its own library functions included), and other
test modules import Triton first in a shared worker. Directly:
``TRITON_INTERPRET=1 python -m pytest -n 0 tests/triton_cases.py``.

Tolerances: float64 relative 1e-9 of each tensor's scale (only the summation order changes;
observed ~1e-16). float32 relative 1e-4 and bf16 relative 5e-2, both against the float64
reference on the same (rounded) weights and inputs, and the kernels' error must also stay
within 2x the reference's own error in that dtype plus a tenth of that tolerance.
"""
import os

import pytest
import torch

if os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("needs TRITON_INTERPRET=1 before triton is imported (tests/test_pom_triton.py "
                "runs this file so)", allow_module_level=True)
pytest.importorskip("triton")

import pomlab  # noqa: E402
from pomlab.masks import BlockCausal, block_causal  # noqa: E402
from pomlab.nn import pom_fast, pom_triton  # noqa: E402

assert pom_triton.INTERPRETED, "triton was imported before TRITON_INTERPRET was set"
F64 = torch.float64
DIM = 6


def make_pom(polynomial, degree, seed, dtype=F64):
    torch.manual_seed(seed)
    pom = pomlab.PoM(DIM, degree=degree, expand=2, polynomial=polynomial)
    if polynomial == "powers":     # make the power series matter
        with torch.no_grad():
            pom.alpha.normal_()
    return pom.to(dtype)


def inputs(kind, seed, dtype=F64):
    """(x, context or None, mask) for one mask form; M = 12 queries."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=g).to(dtype).requires_grad_()

    B, M = 2, 12
    if kind == "none":                       # M >= dim: the state is folded into W_out
        return rand(B, M, DIM), None, None
    if kind == "none_short":                 # M < dim: the gate-mix kernel runs
        return rand(B, 4, DIM), rand(B, 9, DIM), None
    if kind == "padding":
        return rand(B, 4, DIM), rand(B, 9, DIM), torch.rand(B, 9, generator=g) < 0.6
    if kind == "causal":
        return rand(B, M, DIM), None, "causal"
    if kind == "causal_cross":               # 12 queries, 7 context tokens (top-left aligned)
        return rand(B, M, DIM), rand(B, 7, DIM), "causal"
    if kind == "block":
        return rand(B, M, DIM), None, BlockCausal(3, 4)
    if kind == "block_tensor":               # recognised as block-causal: prefix kernels
        return rand(B, M, DIM), None, block_causal(4, 3)[None]
    raise ValueError(kind)


def run(pom, x, c, mask, kernels, cotangent_seed=1):
    """Output and gradients of a fixed random linear functional; kernels None = reference."""
    for t in (x, c):
        if t is not None:
            t.grad = None
    pom.zero_grad(set_to_none=True)
    if kernels is None:
        with pom_fast.implementation("reference"):
            y = pom(x, context=c, mask=mask)
    else:
        with pom_fast.implementation(kernels):
            y = pom(x, context=c, mask=mask)
    cot = torch.randn(y.shape, generator=torch.Generator().manual_seed(cotangent_seed))
    (y * cot.to(y.dtype)).sum().backward()
    tensors = [y.detach(), x.grad] + ([] if c is None else [c.grad])
    return tensors + [p.grad for p in pom.parameters()]


def rel_err(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1.0)).item()


@pytest.fixture
def calls(monkeypatch):
    """Counts the kernel entry points that ran (the test must exercise them, not torch)."""
    seen = {}
    for name in ("state_sums", "state_backward", "gate_mul", "mix_backward"):
        real = getattr(pom_triton, name)

        def spy(*a, _real=real, _name=name, **k):
            seen[_name] = seen.get(_name, 0) + 1
            return _real(*a, **k)
        monkeypatch.setattr(pom_triton, name, spy)
    return seen


MASKS = ["none", "none_short", "padding", "causal", "causal_cross", "block", "block_tensor"]


@pytest.mark.parametrize("polynomial, degree", [("products", 3), ("powers", 2)])
@pytest.mark.parametrize("kind", MASKS)
def test_kernels_match_reference_float64(polynomial, degree, kind, calls):
    pom = make_pom(polynomial, degree, seed=len(kind))
    x, c, mask = inputs(kind, seed=7)
    got = run(pom, x, c, mask, "triton")
    want = run(pom, x, c, mask, None)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9 * b.abs().max().clamp_min(1.0))
    assert calls["state_sums"] and calls["state_backward"]
    if kind != "none":      # the folded one-row state needs no gate kernel
        assert calls["gate_mul"] and calls["mix_backward"]


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-4), (torch.bfloat16, 5e-2)])
@pytest.mark.parametrize("polynomial, degree", [("products", 2), ("powers", 2)])
@pytest.mark.parametrize("kind", ["none_short", "padding", "causal", "block"])
def test_kernels_low_precision(dtype, tol, polynomial, degree, kind):
    """float32/bf16 kernels against the float64 reference on the same rounded numbers."""
    pom = make_pom(polynomial, degree, seed=3, dtype=dtype)
    x, c, mask = inputs(kind, seed=11, dtype=dtype)
    got = run(pom, x, c, mask, "triton")
    ref_low = run(pom, x, c, mask, None)
    pom64 = make_pom(polynomial, degree, seed=3)
    pom64.load_state_dict({k: v.double() for k, v in pom.state_dict().items()})
    x64, c64 = (None if t is None else t.detach().double().requires_grad_() for t in (x, c))
    want = run(pom64, x64, c64, mask, None)
    for a, r, b in zip(got, ref_low, want):
        err, ref_err = rel_err(a, b), rel_err(r, b)
        assert err <= tol, (err, tol)
        assert err <= 2 * ref_err + tol / 10, (err, ref_err)
    assert got[0].dtype == dtype and got[1].dtype == dtype


@pytest.mark.parametrize("polynomial", ["products", "powers"])
def test_step_through_kernels(polynomial, calls):
    """Frame-by-frame step (the mean kernel per block and the running-mean update) equals the
    reference step, values, carried state and gradients."""
    pom = make_pom(polynomial, 2, seed=5)
    x = torch.randn(2, 9, DIM, dtype=F64, requires_grad=True)

    def frames(kernels):
        x.grad = None
        pom.zero_grad(set_to_none=True)
        with pom_fast.implementation(kernels or "reference"):
            state, outs = None, []
            for t in range(3):
                y, state = pom.step(x[:, 3 * t:3 * t + 3], state)
                outs.append(y)
        out = torch.cat([torch.cat(outs, 1).flatten(), state.H.flatten()])
        (out * torch.linspace(-1, 1, out.numel(), dtype=F64)).sum().backward()
        return [out.detach(), x.grad] + [p.grad for p in pom.parameters()]

    for a, b in zip(frames("triton"), frames(None)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    assert calls["state_sums"] >= 3 and calls["gate_mul"] >= 3


def test_chunked_recompute_through_kernels(calls):
    """Padding mask, tokens in several chunks, recompute on: partial sums per chunk."""
    pom = make_pom("products", 2, seed=9)
    x, c, mask = inputs("padding", seed=2)
    with pom_fast.options(recompute=True, chunk_bytes=1):
        got = run(pom, x, c, mask, "triton")
    want = run(pom, x, c, mask, None)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    assert calls["state_sums"] >= 9


def test_dense_masks_keep_torch_kernels(calls):
    pom = make_pom("products", 2, seed=1)
    x = torch.randn(1, 5, DIM, dtype=F64, requires_grad=True)
    mask = torch.rand(1, 5, 5) < 0.5
    got = run(pom, x, None, mask, "triton")
    want = run(pom, x, None, mask, None)
    torch.testing.assert_close(got[0], want[0])
    assert not calls


def test_kernel_switch_and_errors(monkeypatch):
    with pytest.raises(ValueError, match="implementation must be one of"):
        pom_fast.set_implementation("cuda")
    agg = pom_fast.NoMask(4)
    with pom_fast.implementation("auto"):          # automatic: never on CPU
        assert pom_fast._triton_for(agg, torch.device("cpu")) is None
    with pom_fast.implementation("triton"):
        assert pom_fast._triton_for(agg, torch.device("cpu")) is pom_triton
        general = pom_fast.GeneralMask(torch.ones(1, 4, 4, dtype=F64), 1e-7)
        assert pom_fast._triton_for(general, torch.device("cpu")) is None
    with pom_fast.implementation("torch"):
        assert pom_fast._triton_for(agg, torch.device("cpu")) is None
    monkeypatch.setenv("POMLAB_FAST", "gpu")
    with pytest.raises(ValueError, match="POMLAB_FAST must be one of"):
        pom_fast._from_environment()
    monkeypatch.setenv("POMLAB_FAST", "triton")
    assert pom_fast._from_environment() == "triton"
    # interpreted kernels refuse CUDA-less misuse with a clear message
    monkeypatch.setattr(pom_triton, "INTERPRETED", False)
    with pytest.raises(RuntimeError, match="built for CUDA tensors"):
        pom_triton.gate_mul(torch.zeros(1, 2, 3), torch.zeros(1, 1, 3), agg, "products")
