"""The authors' 2026 PoM options in pomlab.PoM (selection heads, groups, RoPE), each checked
against its formula written out here in float64 (independent loops, not the module's code),
plus: the defaults keep today's module, step equals the block-causal forward with RoPE,
gradients (finite differences), and clear errors.

Tolerances: float64 with the same operations in another order, relative 1e-12; the RoPE
formula here uses float64 frequencies while the module (like the authors' package) uses
float32 tables, so RoPE comparisons allow 1e-6 of the output's scale.
"""
import math

import pytest
import torch

import pomlab
from pomlab.masks import block_causal
from pomlab.nn import pom_fast

F64 = torch.float64


def make(seed=0, **kw):
    torch.manual_seed(seed)
    pom = pomlab.PoM(8, **{"degree": 2, "expand": 2, "polynomial": "powers", **kw}).to(F64)
    if pom.polynomial == "powers":
        with torch.no_grad():
            pom.alpha.normal_()
    return pom


def gate_act(pom, s):
    return torch.sigmoid(s) if pom.polynomial == "products" else torch.nn.functional.hardsigmoid(s)


def rotate_pairs(v, angle_of_pair):
    """Rotate-half: pair (c, c + C/2) of v (C,) turned by angle_of_pair(c)."""
    C = v.shape[0]
    out = v.clone()
    for c in range(C // 2):
        a = angle_of_pair(c)
        out[c] = v[c] * math.cos(a) - v[c + C // 2] * math.sin(a)
        out[c + C // 2] = v[c + C // 2] * math.cos(a) + v[c] * math.sin(a)
    return out


def rope_1d(v, pos, table, stride=1, base=10000.0):
    """v (C,) at position pos; frequencies of a table of `table` channels, every stride-th."""
    half = table // 2
    return rotate_pairs(v, lambda c: pos * base ** (-(c * stride) / half))


def rope_2d(v, row, col, table, stride=1, base=10000.0):
    C, quarter = v.shape[0], table // 4
    angle = lambda p: (lambda c: p * base ** (-(c * stride) / quarter))  # noqa: E731
    return torch.cat([rotate_pairs(v[:C // 2], angle(row)), rotate_pairs(v[C // 2:], angle(col))])


def expected(pom, x, positions=None, rope=None):
    """PoM(x) (self-mixing, no mask) from the formulas, token by token."""
    B, N, _ = x.shape
    S, G = pom.state_dim, pom.selection_heads
    out = torch.empty(B, N, pom.dim, dtype=F64)
    for b in range(B):
        h = pom.polynomial_features(x[b:b + 1])[0]            # h(x_i), checked in test_pom.py
        if rope == "1d":
            h = torch.stack([rope_1d(h[i], int(positions[i]), S) for i in range(N)])
        elif rope == "2d":
            h = torch.stack([rope_2d(h[i], *map(int, positions[i]), S) for i in range(N)])
        H = h.mean(0)
        for j in range(N):
            s = gate_act(pom, pom.gate.weight @ x[b, j] + pom.gate.bias)   # (G,) or (S,)
            stride = 1 if G == 1 else (S // G // 2 if rope == "1d" else S // G)
            if rope == "1d":
                s = rope_1d(s, int(positions[j]), S, stride)
            elif rope == "2d":
                s = rope_2d(s, *map(int, positions[j]), S, stride)
            g = s if G == 1 else torch.cat([s[k].repeat(S // G) for k in range(G)])
            out[b, j] = pom.out.weight @ (g * H) + pom.out.bias
    return out


def close_rope(got, want):
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6 * want.abs().max().item())


def test_defaults_keep_todays_module():
    torch.manual_seed(0)
    pom = pomlab.PoM(8, degree=2, expand=2)
    assert [n for n, _ in pom.named_parameters()] == ["poly.weight", "poly.bias", "gate.weight",
                                                      "gate.bias", "out.weight", "out.bias"]
    assert isinstance(pom.poly, torch.nn.Linear) and pom.gate.out_features == pom.state_dim
    assert pom.config == (8, 2, 2, "products") and pom.defaults_only
    assert "selection_heads" not in repr(pom)
    calls = []
    real = pom_fast.forward
    try:
        pom_fast.forward = lambda *a: calls.append(1) or real(*a)
        pom(torch.randn(1, 3, 8))
        assert calls                                     # the fast path still serves it
        make(selection_heads=2)(torch.randn(1, 3, 8, dtype=F64))
        assert len(calls) == 1                           # options run the reference
    finally:
        pom_fast.forward = real


@pytest.mark.parametrize("polynomial", ["products", "powers"])
@pytest.mark.parametrize("heads", [2, 4])
def test_selection_heads_formula(polynomial, heads):
    pom = make(selection_heads=heads, polynomial=polynomial)
    assert pom.gate.out_features == heads
    x = torch.randn(2, 5, 8, dtype=F64)
    torch.testing.assert_close(pom(x), expected(pom, x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("groups", [2, 4])
def test_groups_are_a_block_diagonal_poly(groups):
    pom = make(groups=groups)
    dense = torch.zeros(pom.state_dim, 8, dtype=F64)
    rows, cols = pom.state_dim // groups, 8 // groups
    for g in range(groups):                       # Conv1d layout: (out, in/groups)
        dense[g * rows:(g + 1) * rows, g * cols:(g + 1) * cols] = \
            pom.poly.weight[g * rows:(g + 1) * rows]
    x = torch.randn(2, 5, 8, dtype=F64)
    torch.testing.assert_close(pom.poly(x), x @ dense.T + pom.poly.bias, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(pom(x), expected(pom, x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("heads", [1, 4])
@pytest.mark.parametrize("polynomial", ["products", "powers"])
def test_rope_1d_formula(heads, polynomial):
    pom = make(rope="1d", selection_heads=heads, polynomial=polynomial)
    x = torch.randn(2, 6, 8, dtype=F64)
    close_rope(pom(x), expected(pom, x, torch.arange(6), "1d"))
    shifted = torch.arange(6) * 3 + 5                     # explicit positions
    close_rope(pom(x, positions=shifted), expected(pom, x, shifted, "1d"))


@pytest.mark.parametrize("heads", [1, 4])
def test_rope_2d_formula(heads):
    pom = make(rope="2d", selection_heads=heads)
    grid = torch.stack(torch.meshgrid(torch.arange(2), torch.arange(3), indexing="ij"), -1)
    positions = grid.reshape(6, 2)
    x = torch.randn(2, 6, 8, dtype=F64)
    close_rope(pom(x, positions=positions), expected(pom, x, positions, "2d"))


def test_step_with_rope_equals_block_causal_forward():
    pom = make(rope="1d", selection_heads=2, groups=2)
    x = torch.randn(2, 9, 8, dtype=F64)
    full = pom(x, mask=block_causal(3, 3)[None])
    state, outs = None, []
    for t in range(3):
        y, state = pom.step(x[:, 3 * t:3 * t + 3], state)   # positions continue at state.n
        outs.append(y)
    assert state.config == pom.config and len(state.config) == 7
    # the masked forward divides by eps + count (eps = 1e-7), step by the count
    close_rope(torch.cat(outs, 1), full)


def test_gradients_by_finite_differences():
    pom = make(rope="2d", selection_heads=4, groups=2)
    positions = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]])
    x = torch.randn(1, 4, 8, dtype=F64, requires_grad=True)
    c = torch.randn(1, 4, 8, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, b: pom(a, context=b, positions=positions, context_positions=positions), (x, c))


def test_bad_options_and_positions():
    with pytest.raises(ValueError, match="selection_heads=3 must divide the state size 16"):
        pomlab.PoM(8, 2, 2, polynomial="powers", selection_heads=3)
    with pytest.raises(ValueError, match="groups=3 must divide dim=8"):
        pomlab.PoM(8, groups=3)
    with pytest.raises(ValueError, match="rope must be one of"):
        pomlab.PoM(8, rope="3d")
    with pytest.raises(ValueError, match="multiples of 4"):
        pomlab.PoM(8, 2, 2, polynomial="powers", rope="2d", selection_heads=2)
    with pytest.raises(TypeError, match="selection_heads must be an int"):
        pomlab.PoM(8, selection_heads=1.5)
    x = torch.randn(1, 4, 8, dtype=F64)
    with pytest.raises(ValueError, match="needs \\(tokens, 2\\) row/column positions"):
        make(rope="2d")(x)
    with pytest.raises(ValueError, match="positions must have shape \\(4,\\)"):
        make(rope="1d")(x, positions=torch.arange(5))
    with pytest.raises(ValueError, match="positions are for rope"):
        make()(x, positions=torch.arange(4))
    with pytest.raises(TypeError, match="positions must be an integer tensor"):
        make(rope="1d")(x, positions=torch.arange(4.0))
    _, state = make(selection_heads=2).step(x)
    with pytest.raises(ValueError, match="state comes from a PoM"):
        make().step(x, state)
