"""The Polynomial Mixer (PoM), reference implementation.

This file is the readable definition that every fast path is tested against; each step
below is one line of SPEC.md §1 ("products" polynomial, the paper's form) or §2 ("powers",
the 2026 variant).

    u = GELU(poly(x))                                   # exact (erf) GELU
    u_1..u_k = split(u, k)                              # k chunks of e·D, in order
    h(x) = [u_1, u_1*u_2, ..., u_1*...*u_k]             # size k·e·D
    H(X) = sum_i m_i h(x_i) / (eps + sum_i m_i)         # mean state (plain mean when unmasked)
    PoM(X)_j = out( sigmoid(gate(x_j)) * H_j )

Self-mixing uses X as both queries and context; cross-mixing takes the state from ``context``.
``step`` carries (H, n) across blocks of tokens: H_t = (n·H + m·Ĥ) / (n + m).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import masks, pom_fast
from ._checks import check_dtype_matches, check_positive_int, check_tokens

EPS = 1e-7
POLYNOMIALS = ("products", "powers")


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """Half-precision inputs build and average the state in float32 (range and accuracy)."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


@dataclass
class PoMState:
    """Running state of ``PoM.step``: the mean state H (B, 1, S) over the n tokens seen so far."""

    H: Tensor
    n: int
    config: tuple  # (dim, degree, expand, polynomial) of the PoM that made it


class PoM(nn.Module):
    """Polynomial Mixer: a linear-time drop-in replacement for multi-head attention.

    Args:
        dim: token feature size D.
        degree: polynomial degree k >= 1.
        expand: expansion e >= 1.
        bias: whether the three Linear layers have a bias.
        polynomial: "products" (the paper, SPEC §1) or "powers" (2026 variant, SPEC §2).

    forward and step run the same math through pom_fast.py when it is enabled; set
    ``fast = False`` on a module to keep it on the code below.
    """

    fast: bool | None = None

    def __init__(self, dim: int, degree: int = 2, expand: int = 2, bias: bool = True,
                 polynomial: str = "products"):
        super().__init__()
        check_positive_int("dim", dim)
        check_positive_int("degree", degree)
        check_positive_int("expand", expand)
        if polynomial not in POLYNOMIALS:
            raise ValueError(f"polynomial must be one of {POLYNOMIALS}, got {polynomial!r}")
        self.dim, self.degree, self.expand, self.polynomial = dim, degree, expand, polynomial

        if polynomial == "products":
            self.state_dim = degree * expand * dim
            self.poly = nn.Linear(dim, self.state_dim, bias=bias)
        else:
            self.state_dim = expand * dim
            self.poly = nn.Linear(dim, self.state_dim, bias=bias)
            # alpha[c, p-1] weighs a(z_c)^p; tiny at start so the mixer begins near zero.
            self.alpha = nn.Parameter(torch.empty(self.state_dim, degree).uniform_(-1e-3, 1e-3))
        self.gate = nn.Linear(dim, self.state_dim, bias=bias)
        self.out = nn.Linear(self.state_dim, dim, bias=bias)

    @property
    def config(self) -> tuple:
        return (self.dim, self.degree, self.expand, self.polynomial)

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, degree={self.degree}, expand={self.expand}, "
                f"polynomial={self.polynomial!r}")

    # --- the three pieces of the definition ----------------------------------------------

    def polynomial_features(self, x: Tensor) -> Tensor:
        """h(x) for every token: (B, N, D) -> (B, N, state_dim), in the accumulation dtype."""
        acc = accumulation_dtype(x.dtype)
        if self.polynomial == "products":
            u = F.gelu(self.poly(x)).to(acc)                 # u = GELU(poly(x)), exact erf
            chunks = u.chunk(self.degree, dim=-1)            # u_1, ..., u_k
            terms = [chunks[0]]
            for u_next in chunks[1:]:
                terms.append(terms[-1] * u_next)             # u_1*...*u_p
            return torch.cat(terms, dim=-1)                  # h(x), size k·e·D
        a = self.poly(x).to(acc)
        a = F.leaky_relu(a, 0.01).clamp(-0.1, 6.0)           # a(z) = clamp(leaky_relu(z), -0.1, 6)
        powers = torch.stack([a ** p for p in range(1, self.degree + 1)], dim=-1)
        return (powers * self.alpha.to(acc)).sum(-1)         # h_c = sum_p alpha_cp a(z_c)^p

    def gate_values(self, x: Tensor) -> Tensor:
        """Token-wise gate: sigmoid (products) or hardsigmoid (powers)."""
        s = self.gate(x)
        return torch.sigmoid(s) if self.polynomial == "products" else F.hardsigmoid(s)

    def mix(self, x: Tensor, H: Tensor) -> Tensor:
        """PoM(X)_j = out(gate(x_j) * H_j); H broadcasts over queries when it has one row."""
        g = self.gate_values(x)
        return self.out(g * H.to(g.dtype))

    @staticmethod
    def aggregate(h: Tensor, mask: Tensor | None) -> Tensor:
        """Mean state. h: (B, N, S); mask: bool (B|1, M|1, N) or None -> H: (B, M|1, S)."""
        if mask is None:
            return h.mean(dim=1, keepdim=True)               # H = (1/n) sum_i h(x_i)
        w = mask.to(h.dtype)
        return (w @ h) / (EPS + w.sum(-1, keepdim=True))     # sum_i m_ji h_i / (eps + sum_i m_ji)

    # --- public entry points --------------------------------------------------------------

    def forward(self, x: Tensor, context: Tensor | None = None, mask=None) -> Tensor:
        """x: (B, M, D) queries. context: (B, N, D) or None (self-mixing, context = x).

        mask: None, "causal", a (B, N) padding mask over the context, or a per-query
        (B|1, M, N) mask; True/1 = may see.
        """
        check_tokens("x", x, self.dim)
        check_dtype_matches("x", x, self)
        if context is None:
            context = x
        else:
            check_tokens("context", context, self.dim, batch=x.shape[0])
            if context.dtype != x.dtype:
                raise TypeError(f"context has dtype {context.dtype}, expected {x.dtype} (x's)")
        if pom_fast.applies(self, x):
            return pom_fast.run_forward(self, x, context, mask)
        m = masks.canonical(mask, x.shape[0], x.shape[1], context.shape[1], x.device)
        H = self.aggregate(self.polynomial_features(context), m)
        return self.mix(x, H)

    def step(self, x: Tensor, state: PoMState | None = None) -> tuple[Tensor, PoMState]:
        """Mix one new block of tokens (B, m, D) with everything seen before.

        Each token of the block sees all earlier blocks and the whole current block, so
        feeding frames one at a time equals ``forward`` with a block-causal mask.
        """
        check_tokens("x", x, self.dim)
        check_dtype_matches("x", x, self)
        if pom_fast.applies(self, x):
            return pom_fast.run_step(self, x, state)
        block_sum = self.polynomial_features(x).sum(dim=1, keepdim=True)   # m·Ĥ
        m = x.shape[1]
        if state is None:
            H, n = block_sum / m, m
        else:
            self._check_state(state, x)
            H = (state.n * state.H + block_sum) / (state.n + m)             # H_t
            n = state.n + m
        return self.mix(x, H), PoMState(H=H, n=n, config=self.config)

    def _check_state(self, state, x: Tensor) -> None:
        if not isinstance(state, PoMState):
            raise TypeError(f"state must be a PoMState returned by PoM.step, got "
                            f"{type(state).__name__}")
        if state.config != self.config:
            raise ValueError(f"state comes from a PoM with (dim, degree, expand, polynomial) = "
                             f"{state.config}, but this PoM has {self.config}")
        if state.H.shape[0] != x.shape[0]:
            raise ValueError(f"state holds batch size {state.H.shape[0]}, but x has batch size "
                             f"{x.shape[0]}")
