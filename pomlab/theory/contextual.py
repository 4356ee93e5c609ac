"""Contextual mapping: Yun et al.'s (2020) Definition 3.1 checked on finite grids of token
sequences, and Lemma 3's construction as torch modules. Values of different keys must differ;
without positions the key of token i is (multiset of L, id of L_i), as an equivariant map cannot
tell permutations or equal tokens apart (their Lemma 6); with positions it is (L, i).
Details: docs/theory.md."""
from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import check_number, check_positive_int
from ..nn import PoM

# Differences, not |a|^2 + |b|^2 - 2ab: small gaps between large values must stay exact.
EXACT = "donot_use_mm_for_euclid_dist"


@dataclass(frozen=True)
class SequenceGrid:
    """Sequences of grid points: `points` (N, tokens, dim) and their token `ids` (N, tokens).
    Point g / levels of [0, 1)^dim has id sum_j g_j levels^j (Yun et al.'s u^T L_{:,i})."""

    points: Tensor
    ids: Tensor
    levels: int
    dim: int
    tokens: int
    exhaustive: bool

    @property
    def alphabet(self) -> int:
        return self.levels ** self.dim

    def __len__(self) -> int:
        return self.points.shape[0]


def sequence_grid(levels: int, tokens: int, dim: int = 1, max_sequences: int = 20000,
                  seed: int = 0, dtype: torch.dtype = torch.float64) -> SequenceGrid:
    """Every sequence of `tokens` points of the grid of [0, 1)^dim, or a sample of max_sequences."""
    for name, value in (("levels", levels), ("tokens", tokens), ("dim", dim),
                        ("max_sequences", max_sequences)):
        check_positive_int(name, value)
    alphabet, total = levels ** dim, levels ** (dim * tokens)
    if total <= max_sequences:
        ids = torch.tensor(list(itertools.product(range(alphabet), repeat=tokens)),
                           dtype=torch.long).reshape(total, tokens)
    else:
        gen = torch.Generator().manual_seed(seed)
        ids = torch.randint(alphabet, (max_sequences, tokens), generator=gen)
    digits = torch.stack([(ids // levels ** j) % levels for j in range(dim)], dim=-1)
    return SequenceGrid(points=digits.to(dtype) / levels, ids=ids, levels=levels, dim=dim,
                        tokens=tokens, exhaustive=total <= max_sequences)


@dataclass(frozen=True)
class ContextualMappingReport:
    positional: bool
    holds: bool
    well_defined: bool
    condition1: bool
    condition2: bool
    separation: float
    separation_within: float
    separation_across: float
    relative_separation: float
    spread: float
    scale: float
    tolerance: float
    n_sequences: int
    n_contexts: int
    n_keys: int
    closest: tuple | None        # (sequence a, position i, sequence b, position j) at the minimum

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        mode = "positional" if self.positional else "permutation"
        return (f"contextual mapping {'holds' if self.holds else 'FAILS'} ({mode}): separation "
                f"{self.separation:.4g} (within {self.separation_within:.4g}, across "
                f"{self.separation_across:.4g}, relative {self.relative_separation:.3g}), spread "
                f"{self.spread:.2g}, tolerance {self.tolerance:.2g}; {self.n_sequences} sequences, "
                f"{self.n_contexts} contexts, {self.n_keys} keys")


def _as_numpy(name: str, x, integer: bool) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu()
        x = (x.double() if x.dtype in (torch.float16, torch.bfloat16) else x).numpy()
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}")
    if integer and not np.issubdtype(x.dtype, np.integer):
        raise TypeError(f"{name} must hold integer token ids, got dtype {x.dtype}")
    if not integer and not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"{name} must be floating point, got dtype {x.dtype}")
    return x


def context_keys(token_ids, positional: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(context (N,), key (N, n)) integer labels: what Definition 3.1 must tell apart; context
    and key are (multiset of ids, (multiset, id)), or with positional (sequence, (sequence, i))."""
    ids = _as_numpy("token_ids", token_ids, integer=True)
    if ids.ndim != 2:
        raise ValueError(f"token_ids must have shape (sequences, tokens), got {ids.shape}")
    n_seq, n_tok = ids.shape
    canonical = ids if positional else np.sort(ids, axis=1)
    context = np.unique(canonical, axis=0, return_inverse=True)[1].reshape(-1)
    second = np.broadcast_to(np.arange(n_tok), ids.shape) if positional else ids
    pairs = np.stack([np.repeat(context, n_tok), second.reshape(-1)], axis=1)
    return context, np.unique(pairs, axis=0, return_inverse=True)[1].reshape(n_seq, n_tok)


def _min_distance_across(reps: Tensor, ctx: Tensor, chunk: int = 512):
    """Smallest distance between representatives of different contexts, and its pair."""
    best, pair = float("inf"), None
    for start in range(0, reps.shape[0], chunk):
        d = torch.cdist(reps[start:start + chunk], reps, compute_mode=EXACT)
        d.masked_fill_(ctx[start:start + chunk, None] == ctx[None, :], float("inf"))
        value, flat = d.view(-1).min(0)
        if value.item() < best:
            best = value.item()
            pair = (start + flat.item() // reps.shape[0], flat.item() % reps.shape[0])
    return best, pair


def check_contextual_mapping(values, token_ids, positional: bool = False,
                             tolerance: float | None = None) -> ContextualMappingReport:
    """Check Definition 3.1 on a finite grid. values: (N, n) scalars or (N, n, m) vectors, the
    context value of every token of every sequence; token_ids: (N, n) integer ids of the input
    tokens. Distances <= tolerance count as equal (default: 64 machine epsilons of the values'
    dtype times max(1, largest |value|))."""
    vals = _as_numpy("values", values, integer=False)
    ids = _as_numpy("token_ids", token_ids, integer=True)
    if vals.ndim == 2:
        vals = vals[..., None]
    if vals.ndim != 3 or vals.shape[:2] != ids.shape:
        raise ValueError(f"values must have shape {tuple(ids.shape)} or {tuple(ids.shape)} + (m,) "
                         f"to match token_ids, got {values.shape}")
    if not np.isfinite(vals).all():
        raise ValueError("values contain NaN or inf")
    if tolerance is None:
        tolerance = 64 * float(np.finfo(vals.dtype).eps) * max(1.0, float(np.abs(vals).max()))
    check_number("tolerance", tolerance, minimum=0)
    n_seq, n_tok, m = vals.shape
    context, key = context_keys(ids, positional)
    n_keys = int(key.max()) + 1

    v = torch.from_numpy(vals.astype(np.float64))
    flat_key = torch.from_numpy(key.reshape(-1))
    counts = torch.bincount(flat_key, minlength=n_keys).to(v.dtype)
    reps = torch.zeros(n_keys, m, dtype=v.dtype).index_add_(0, flat_key, v.reshape(-1, m))
    reps /= counts[:, None]
    spread = float((v.reshape(-1, m) - reps[flat_key]).norm(dim=-1).max())
    scale = float((reps - reps.mean(0)).norm(dim=-1).max()) or 1.0

    # Condition 1: within each sequence, entries with different keys.
    within = torch.cdist(v, v, compute_mode=EXACT)                    # (N, n, n)
    k = torch.from_numpy(key)
    within.masked_fill_(k[:, :, None] == k[:, None, :], float("inf"))
    sep_within = float(within.min()) if n_tok > 1 else float("inf")

    # Condition 2: across contexts, on one representative per key.
    key_context = torch.empty(n_keys, dtype=torch.long)
    key_context[flat_key] = torch.from_numpy(np.repeat(context, n_tok))
    sep_across, pair = _min_distance_across(reps, key_context)

    closest = None
    _, first = np.unique(key.reshape(-1), return_index=True)          # one example per key
    if sep_within <= sep_across and np.isfinite(sep_within):
        s, i, j = np.unravel_index(int(within.view(-1).argmin()), within.shape)
        closest = (int(s), int(i), int(s), int(j))
    elif pair is not None:
        a, b = first[pair[0]], first[pair[1]]
        closest = (int(a // n_tok), int(a % n_tok), int(b // n_tok), int(b % n_tok))

    separation = min(sep_within, sep_across)
    well_defined = spread <= tolerance
    cond1, cond2 = sep_within > tolerance, sep_across > tolerance
    return ContextualMappingReport(
        positional=positional, holds=well_defined and cond1 and cond2,
        well_defined=well_defined, condition1=cond1, condition2=cond2,
        separation=separation, separation_within=sep_within, separation_across=sep_across,
        relative_separation=separation / scale, spread=spread, scale=scale,
        tolerance=float(tolerance), n_sequences=n_seq, n_contexts=int(context.max()) + 1,
        n_keys=n_keys, closest=closest)


# Lemma 3's construction (proofs/lemma3_contextual_mapping.md): quantiser -> token id a -> c_a =
# GELU^{-1}(a + 1) / alpha (a ReLU net, Lemma A) -> q = c_a + one residual PoM of degree k >= n-1
# with constructed weights; only token-wise ReLU nets and pomlab.PoM. Float64: Phi ~ T^(k(k+1)/2).
# max of GELU' on [0, inf), reached at sqrt(2) (proofs/check_gelu.py derives it).
G_STAR = (1 + math.erf(1.0)) / 2 + 1 / (math.e * math.sqrt(math.pi))


def gelu_inverse(y: Tensor, iterations: int = 80) -> Tensor:
    """v >= 0 with GELU(v) = y, for y >= 0 (GELU is an increasing bijection of [0, inf)):
    bisection on [0, 2y + 1] (GELU(v) >= v/2 there) then two Newton steps (GELU' >= 1/2)."""
    if (y < 0).any():
        raise ValueError("gelu_inverse needs y >= 0 (GELU is invertible on [0, inf) only)")
    lo, hi = torch.zeros_like(y), 2 * y + 1
    for _ in range(iterations):
        mid = (lo + hi) / 2
        below = F.gelu(mid) < y
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    v = (lo + hi) / 2
    for _ in range(2):
        phi = torch.exp(-v ** 2 / 2) / math.sqrt(2 * math.pi)
        v = v - (F.gelu(v) - y) / (0.5 * (1 + torch.erf(v / math.sqrt(2))) + v * phi)
    return v


class InterpolationNet(nn.Module):
    """Lemma A: one hidden ReLU layer of width N - 1 through N points (s_m, y_m) exactly:
    psi(s) = y_1 + sum_m (sigma_m - sigma_{m-1}) ReLU(s - s_m), sigma the slopes (sigma_0 = 0)."""

    def __init__(self, points: Tensor, values: Tensor):
        super().__init__()
        if points.dim() != 1 or values.shape[0] != points.shape[0]:
            raise ValueError(f"points must be (N,) and values (N,) or (N, out), got "
                             f"{tuple(points.shape)} and {tuple(values.shape)}")
        order = points.argsort()
        s, y = points[order], values[order].reshape(points.shape[0], -1)
        if (s[1:] == s[:-1]).any():
            raise ValueError("points must be distinct")
        hidden = max(1, s.shape[0] - 1)
        slopes = (y[1:] - y[:-1]) / (s[1:] - s[:-1])[:, None]
        changes = slopes - torch.cat([torch.zeros_like(slopes[:1]), slopes[:-1]])
        self.fc1 = nn.Linear(1, hidden).to(s.dtype)
        self.fc2 = nn.Linear(hidden, y.shape[1]).to(s.dtype)
        with torch.no_grad():
            self.fc1.weight.fill_(1.0)
            self.fc1.bias.copy_(-s[:hidden])
            self.fc2.weight.zero_()
            self.fc2.weight[:, :changes.shape[0]] = changes.T
            self.fc2.bias.copy_(y[0])

    def forward(self, s: Tensor) -> Tensor:
        return self.fc2(F.relu(self.fc1(s)))


class RampQuantiser(nn.Module):
    """Token-wise ReLU quantiser Q(x) = step * sum_b ramp((x - b step + eta) / eta), b = 1..L-1:
    step * min(floor(x / step), L - 1) on [0, L step] outside the boundary layers (b step - eta,
    b step) (proofs/check_tokenwise.py); grid points are mapped exactly."""

    def __init__(self, n_levels: int, step: float, eta: float):
        super().__init__()
        check_positive_int("n_levels", n_levels)
        if not 0 < eta < step:
            raise ValueError(f"eta must be in (0, step={step}), got {eta}")
        self.step, self.eta = step, eta
        self.register_buffer("breaks", step * torch.arange(1, n_levels, dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        s = (x[..., None] - self.breaks.to(x.dtype) + self.eta) / self.eta
        return self.step * (F.relu(s) - F.relu(s - 1)).sum(-1)


def lemma_degree(tokens: int) -> int:
    """The degree Lemma 3 needs for n tokens: n - 1 (at least 1)."""
    return max(1, tokens - 1)


def readout_place_values(tokens: int, alphabet: int, degree: int) -> list[int]:
    """R_1..R_k: R_1 = 1, R_{m+1} = R_m (n (T^m - 1) + 1), exact integers."""
    R = [1]
    for m in range(1, degree):
        R.append(R[-1] * (tokens * (alphabet ** m - 1) + 1))
    return R


class ConstructedContextualMap(nn.Module):
    """q(L)_i = c_{a_i} + PoM(c)_i of Lemma 3, for sequences of `tokens` points of [0, 1)^dim.
    positional=True adds the position i to every coordinate of token i (Theorem 2''s encoding E)
    and quantises on [0, tokens)^dim. ``proven_separation``: Lemma 3's bound 1 / (G* alpha)."""

    def __init__(self, levels: int, tokens: int, dim: int = 1, positional: bool = False,
                 degree: int | None = None, eta: float | None = None):
        super().__init__()
        for name, value in (("levels", levels), ("tokens", tokens), ("dim", dim)):
            check_positive_int(name, value)
        self.levels, self.tokens, self.dim, self.positional = levels, tokens, dim, positional
        self.degree = (lemma_degree(tokens) if degree is None
                       else check_positive_int("degree", degree))
        self.base = levels * tokens if positional else levels       # levels per coordinate
        self.alphabet = self.base ** dim
        step = 1.0 / levels
        self.quantise = RampQuantiser(self.base, step, eta if eta is not None else step / 4)
        self.token_id = nn.Linear(dim, 1, bias=False).double()
        with torch.no_grad():
            self.token_id.weight.copy_(levels * self.base ** torch.arange(dim, dtype=torch.float64))
        T = self.alphabet
        self.alpha = 4 * T + 2
        ids = torch.arange(T, dtype=torch.float64)
        self.embed = InterpolationNet(ids, gelu_inverse(ids + 1) / self.alpha)
        self.place_values = readout_place_values(tokens, T, self.degree)
        self.pom = PoM(1, degree=self.degree, expand=1).double()
        with torch.no_grad():
            self.pom.poly.weight.fill_(float(self.alpha))
            self.pom.poly.bias.zero_()
            self.pom.gate.weight.zero_()                  # sigmoid(0) = 1/2 for every token
            self.pom.gate.bias.zero_()
            self.pom.out.weight.copy_(2.0 * tokens * torch.tensor(
                [self.place_values], dtype=torch.float64))
            self.pom.out.bias.zero_()
        self.proven_separation = 1.0 / (G_STAR * self.alpha)

    def token_values(self, x: Tensor) -> Tensor:
        """c_{a_i} for every token: (B, n, dim) -> (B, n, 1)."""
        if self.positional:
            x = x + torch.arange(x.shape[1], dtype=x.dtype, device=x.device)[:, None]
        return self.embed(self.token_id(self.quantise(x)))

    def forward(self, x: Tensor) -> Tensor:
        """(B, n, dim) points of [0, 1)^dim -> (B, n) context values q."""
        if x.shape[1] != self.tokens:
            raise ValueError(f"x must hold {self.tokens} tokens (readout's n), got {x.shape[1]}")
        c = self.token_values(x)
        return (c + self.pom(c))[..., 0]
