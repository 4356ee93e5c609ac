"""Lemma 3's constructed contextual mapping as torch modules (proofs/lemma3_contextual_mapping.md):
quantiser -> token id a -> c_a = GELU^{-1}(a + 1) / alpha (a ReLU net, Lemma A) -> q = c_a + one
residual PoM of degree k >= n-1 with constructed weights. Only token-wise ReLU networks and the
reference ``pomlab.PoM``; run it in float64 (the PoM term grows like T^(k(k+1)/2))."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn import PoM
from ..checks import check_positive_int

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
            raise ValueError(f"x must hold {self.tokens} tokens (the readout's n), "
                             f"got {x.shape[1]}")
        c = self.token_values(x)
        return (c + self.pom(c))[..., 0]
