"""The contextual-mapping checker on cases with known answers, and Lemma 3's construction."""
import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st


from pomlab.theory import (ConstructedContextualMap, InterpolationNet, RampQuantiser,
                           check_contextual_mapping, context_keys, gelu_inverse, sequence_grid)

grids = st.tuples(st.integers(2, 3), st.integers(2, 3), st.integers(1, 2), st.booleans())


def _grid(levels, tokens, dim):
    return sequence_grid(levels, tokens, dim)


def _table_values(grid, positional, rng, width=1):
    """Values that are a function of the key: distinct random entries per key."""
    _, key = context_keys(grid.ids, positional)
    table = rng.permutation(int(key.max()) + 1 + 50)[: int(key.max()) + 1].astype(float)
    if width > 1:
        table = rng.normal(size=(int(key.max()) + 1, width))
    return key, table


@given(grids, st.integers(0, 2 ** 32 - 1))
def test_injective_table_holds_with_its_minimum_gap(spec, seed):
    levels, tokens, dim, positional = spec
    grid, rng = _grid(levels, tokens, dim), np.random.default_rng(seed)
    key, table = _table_values(grid, positional, rng)
    table = table * rng.uniform(0.1, 10)
    report = check_contextual_mapping(table[key], grid.ids, positional)
    assert report.holds and report.well_defined
    # Every pair of distinct keys is either in one context (condition 1) or not (2), so the
    # separation is the smallest gap between distinct table entries.
    assert report.separation == pytest.approx(np.diff(np.sort(table)).min(), rel=1e-12)


@given(grids, st.integers(0, 2 ** 32 - 1))
def test_vector_values_separation_is_min_pairwise_distance(spec, seed):
    levels, tokens, dim, positional = spec
    grid, rng = _grid(levels, tokens, dim), np.random.default_rng(seed)
    key, table = _table_values(grid, positional, rng, width=3)
    report = check_contextual_mapping(table[key], grid.ids, positional)
    d = np.linalg.norm(table[:, None] - table[None], axis=-1)
    d[np.diag_indices_from(d)] = np.inf
    assert report.holds
    assert report.separation == pytest.approx(d.min(), rel=1e-9)


@given(grids, st.integers(0, 2 ** 32 - 1))
def test_a_collision_is_reported_as_failing(spec, seed):
    levels, tokens, dim, positional = spec
    grid, rng = _grid(levels, tokens, dim), np.random.default_rng(seed)
    context, key = context_keys(grid.ids, positional)
    table = rng.permutation(int(key.max()) + 1).astype(float)
    a, b = rng.choice(int(key.max()) + 1, size=2, replace=False)
    table[b] = table[a]                                   # two different keys collide
    report = check_contextual_mapping(table[key], grid.ids, positional)
    assert not report.holds and report.separation == 0.0
    seq_a, seq_b = (np.argwhere(key == k)[0][0] for k in (a, b))
    same_context = bool(context[seq_a] == context[seq_b])
    # A collision inside one context breaks condition 1, across contexts condition 2.
    assert report.condition1 == (not same_context)
    assert report.condition2 == same_context


@given(grids)
def test_token_wise_values_fail_condition_2(spec):
    """Any function of the token alone (the no-mixing MLP) cannot tell contexts apart."""
    levels, tokens, dim, positional = spec
    grid = _grid(levels, tokens, dim)
    values = grid.ids.double() * 1.7 + 0.3
    if positional:
        values = values + 100.0 * torch.arange(tokens)    # knows its position, not the rest
    report = check_contextual_mapping(values, grid.ids, positional)
    assert report.condition1 and not report.condition2 and not report.holds
    assert report.separation_across == 0.0


def test_order_dependent_values_are_not_well_defined_without_positions():
    grid = _grid(3, 3, 1)
    key, table = _table_values(grid, False, np.random.default_rng(0))
    values = table[key] + 1e-3 * np.arange(3)             # depends on where the token sits
    report = check_contextual_mapping(values, grid.ids, positional=False)
    assert not report.well_defined and not report.holds
    assert report.spread > report.tolerance


@given(st.integers(2, 4), st.integers(1, 4))
def test_context_counts_match_combinatorics(levels, tokens):
    grid = _grid(levels, tokens, 1)
    context, key = context_keys(grid.ids, positional=False)
    assert context.max() + 1 == math.comb(levels + tokens - 1, tokens)       # multisets
    # keys = (multiset, member): each multiset contributes its number of distinct members.
    members = sum(len(set(m)) for m in itertools.combinations_with_replacement(range(levels),
                                                                                tokens))
    assert key.max() + 1 == members
    pcontext, pkey = context_keys(grid.ids, positional=True)
    assert pcontext.max() + 1 == levels ** tokens and pkey.max() + 1 == tokens * levels ** tokens


@pytest.mark.parametrize("levels,tokens,dim,positional", [
    (4, 2, 1, False), (4, 3, 1, False), (3, 3, 2, False), (3, 4, 1, False),
    (3, 3, 1, True), (2, 3, 2, True)])
def test_constructed_pom_is_a_contextual_mapping_with_the_proven_separation(levels, tokens, dim,
                                                                            positional):
    grid = _grid(levels, tokens, dim)
    model = ConstructedContextualMap(levels, tokens, dim, positional=positional)
    with torch.no_grad():
        q = model(grid.points)
    report = check_contextual_mapping(q, grid.ids, positional)
    assert report.holds, report.summary()
    # float64 evaluation of an exact bound: allow relative rounding of 1e-9.
    assert report.separation >= model.proven_separation * (1 - 1e-9)


def test_constructed_pom_below_lemma_degree_collides():
    """Degree n - 2 breaks: {0,0,3,3} and {0,1,1,4} share token 0 and p_1, p_2 (n=4, T=5)."""
    grid = _grid(5, 4, 1)
    model = ConstructedContextualMap(5, 4, 1, degree=2)
    with torch.no_grad():
        report = check_contextual_mapping(model(grid.points), grid.ids)
    assert not report.holds and not report.condition2


def test_constructed_pom_matches_its_closed_form():
    """q = c_a + sum_m R_m p_m(t) with t = a + 1, computed directly from the ids."""
    grid = _grid(4, 3, 1)
    model = ConstructedContextualMap(4, 3, 1)
    with torch.no_grad():
        q = model(grid.points)
        c = model.embed(grid.ids.double()[..., None])[..., 0]
    t = grid.ids.double() + 1
    phi = sum(R * (t ** m).sum(1, keepdim=True) for m, R in enumerate(model.place_values, 1))
    torch.testing.assert_close(q, c + phi, rtol=1e-12, atol=1e-9)


@given(st.lists(st.floats(0, 50, allow_nan=False), min_size=1, max_size=20))
def test_gelu_inverse(ys):
    y = torch.tensor(ys, dtype=torch.float64)
    v = gelu_inverse(y)
    assert (v >= 0).all()
    # GELU' >= 1/2 on [0, inf): an error e in y means at most 2e in v; check GELU(v) = y.
    torch.testing.assert_close(torch.nn.functional.gelu(v), y, rtol=1e-12, atol=1e-12)


@given(st.lists(st.integers(-10 ** 4, 10 ** 4), min_size=1, max_size=12, unique=True),
       st.integers(0, 2 ** 32 - 1))
def test_interpolation_net_is_exact_at_its_points(points, seed):
    s = torch.tensor(points, dtype=torch.float64) / 100       # gaps >= 0.01, |s| <= 100
    y = torch.from_numpy(np.random.default_rng(seed).normal(size=(len(points), 2)))
    net = InterpolationNet(s, y)
    # Exact in real arithmetic; in float64 slopes up to ~1e3 over a range of 200 leave
    # rounding far below 1e-9.
    torch.testing.assert_close(net(s[:, None]), y, rtol=0, atol=1e-9)


@given(st.integers(2, 9), st.floats(0, 1, allow_nan=False), st.floats(0.01, 0.99))
def test_ramp_quantiser_equals_floor_outside_boundary_layers(levels, x, eta_fraction):
    step = 1.0 / levels
    eta = eta_fraction * step
    q = RampQuantiser(levels, step, eta)(torch.tensor([x], dtype=torch.float64)).item()
    in_layer = any(b * step - eta < x < b * step for b in range(1, levels))
    if not in_layer:
        assert q == pytest.approx(step * min(math.floor(x / step), levels - 1), abs=1e-12)
    else:
        assert 0 <= q <= 1


def test_bad_inputs_are_rejected():
    grid = _grid(2, 2, 1)
    good = grid.ids.double()
    with pytest.raises(ValueError, match="values must have shape"):
        check_contextual_mapping(good[:, :1], grid.ids)
    with pytest.raises(TypeError, match="integer token ids"):
        check_contextual_mapping(good, grid.ids.double())
    with pytest.raises(TypeError, match="floating point"):
        check_contextual_mapping(grid.ids, grid.ids)
    with pytest.raises(ValueError, match="NaN"):
        check_contextual_mapping(good * float("nan"), grid.ids)
    with pytest.raises(ValueError, match="tolerance"):
        check_contextual_mapping(good, grid.ids, tolerance=-1.0)
    with pytest.raises(TypeError, match="numpy array or torch tensor"):
        check_contextual_mapping([[0.0, 1.0]], grid.ids)
    with pytest.raises(ValueError, match="levels"):
        sequence_grid(0, 2)
    with pytest.raises(ValueError, match="eta"):
        RampQuantiser(3, 0.25, 0.5)
    with pytest.raises(ValueError, match="distinct"):
        InterpolationNet(torch.tensor([1.0, 1.0]), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="y >= 0"):
        gelu_inverse(torch.tensor([-1.0]))
    with pytest.raises(ValueError, match="tokens"):
        ConstructedContextualMap(2, 3)(torch.zeros(1, 2, 1, dtype=torch.float64))


def test_sampled_grid_is_labelled_and_seeded():
    a = sequence_grid(4, 6, 2, max_sequences=100, seed=1)
    b = sequence_grid(4, 6, 2, max_sequences=100, seed=1)
    assert not a.exhaustive and len(a) == 100 and torch.equal(a.ids, b.ids)
    levels = (a.points * 4).round().long()
    assert torch.equal(levels[..., 0] + 4 * levels[..., 1], a.ids)
