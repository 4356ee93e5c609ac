"""PoM reference against docs/pom.md §1-§2, written out independently in float64."""
import math

import pytest
import torch
from hypothesis import given, strategies as st

import pomlab
from pomlab import properties
from pomlab.masks import block_causal
from pomlab.nn import pom_fast
from pomlab.nn.pom import EPS, PoMState
from pomlab.testing import (MixerConfig, block_splits, masks, mixer_configs, permutations, seeds,
                            token_batches)

F64 = torch.float64


@pytest.fixture(autouse=True, params=["reference", "fast"])
def path(request):
    """Every check here runs on the readable reference (pom.py) and on the fast path."""
    with pom_fast.implementation("auto" if request.param == "fast" else "reference"):
        yield request.param


def gelu_erf(z):
    return 0.5 * z * (1.0 + torch.erf(z / math.sqrt(2.0)))


def direct_h(pom, x):
    """h(x) token by token, straight from docs/pom.md §1 (products) or §2 (powers)."""
    z = x @ pom.poly.weight.T + pom.poly.bias
    if pom.polynomial == "products":
        u = gelu_erf(z)
        size = pom.expand * pom.dim
        chunks = [u[..., p * size:(p + 1) * size] for p in range(pom.degree)]
        terms, running = [], torch.ones_like(chunks[0])
        for c in chunks:
            running = running * c
            terms.append(running)
        return torch.cat(terms, -1)
    a = torch.where(z >= 0, z, 0.01 * z).clamp(-0.1, 6.0)
    return sum(pom.alpha[:, p - 1] * a ** p for p in range(1, pom.degree + 1))


def direct_pom(pom, x, context=None, mask=None):
    """PoM(X)_j = out(gate(x_j) * H_j) with H_j = sum_i M_ji h_i / (eps + sum_i M_ji), by loops.

    mask: None, or a float64 (B, M, N) 0/1 tensor.
    """
    context = x if context is None else context
    B, M, _ = x.shape
    N = context.shape[1]
    h = direct_h(pom, context)
    s = x @ pom.gate.weight.T + pom.gate.bias
    g = torch.sigmoid(s) if pom.polynomial == "products" else torch.clamp(s / 6 + 0.5, 0, 1)
    out = torch.empty(B, M, pom.dim, dtype=x.dtype)
    for b in range(B):
        for j in range(M):
            if mask is None:
                H = sum(h[b, i] for i in range(N)) / N
            else:
                H = sum(mask[b, j, i] * h[b, i] for i in range(N)) / (EPS + mask[b, j].sum())
            out[b, j] = (g[b, j] * H) @ pom.out.weight.T + pom.out.bias
    return out


configs = st.fixed_dictionaries({
    "dim": st.integers(1, 6), "degree": st.integers(1, 4), "expand": st.integers(1, 3),
    "polynomial": st.sampled_from(["products", "powers"]),
})


def make_pom(cfg, seed):
    torch.manual_seed(seed)
    pom = pomlab.PoM(**cfg).to(F64)
    if cfg["polynomial"] == "powers":   # make the power series matter in the checks
        with torch.no_grad():
            pom.alpha.normal_()
    return pom


@given(cfg=configs, batch=st.integers(1, 3), n=st.integers(1, 7), seed=st.integers(0, 2**31))
def test_matches_spec_unmasked(cfg, batch, n, seed):
    pom = make_pom(cfg, seed)
    x = torch.randn(batch, n, cfg["dim"], dtype=F64)
    torch.testing.assert_close(pom(x), direct_pom(pom, x), rtol=1e-10, atol=1e-12)


@given(cfg=configs, batch=st.integers(1, 3), m=st.integers(1, 5), n=st.integers(1, 6),
       kind=st.sampled_from(["padding", "query", "query1", "int", "causal"]),
       seed=st.integers(0, 2**31))
def test_masks_match_spec(cfg, batch, m, n, kind, seed):
    """Cross-mixing with every mask form against the direct formula (eps included)."""
    pom = make_pom(cfg, seed)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, m, cfg["dim"], dtype=F64, generator=g)
    c = torch.randn(batch, n, cfg["dim"], dtype=F64, generator=g)
    if kind == "padding":
        mask = torch.rand(batch, n, generator=g) < 0.6
        dense = mask[:, None, :].expand(batch, m, n)
    elif kind in ("query", "int"):
        mask = torch.rand(batch, m, n, generator=g) < 0.6
        dense = mask
        if kind == "int":
            mask = mask.to(torch.int64)
    elif kind == "query1":
        mask = torch.rand(1, m, n, generator=g) < 0.6
        dense = mask.expand(batch, m, n)
    else:
        mask = "causal"
        dense = torch.ones(m, n, dtype=torch.bool).tril().expand(batch, m, n)
    expected = direct_pom(pom, x, c, dense.to(F64))
    torch.testing.assert_close(pom(x, context=c, mask=mask), expected, rtol=1e-10, atol=1e-12)


def test_fully_masked_query_gets_zero_state_not_nan():
    pom = pomlab.PoM(4).to(F64)
    x = torch.randn(2, 3, 4, dtype=F64)
    y = pom(x, mask=torch.zeros(2, 3, dtype=torch.bool))
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y, pom.out.bias.expand_as(y))   # out(gate * 0) = out's bias
    attn = pomlab.MHA(4, 2).to(F64)
    ya = attn(x, mask=torch.zeros(2, 3, dtype=torch.bool))
    torch.testing.assert_close(ya, attn.proj.bias.expand_as(ya))


# Equivariance, context-order invariance, causality and step: pomlab.testing's strategies draw
# the mixers (PoM of both polynomials, MHA, Polymorpher), tokens, permutations and every mask
# kind; float64, so only the order of sums changes (rtol 1e-9, atol 1e-11).

@given(cfg=mixer_configs(), data=st.data())
def test_permutation_equivariant_with_every_mask(cfg, data):
    """Prop. 1: f(XP; P^T M P) = f(X; M) P for every mask kind (none included)."""
    mixer = cfg.build(seed=data.draw(seeds()))
    x = data.draw(token_batches(dim=cfg.dim))
    perm = data.draw(permutations(x.shape[1]))
    case = data.draw(masks(x.shape[0], x.shape[1]))
    torch.testing.assert_close(mixer(x[:, perm], mask=case.permuted(perm).mask),
                               mixer(x, mask=case.mask)[:, perm], rtol=1e-9, atol=1e-11)


@given(cfg=mixer_configs(), m=st.integers(1, 5), data=st.data())
def test_cross_mixing_invariant_to_context_order(cfg, m, data):
    mixer = cfg.build(seed=data.draw(seeds()))
    x = data.draw(token_batches(dim=cfg.dim, batch=2, tokens=m))
    c = data.draw(token_batches(dim=cfg.dim, batch=2))
    perm = data.draw(permutations(c.shape[1]))
    case = data.draw(masks(2, m, c.shape[1], kinds=("none", "padding", "int", "per_query",
                                                    "per_query_shared", "causal")))
    torch.testing.assert_close(mixer(x, context=c[:, perm], mask=case.context_permuted(perm).mask),
                               mixer(x, context=c, mask=case.mask), rtol=1e-9, atol=1e-11)


@given(cfg=mixer_configs(), cross=st.booleans(), data=st.data())
def test_hidden_tokens_do_not_reach_queries(cfg, cross, data):
    """Causality by perturbation: change one context token; every query whose mask hides it
    keeps its output exactly (float64: the hidden token enters with weight 0)."""
    mixer = cfg.build(seed=data.draw(seeds()))
    x = data.draw(token_batches(dim=cfg.dim))
    c = data.draw(token_batches(dim=cfg.dim, batch=x.shape[0])) if cross else x
    case = data.draw(masks(x.shape[0], x.shape[1], c.shape[1]))
    i = data.draw(st.integers(0, c.shape[1] - 1))
    hidden = case.hidden_from(i)
    if not cross:
        hidden[:, i] = False                   # token i's own query changed too
    changed = c.clone()
    changed[:, i] = data.draw(token_batches(dim=cfg.dim, batch=x.shape[0], tokens=1))[:, 0] + 1
    before = mixer(x, context=c if cross else None, mask=case.mask)
    after = mixer(changed if not cross else x, context=changed if cross else None,
                  mask=case.mask)
    scale = before.abs().max().clamp_min(1.0)
    assert ((after - before).abs().amax(-1)[hidden] <= 1e-12 * scale).all()


@given(cfg=mixer_configs(kinds=("pom",)), split=block_splits(), data=st.data())
def test_step_over_frames_equals_block_causal(cfg, split, data):
    pom = cfg.build(seed=data.draw(seeds()))
    frames, per_frame = split
    x = data.draw(token_batches(dim=cfg.dim, tokens=frames * per_frame))
    parallel = pom(x, mask=block_causal(frames, per_frame)[None])
    state, outs = None, []
    for t in range(frames):
        y, state = pom.step(x[:, t * per_frame:(t + 1) * per_frame], state)
        outs.append(y)
    assert state.n == frames * per_frame
    # relative 1e-6 of the output's scale: the parallel path divides by (eps + count), the
    # recurrence by the count, a relative change of eps/count <= 1e-7 in H
    sequential = torch.cat(outs, 1)
    assert (sequential - parallel).abs().max() <= 1e-6 * parallel.abs().max()
    # the final state is the plain mean over every token
    torch.testing.assert_close(state.H, pom.polynomial_features(x).mean(1, keepdim=True))


@pytest.mark.parametrize("cfg", [MixerConfig("pom", 8, (("polynomial", "products"),)),
                                 MixerConfig("pom", 8, (("degree", 3), ("polynomial", "powers"))),
                                 MixerConfig("mha", 8, (("heads", 2),)),
                                 MixerConfig("polymorpher", 8)], ids=lambda c: c.kind)
def test_property_checks_hold(cfg):
    """The same properties through pomlab.properties (its own seeds and tolerances)."""
    mixer = cfg.build()
    properties.assert_equivariance(mixer, cfg.dim)
    properties.assert_context_invariance(mixer, cfg.dim)
    properties.assert_causality(mixer, cfg.dim)
    if cfg.kind == "pom":
        properties.assert_step(mixer)


@pytest.mark.parametrize("polynomial", ["products", "powers"])
def test_gradcheck_float64(polynomial):
    pom = pomlab.PoM(3, degree=3, expand=2, polynomial=polynomial).to(F64)
    x = torch.randn(2, 4, 3, dtype=F64, requires_grad=True)
    c = torch.randn(2, 5, 3, dtype=F64, requires_grad=True)
    mask = torch.rand(2, 4, 5) < 0.7
    assert torch.autograd.gradcheck(lambda a, b: pom(a, context=b, mask=mask), (x, c))
    assert torch.autograd.gradcheck(lambda a: pom(a, mask="causal"), (x,))
    params = tuple(pom.parameters())
    assert torch.autograd.gradcheck(lambda *p: torch.func.functional_call(
        pom, dict(zip([n for n, _ in pom.named_parameters()], p)), (x.detach(),)), params)


@pytest.mark.parametrize("polynomial", ["products", "powers"])
def test_bfloat16_close_to_float32(polynomial):
    pom = pomlab.PoM(32, degree=2, expand=2, polynomial=polynomial)
    if polynomial == "powers":
        with torch.no_grad():
            pom.alpha.normal_()
    x = torch.randn(4, 64, 32)
    ref = pom(x)
    low = pom.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert low.dtype == torch.bfloat16
    # bf16 keeps 8 bits of mantissa: relative error ~2^-8 per op, a few ops deep -> 3e-2 of scale
    err = (low.float() - ref).abs().max() / ref.abs().max()
    assert err < 3e-2, err


@pytest.mark.parametrize("degree", [1, 2, 4])
def test_bfloat16_large_inputs_stay_finite(degree):
    pom = pomlab.PoM(16, degree=degree, expand=2).to(torch.bfloat16)
    x = (torch.randn(2, 128, 16) * 1e3).to(torch.bfloat16)
    y = pom(x)
    assert torch.isfinite(y).all()
    y.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in pom.parameters())


def test_float32_autograd_and_state_dim():
    pom = pomlab.PoM(8, degree=3, expand=2)
    assert pom.state_dim == 48 and pom.poly.out_features == 48 and pom.out.in_features == 48
    assert pomlab.PoM(8, degree=3, expand=2, polynomial="powers").state_dim == 16
    x = torch.randn(2, 5, 8, requires_grad=True)
    pom(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    pom = pomlab.PoM(16, degree=3).to(F64)
    x = torch.randn(2, 10, 16, dtype=F64)
    torch.testing.assert_close(pom.cuda()(x.cuda()).cpu(), pom.cpu()(x))


# --- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, err, words", [
    ({"dim": 4, "degree": 0}, ValueError, "degree"),
    ({"dim": 4, "expand": 0}, ValueError, "expand"),
    ({"dim": 0}, ValueError, "dim"),
    ({"dim": 4, "degree": 2.0}, TypeError, "degree"),
    ({"dim": 4, "polynomial": "chebyshev"}, ValueError, "polynomial"),
])
def test_bad_constructor_arguments(kwargs, err, words):
    with pytest.raises(err, match=words):
        pomlab.PoM(**kwargs)


@pytest.mark.parametrize("mixer", ["pom", "mha"])
def test_bad_forward_inputs(mixer):
    m = pomlab.PoM(4) if mixer == "pom" else pomlab.MHA(4, 2)
    x = torch.randn(2, 3, 4)
    cases = [
        (lambda: m(torch.randn(2, 3, 5)), ValueError, "x has feature size 5, expected 4"),
        (lambda: m(torch.randn(3, 4)), ValueError, "x must have shape"),
        (lambda: m(x.long()), TypeError, "x must be a floating"),
        (lambda: m(x, context=torch.randn(3, 5, 4)), ValueError, "context has batch size 3"),
        (lambda: m(x, context=torch.randn(2, 5, 6)), ValueError, "context has feature size"),
        (lambda: m(x, mask=torch.ones(2, 4, dtype=torch.bool)), ValueError, "mask"),
        (lambda: m(x, mask=torch.ones(2, 3, 4, dtype=torch.bool)), ValueError, "mask"),
        (lambda: m(x, mask=torch.ones(3, 3, dtype=torch.bool)[None, None]), ValueError, "mask"),
        (lambda: m(x, mask=torch.ones(2, 3)), TypeError, "mask must be a bool"),
        (lambda: m(x, mask=torch.full((2, 3), 2)), ValueError, "mask"),
        (lambda: m(x, mask="anticausal"), ValueError, "mask"),
        (lambda: m(x, mask=[[1, 1, 1]]), TypeError, "mask"),
        (lambda: m(x.double()), TypeError, "x has dtype torch.float64"),
    ]
    for call, err, words in cases:
        with pytest.raises(err, match=words):
            call()


def test_state_from_another_configuration_is_refused():
    x = torch.randn(2, 3, 4)
    _, state = pomlab.PoM(4, degree=2, expand=1).step(x)
    with pytest.raises(ValueError, match="state comes from a PoM"):
        pomlab.PoM(4, degree=1, expand=2).step(x, state)       # same state size, other config
    with pytest.raises(ValueError, match="state comes from a PoM"):
        pomlab.PoM(4, degree=2, expand=1, polynomial="powers").step(x, state)
    pom = pomlab.PoM(4, degree=2, expand=1)
    with pytest.raises(ValueError, match="batch size"):
        pom.step(torch.randn(3, 3, 4), state)
    with pytest.raises(TypeError, match="state must be a PoMState"):
        pom.step(x, (state.H, state.n))
    assert isinstance(pom.step(x, state)[1], PoMState)


def test_mha_bad_heads():
    with pytest.raises(ValueError, match="heads must divide dim"):
        pomlab.MHA(6, 4)


def test_block_causal_mask():
    m = block_causal(3, 2)
    expected = torch.tensor([[1, 1, 0, 0, 0, 0]] * 2 + [[1, 1, 1, 1, 0, 0]] * 2 + [[1] * 6] * 2,
                            dtype=torch.bool)
    assert torch.equal(m, expected)
    with pytest.raises(ValueError, match="frames"):
        block_causal(0, 2)
    with pytest.raises(ValueError, match="tokens_per_frame"):
        block_causal(2, -1)


@given(heads=st.integers(1, 3), m=st.integers(1, 5), n=st.integers(1, 6),
       kind=st.sampled_from(["none", "padding", "query", "causal"]), seed=st.integers(0, 2**31))
def test_mha_matches_explicit_softmax(heads, m, n, kind, seed):
    torch.manual_seed(seed)
    dim = 2 * heads
    attn = pomlab.MHA(dim, heads).to(F64)
    x, c = torch.randn(2, m, dim, dtype=F64), torch.randn(2, n, dim, dtype=F64)
    if kind == "none":
        mask, dense = None, torch.ones(2, m, n, dtype=torch.bool)
    elif kind == "padding":
        mask = torch.rand(2, n) < 0.6
        dense = mask[:, None].expand(2, m, n)
    elif kind == "query":
        mask = dense = torch.rand(2, m, n) < 0.6
    else:
        mask, dense = "causal", torch.ones(m, n, dtype=torch.bool).tril().expand(2, m, n)
    W, b = attn.qkv.weight, attn.qkv.bias
    q = (x @ W[:dim].T + b[:dim]).view(2, m, heads, 2).transpose(1, 2)
    k = (c @ W[dim:2 * dim].T + b[dim:2 * dim]).view(2, n, heads, 2).transpose(1, 2)
    v = (c @ W[2 * dim:].T + b[2 * dim:]).view(2, n, heads, 2).transpose(1, 2)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(2)
    scores = scores.masked_fill(~dense[:, None], float("-inf"))
    p = torch.softmax(scores, -1).nan_to_num(0.0)       # blind queries attend to nothing
    o = (p @ v).transpose(1, 2).reshape(2, m, dim) @ attn.proj.weight.T + attn.proj.bias
    torch.testing.assert_close(attn(x, context=c, mask=mask), o, rtol=1e-9, atol=1e-11)
