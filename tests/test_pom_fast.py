"""The fast PoM path (pom_fast.py) against the reference (pom.py): values and gradients in
float64 for every mask form, both polynomials, cross-mixing, step, the switch, and the
memory saved for backward. Tolerances: float64 with only the summation order changed, so
relative 1e-9 of the output's scale (observed differences are ~1e-15)."""
import os
import subprocess
import sys

import pytest
import torch
from hypothesis import given, strategies as st

import pomlab
from pomlab.masks import block_causal
from pomlab.nn import pom_fast

F64 = torch.float64

configs = st.fixed_dictionaries({
    "dim": st.integers(1, 6), "degree": st.integers(1, 4), "expand": st.integers(1, 3),
    "polynomial": st.sampled_from(["products", "powers"]),
})
# recompute off / automatic / on, and a chunk size that forces several chunks of tokens
modes = st.sampled_from([dict(recompute=False), dict(), dict(recompute=True),
                         dict(recompute=True, chunk_bytes=1)])


def make_pom(cfg, seed):
    torch.manual_seed(seed)
    pom = pomlab.PoM(**cfg).to(F64)
    if cfg["polynomial"] == "powers":   # make the power series matter
        with torch.no_grad():
            pom.alpha.normal_()
    return pom


def value_and_grads(pom, inputs, call, fast, opts=None):
    """call() under the fast path or the reference; output and gradients of a random linear
    functional w.r.t. the inputs and every parameter."""
    for t in inputs:
        t.grad = None
    pom.zero_grad(set_to_none=True)
    with pom_fast.implementation("auto" if fast else "reference"), pom_fast.options(**(opts or {})):
        y = call()
    cotangent = torch.randn(y.shape, dtype=y.dtype, generator=torch.Generator().manual_seed(1))
    (y * cotangent).sum().backward()
    grads = [t.grad for t in inputs] + [p.grad for p in pom.parameters()]
    return y.detach(), grads


def assert_same(fast, ref):
    (y1, g1), (y0, g0) = fast, ref
    scale = y0.abs().max().clamp_min(1.0)
    torch.testing.assert_close(y1, y0, rtol=1e-9, atol=1e-9 * scale)
    for a, b in zip(g1, g0):
        if b is None:
            assert a is None or not a.any()
            continue
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9 * b.abs().max().clamp_min(1.0))


def compare(pom, inputs, call, opts=None):
    assert_same(value_and_grads(pom, inputs, call, True, opts),
                value_and_grads(pom, inputs, call, False))


@given(cfg=configs, batch=st.integers(1, 3), m=st.integers(1, 6), n=st.integers(1, 7),
       kind=st.sampled_from(["none", "padding", "int", "blind", "query", "query1", "causal"]),
       opts=modes, seed=st.integers(0, 2**31))
def test_cross_mixing_every_mask_matches_reference(cfg, batch, m, n, kind, opts, seed):
    pom = make_pom(cfg, seed)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, m, cfg["dim"], dtype=F64, generator=g, requires_grad=True)
    c = torch.randn(batch, n, cfg["dim"], dtype=F64, generator=g, requires_grad=True)
    mask = {"none": None, "causal": "causal",
            "padding": torch.rand(batch, n, generator=g) < 0.6,
            "int": (torch.rand(batch, n, generator=g) < 0.6).long(),
            "blind": torch.zeros(batch, n, dtype=torch.bool),      # eps: zero state, no NaN
            "query": torch.rand(batch, m, n, generator=g) < 0.6,
            "query1": torch.rand(1, m, n, generator=g) < 0.6}[kind]
    compare(pom, [x, c], lambda: pom(x, context=c, mask=mask), opts)


@given(cfg=configs, batch=st.integers(1, 3), frames=st.integers(1, 5),
       per_frame=st.integers(1, 4), kind=st.sampled_from(["causal", "causal_tensor", "block"]),
       opts=modes, seed=st.integers(0, 2**31))
def test_self_mixing_structured_masks_match_reference(cfg, batch, frames, per_frame, kind,
                                                      opts, seed):
    pom = make_pom(cfg, seed)
    n = frames * per_frame
    x = torch.randn(batch, n, cfg["dim"], dtype=F64, requires_grad=True)
    mask = {"causal": "causal", "causal_tensor": torch.ones(n, n, dtype=torch.bool).tril()[None],
            "block": block_causal(frames, per_frame)[None]}[kind]
    compare(pom, [x], lambda: pom(x, mask=mask), opts)


@pytest.mark.parametrize("mask, kind, group", [
    (None, pom_fast.NoMask, None),
    ("causal", pom_fast.Causal, 1),
    (block_causal(3, 4)[None], pom_fast.BlockCausalFrames, 4),
    (block_causal(12, 1)[None], pom_fast.Causal, 1),
    (torch.ones(2, 12, dtype=torch.bool), pom_fast.Padding, None),
    (torch.rand(1, 12, 12) < 0.5, pom_fast.GeneralMask, None),
    (block_causal(3, 4)[None].expand(2, 12, 12), pom_fast.BlockCausalFrames, 4),
])
def test_mask_forms_are_recognised(mask, kind, group):
    """Causal and block-causal tensors take the prefix-sum route, other masks stay exact."""
    agg = aggregation(mask, 2)
    assert (type(agg), agg.group) == (kind, group)


def aggregation(mask, batch):
    return pom_fast.aggregation(mask, batch, 12, 12, "cpu", F64, eps=1e-7)


def test_near_block_causal_mask_is_not_mistaken():
    mask = block_causal(3, 4)[None].clone()
    assert type(aggregation(mask, 1)) is pom_fast.BlockCausalFrames
    mask[0, 5, 9] = True          # same first row, no longer block-causal; cache must notice
    assert type(aggregation(mask, 1)) is pom_fast.GeneralMask
    pom = pomlab.PoM(4).to(F64)
    x = torch.randn(1, 12, 4, dtype=F64, requires_grad=True)
    compare(pom, [x], lambda: pom(x, mask=mask))
    batch_differs = torch.stack([block_causal(3, 4), block_causal(6, 2)])
    assert type(aggregation(batch_differs, 2)) is pom_fast.GeneralMask


def test_tensor_masks_under_inference_mode():
    """Inference tensors have no version counter: the mask-structure cache must not need one."""
    pom = pomlab.PoM(4).to(F64)
    with torch.inference_mode():
        x = torch.randn(2, 12, 4, dtype=F64)
        for mask in (block_causal(3, 4)[None], torch.rand(2, 12, 12) < 0.5):
            with pom_fast.implementation("auto"):
                fast = pom(x, mask=mask)
            with pom_fast.implementation("reference"):
                torch.testing.assert_close(fast, pom(x, mask=mask), rtol=1e-10, atol=1e-12)


@given(cfg=configs, batch=st.integers(1, 3), frames=st.integers(1, 4), per_frame=st.integers(1, 4),
       seed=st.integers(0, 2**31))
def test_step_matches_reference(cfg, batch, frames, per_frame, seed):
    """Frame-by-frame mixing: outputs, final state and gradients through the carried states."""
    pom = make_pom(cfg, seed)
    x = torch.randn(batch, frames * per_frame, cfg["dim"], dtype=F64, requires_grad=True)

    def sequential():
        state, outs = None, []
        for t in range(frames):
            y, state = pom.step(x[:, t * per_frame:(t + 1) * per_frame], state)
            outs.append(y)
        assert state.n == frames * per_frame and state.config == pom.config
        return torch.cat([torch.cat(outs, 1).flatten(), state.H.flatten()])

    compare(pom, [x], sequential)


def test_step_refuses_foreign_state_on_fast_path():
    x = torch.randn(2, 3, 4)
    with pom_fast.implementation("auto"):
        _, state = pomlab.PoM(4, degree=2, expand=1).step(x)
        with pytest.raises(ValueError, match="state comes from a PoM"):
            pomlab.PoM(4, degree=1, expand=2).step(x, state)
        with pytest.raises(TypeError, match="state must be a PoMState"):
            pomlab.PoM(4, degree=2, expand=1).step(x, (state.H, state.n))


def test_gradcheck_through_fast_path():
    """Independent of the reference: finite differences of the fast path itself."""
    for polynomial in ("products", "powers"):
        pom = pomlab.PoM(3, degree=3, expand=2, polynomial=polynomial).to(F64)
        x = torch.randn(2, 4, 3, dtype=F64, requires_grad=True)
        c = torch.randn(2, 5, 3, dtype=F64, requires_grad=True)
        pad = torch.rand(2, 5) < 0.7
        with pom_fast.implementation("auto"), pom_fast.options(recompute=True, chunk_bytes=1):
            assert torch.autograd.gradcheck(lambda a, b: pom(a, context=b, mask=pad), (x, c))
        with pom_fast.implementation("auto"):
            assert torch.autograd.gradcheck(lambda a: pom(a, mask=block_causal(2, 2)[None]), (x,))


# --- switches ----------------------------------------------------------------------------------

def test_switch(monkeypatch):
    """One switch: the context manager (nested, restored), the global setter, checked names."""
    pom = pomlab.PoM(4)
    x = torch.randn(1, 3, 4)
    calls = []
    real = pom_fast.forward
    monkeypatch.setattr(pom_fast, "forward", lambda *a: calls.append(1) or real(*a))

    def used_fast():
        calls.clear()
        pom(x)
        return bool(calls)

    before = pom_fast.get_implementation()
    with pom_fast.implementation("auto"):
        assert used_fast()
        with pom_fast.implementation("reference"):
            assert pom_fast.get_implementation() == "reference" and not used_fast()
            with pom_fast.implementation("torch"):
                assert used_fast()
        assert pom_fast.get_implementation() == "auto"
    assert pom_fast.get_implementation() == before
    pom_fast.set_implementation("reference")
    try:
        assert not used_fast()
    finally:
        pom_fast.set_implementation(before)
    with pytest.raises(ValueError, match="implementation must be one of auto, reference"):
        pom_fast.set_implementation("fast")


@pytest.mark.parametrize("value, expected", [("0", "reference"), ("reference", "reference"),
                                             ("1", "auto"), ("torch", "torch"), ("", "auto")])
def test_environment_variable_sets_the_switch(value, expected):
    code = "from pomlab.nn import pom_fast; print(pom_fast.get_implementation())"
    env = {**os.environ, "POMLAB_FAST": value, "PYTHONPATH": os.getcwd()}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == expected


def test_environment_variable_is_checked():
    env = {**os.environ, "POMLAB_FAST": "fastest", "PYTHONPATH": os.getcwd()}
    out = subprocess.run([sys.executable, "-c", "import pomlab"], env=env, capture_output=True,
                         text=True)
    assert out.returncode != 0 and "POMLAB_FAST must be one of auto, reference" in out.stderr


def test_fast_path_imports_no_module_class():
    """Leaf functions over tensors: pom_fast / pom_triton never import pom.py (one-way)."""
    import ast
    import pathlib
    for name in ("pom_fast.py", "pom_triton.py"):
        tree = ast.parse((pathlib.Path(pomlab.__file__).parent / "nn" / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                names = {a.name for a in node.names}
                assert (node.module or "").split(".")[-1] != "pom", (name, node.module)
                assert not names & {"pom", "PoM", "blocks"}, (name, names)
            elif isinstance(node, ast.Import):
                assert not any(a.name.endswith(".pom") for a in node.names), name


def test_options_are_checked_and_restored():
    before = pom_fast.get_options()
    with pom_fast.options(recompute=True, chunk_bytes=10) as o:
        assert o.recompute is True and pom_fast.get_options().chunk_bytes == 10
    assert pom_fast.get_options() == before
    with pytest.raises(ValueError, match="unknown option"):
        pom_fast.set_options(chunk=3)
    with pytest.raises(ValueError, match="chunk_bytes"):
        pom_fast.set_options(chunk_bytes=0)
    with pytest.raises(TypeError, match="recompute"):
        pom_fast.set_options(recompute="yes")
    assert pom_fast.get_options() == before


# torch.func's own decompositions call the deprecated torch.jit.script (not pomlab code)
@pytest.mark.filterwarnings("ignore:.*torch.jit.script.* is deprecated:DeprecationWarning")
def test_functorch_transforms_fall_back_to_reference():
    """jacrev/vmap and forward-mode AD see the reference (the custom backward has no rules)."""
    pom = pomlab.PoM(3).to(F64)
    x = torch.randn(1, 4, 3, dtype=F64)
    fwd_ad = torch.autograd.forward_ad
    with pom_fast.implementation("auto"):
        jac = torch.func.jacrev(pom)(x).reshape(12, 12)
        with fwd_ad.dual_level():
            tangent = fwd_ad.unpack_dual(pom(fwd_ad.make_dual(x, torch.ones_like(x)))).tangent
    with pom_fast.implementation("reference"):
        expected = torch.autograd.functional.jacobian(pom, x).reshape(12, 12)
    torch.testing.assert_close(jac, expected)
    torch.testing.assert_close(tangent.flatten(), expected @ torch.ones(12, dtype=F64))


# --- memory and precision ----------------------------------------------------------------------

def saved_bytes(pom, x, opts):
    """Bytes autograd keeps for backward, beyond the input and the parameters."""
    known = {x.untyped_storage().data_ptr()} | {p.untyped_storage().data_ptr()
                                                for p in pom.parameters()}
    storages = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in known:
            storages[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), pom_fast.options(**opts):
        pom(x)
    return sum(storages.values())


def test_fast_path_saves_less_for_backward():
    pom = pomlab.PoM(16)
    xs = [torch.randn(2, n, 16, requires_grad=True) for n in (64, 128)]
    with pom_fast.implementation("reference"):
        ref = [saved_bytes(pom, x, {}) for x in xs]
    with pom_fast.implementation("auto"):
        fast = [saved_bytes(pom, x, dict(recompute=False)) for x in xs]
        bounded = [saved_bytes(pom, x, dict(recompute=True, chunk_bytes=4096)) for x in xs]
    state = 2 * pom.state_dim * 4                       # H: (B, 1, S) float32
    assert bounded == [state, state]                    # nothing per token: flat in N
    per_token = 2 * pom.state_dim * 4 * 2               # z and s: (B, N, S) float32 each
    assert fast == [state + per_token * 64, state + per_token * 128]
    assert fast[1] < 0.55 * ref[1], (fast, ref)


def test_autocast_bfloat16_close_to_reference():
    pom = pomlab.PoM(32, degree=3)
    x = torch.randn(2, 64, 32, requires_grad=True)
    outs = []
    for fast in (True, False):
        x.grad = None
        with pom_fast.implementation("auto" if fast else "reference"), torch.autocast("cpu", dtype=torch.bfloat16):
            y = pom(x, mask="causal")
        y.float().square().mean().backward()
        outs.append((y, x.grad.clone()))
    (y1, g1), (y0, g0) = outs
    assert y1.dtype == y0.dtype == torch.bfloat16
    # bf16: 8 mantissa bits, a few ops deep -> a few 1e-2 of the scale
    assert (y1.float() - y0.float()).abs().max() < 3e-2 * y0.float().abs().max()
    assert (g1 - g0).abs().max() < 5e-2 * g0.abs().max()


@pytest.mark.parametrize("polynomial", ["products", "powers"])
def test_bfloat16_parameters(polynomial):
    pom = pomlab.PoM(16, degree=2, polynomial=polynomial)
    x = torch.randn(2, 40, 16)
    with pom_fast.implementation("reference"):
        ref = pom(x)
    pom16 = pom.to(torch.bfloat16)
    x16 = x.to(torch.bfloat16).requires_grad_()
    with pom_fast.implementation("auto"):
        y = pom16(x16, mask=torch.rand(2, 40) < 0.5)
        y.float().sum().backward()
        y = pom16(x16)
    assert y.dtype == torch.bfloat16 and torch.isfinite(x16.grad).all()
    assert all(p.grad.dtype == torch.bfloat16 for p in pom16.parameters())
    # bf16 vs float32: relative 3e-2 of the scale (8-bit mantissa, a few ops deep)
    assert (y.float() - ref).abs().max() < 3e-2 * ref.abs().max() + 1e-3


@pytest.mark.parametrize("polynomial", ["products", "powers"])
def test_compiled_kernels_trace_whole_and_match(monkeypatch, polynomial):
    """The kernels that torch.compile gets (by default on CUDA) trace without graph breaks
    (fullgraph=True) and give the eager numbers; aot_eager skips inductor's slow codegen."""
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: real_compile(
        fn, backend="aot_eager", fullgraph=True))
    monkeypatch.setattr(pom_fast, "_compiled", {})
    pom = make_pom(dict(dim=8, degree=3, expand=2, polynomial=polynomial), 0)
    x = torch.randn(2, 16, 8, dtype=F64, requires_grad=True)
    pad = torch.rand(2, 16) < 0.5
    for mask in (None, pad):
        with pom_fast.options(compile=True):
            fast = value_and_grads(pom, [x], lambda: pom(x, mask=mask), True)
        assert_same(fast, value_and_grads(pom, [x], lambda: pom(x, mask=mask), False))
    assert len(pom_fast._compiled) == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fast_matches_cpu_reference():
    pom = pomlab.PoM(16, degree=3).to(F64)
    x = torch.randn(2, 10, 16, dtype=F64)
    with pom_fast.implementation("reference"):
        ref = pom(x, mask="causal")
    with pom_fast.implementation("auto"):
        out = pom.cuda()(x.cuda(), mask="causal").cpu()
    torch.testing.assert_close(out, ref)


@pytest.mark.parametrize("polynomial", ["products", "powers"])
def test_block_causal_description_matches_dense_mask(polynomial):
    """masks.BlockCausal runs the prefix-sum path without the (N, N) tensor; same values and
    gradients as the reference with the dense block_causal mask (float64)."""
    pom = pomlab.PoM(5, degree=3, expand=2, polynomial=polynomial).to(torch.float64)
    x = torch.randn(2, 12, 5, dtype=torch.float64, requires_grad=True)
    spec = pomlab.masks.BlockCausal(4, 3)
    with pom_fast.implementation("auto"):
        fast = pom(x, mask=spec)
    (g_fast,) = torch.autograd.grad(fast.square().sum(), x)
    with pom_fast.implementation("reference"):
        ref = pom(x, mask=pomlab.masks.block_causal(4, 3)[None])
        (g_ref,) = torch.autograd.grad(ref.square().sum(), x)
        torch.testing.assert_close(pom(x, mask=spec), ref, rtol=0, atol=0)   # materialised
    torch.testing.assert_close(fast, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g_fast, g_ref, rtol=1e-10, atol=1e-12)
    attn = pomlab.MHA(6, 2).to(torch.float64)
    x6 = torch.randn(2, 12, 6, dtype=torch.float64)
    torch.testing.assert_close(attn(x6, mask=spec), attn(x6, mask=pomlab.masks.block_causal(4, 3)[None]))
    with pytest.raises(ValueError, match="BlockCausal"):
        pom(x, mask=pomlab.masks.BlockCausal(3, 3))
    with pytest.raises(ValueError, match="frames"):
        pomlab.masks.BlockCausal(0, 3)
