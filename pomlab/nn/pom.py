"""The Polynomial Mixer (PoM), reference implementation.

This file is the readable definition that every fast path is tested against; each step
below is one line of docs/pom.md §1 ("products" polynomial, the paper's form) or §2 ("powers",
the 2026 variant).

    u = GELU(poly(x))                                   # exact (erf) GELU
    u_1..u_k = split(u, k)                              # k chunks of e·D, in order
    h(x) = [u_1, u_1*u_2, ..., u_1*...*u_k]             # size k·e·D
    H(X) = sum_i m_i h(x_i) / (eps + sum_i m_i)         # mean state (plain mean when unmasked)
    PoM(X)_j = out( sigmoid(gate(x_j)) * H_j )

Self-mixing uses X as both queries and context; cross-mixing takes the state from ``context``.
``step`` carries (H, n) across blocks of tokens: H_t = (n·H + m·Ĥ) / (n + m).

Options of the authors' 2026 ``pom`` package (defaults keep the definition above):

* ``selection_heads`` G > 1: the gate has G channels, gate_g(x) scales the g-th block of S/G
  consecutive state channels (``out(gate(x_j) ⊗ 1_{S/G} * H_j)``).
* ``groups`` > 1: ``poly`` is block-diagonal (a grouped 1x1 convolution): output block g of
  S/groups channels reads input block g of D/groups features.
* ``rope`` "1d" / "2d": rotary position embedding of the features after the polynomial and
  before the mean, h̃_i = R(p_i) h(x_i), and of the gate, g̃_j = R(p_j) gate(x_j): with the
  rotate-half convention channel c pairs with c + C/2 (1d; angle p·θ_c, θ_c = base^(-c/(C/2)));
  2d splits the channels in a row half and a column half, each rotated the same way by its
  coordinate with base^(-c/(C/4)). With G selection heads the gate's pair c takes the
  frequency of the first pair of head c (every (S/G)/2-th, resp. (S/G)-th, frequency).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import masks, pom_fast
from ..checks import check_choice, check_dtype_matches, check_positive_int, check_tokens
from .pom_fast import accumulation_dtype   # half precision accumulates in float32

EPS = 1e-7                                 # the masked mean's eps, docs/pom.md
POLYNOMIALS = ("products", "powers")
ROPES = (None, "1d", "2d")


@dataclass
class PoMState:
    """Running state of ``PoM.step``: the mean state H (B, 1, S) over the n tokens seen so far."""

    H: Tensor
    n: int
    config: tuple  # (dim, degree, expand, polynomial[, heads, groups, rope]) of its PoM


class GroupedLinear(nn.Module):
    """Block-diagonal Linear: output block g (out/groups) reads input block g (in/groups); the
    weight has Conv1d's layout (out, in/groups) so grouped 1x1 convolutions load directly."""

    def __init__(self, in_features: int, out_features: int, groups: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features, self.groups = in_features, out_features, groups
        bound = (groups / in_features) ** 0.5          # nn.Linear's/Conv1d's default init
        self.weight = nn.Parameter(torch.empty(out_features, in_features // groups)
                                   .uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound)) \
            if bias else None

    def forward(self, x: Tensor) -> Tensor:
        g = self.groups
        w = self.weight.view(g, self.out_features // g, self.in_features // g)
        y = torch.einsum("...gi,goi->...go", x.unflatten(-1, (g, -1)), w).flatten(-2)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"groups={self.groups}, bias={self.bias is not None}")


def rotary(x: Tensor, positions: Tensor, kind: str, base: float = 10000.0,
           table_channels: int | None = None, stride: int = 1) -> Tensor:
    """Rotate-half RoPE of x (..., N, C) at positions (N,) ("1d") or (N, 2) rows/cols ("2d").

    Frequencies base^(-c/(C'/2)) (1d) or base^(-c/(C'/4)) (2d) of a table built for C' =
    table_channels (default C), every stride-th one: the gate of G selection heads uses the
    first frequency of each head (stride = channels per head / 2 in 1d, per head in 2d).
    """
    C = x.shape[-1]
    parts = 2 if kind == "1d" else 4
    width = (table_channels or C) // parts                       # the full table's width
    inv_freq = 1.0 / base ** (torch.arange(width, dtype=torch.float32, device=x.device) / width)
    inv_freq = inv_freq[::stride][:C // parts]
    if kind == "1d":
        axes = [positions.to(torch.float32)]
    else:
        axes = [positions[:, 0].to(torch.float32), positions[:, 1].to(torch.float32)]
    out, q = [], C // parts
    for i, pos in enumerate(axes):
        angle = torch.outer(pos, inv_freq)
        cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
        a, b = x[..., 2 * i * q:(2 * i + 1) * q], x[..., (2 * i + 1) * q:(2 * i + 2) * q]
        out += [a * cos - b * sin, b * cos + a * sin]
    return torch.cat(out, dim=-1)


class PoM(nn.Module):
    """Polynomial Mixer: a linear-time drop-in replacement for multi-head attention.

    Args:
        dim: token feature size D.
        degree: polynomial degree k >= 1.
        expand: expansion e >= 1.
        bias: whether the three Linear layers have a bias.
        polynomial: "products" (the paper, docs/pom.md §1) or "powers" (2026 variant, docs/pom.md §2).
        selection_heads: gate channels G (1: one per state channel, the paper's gate).
        groups: block-diagonal ``poly`` with this many groups (1: dense).
        rope: None, "1d" or "2d": rotary position embedding of features and gate (module doc);
            forward/step then take ``positions`` ((M,) ints, or (M, 2) rows/cols for "2d").
        rope_base: the RoPE frequency base.

    forward and step run the same math through pom_fast.py (the leaf functions it is tested
    against this file with) unless ``pom_fast.implementation("reference")`` or
    ``POMLAB_FAST=reference`` says otherwise; with a 2026 option set, the code below runs.
    """

    def __init__(self, dim: int, degree: int = 2, expand: int = 2, bias: bool = True,
                 polynomial: str = "products", selection_heads: int = 1, groups: int = 1,
                 rope: str | None = None, rope_base: float = 10000.0):
        super().__init__()
        check_positive_int("dim", dim)
        check_positive_int("degree", degree)
        check_positive_int("expand", expand)
        check_positive_int("selection_heads", selection_heads)
        check_positive_int("groups", groups)
        check_choice("polynomial", polynomial, POLYNOMIALS)
        check_choice("rope", rope, ROPES)
        self.dim, self.degree, self.expand, self.polynomial = dim, degree, expand, polynomial
        self.selection_heads, self.groups, self.rope = selection_heads, groups, rope
        self.rope_base = float(rope_base)
        self.state_dim = (degree if polynomial == "products" else 1) * expand * dim
        self._check_options()

        if groups == 1:
            self.poly = nn.Linear(dim, self.state_dim, bias=bias)
        else:
            self.poly = GroupedLinear(dim, self.state_dim, groups, bias=bias)
        if polynomial == "powers":
            # alpha[c, p-1] weighs a(z_c)^p; tiny at start so the mixer begins near zero.
            self.alpha = nn.Parameter(torch.empty(self.state_dim, degree).uniform_(-1e-3, 1e-3))
        gate_dim = self.state_dim if selection_heads == 1 else selection_heads
        self.gate = nn.Linear(dim, gate_dim, bias=bias)
        self.out = nn.Linear(self.state_dim, dim, bias=bias)

    def _check_options(self) -> None:
        S, G = self.state_dim, self.selection_heads
        if S % G:
            raise ValueError(f"selection_heads={G} must divide the state size {S}")
        if self.dim % self.groups or S % self.groups:
            raise ValueError(f"groups={self.groups} must divide dim={self.dim} and the state "
                             f"size {S}")
        if self.rope is not None:
            parts = 2 if self.rope == "1d" else 4
            if S % parts or (G > 1 and (G % parts or S // G < parts)):
                raise ValueError(f"rope={self.rope!r} needs the state size {S} and the "
                                 f"selection heads {G} (when > 1) to be multiples of {parts}, "
                                 f"with at least {parts} state channels per head")

    @property
    def defaults_only(self) -> bool:
        """Whether the 2026 options are at their defaults (the fast path's domain)."""
        return self.selection_heads == 1 and self.groups == 1 and self.rope is None

    @property
    def config(self) -> tuple:
        base = (self.dim, self.degree, self.expand, self.polynomial)
        return base if self.defaults_only else base + (self.selection_heads, self.groups,
                                                       self.rope)

    def extra_repr(self) -> str:
        extra = "" if self.defaults_only else (
            f", selection_heads={self.selection_heads}, groups={self.groups}, rope={self.rope!r}")
        return (f"dim={self.dim}, degree={self.degree}, expand={self.expand}, "
                f"polynomial={self.polynomial!r}{extra}")

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

    def gate_values(self, x: Tensor, positions: Tensor | None = None) -> Tensor:
        """Token-wise gate: sigmoid (products) or hardsigmoid (powers); rotated by the query
        positions with RoPE; one value per selection head, repeated over its state channels."""
        s = self.gate(x)
        g = torch.sigmoid(s) if self.polynomial == "products" else F.hardsigmoid(s)
        G = self.selection_heads
        if self.rope is not None:
            per_head = self.state_dim // G
            stride = 1 if G == 1 else (per_head // 2 if self.rope == "1d" else per_head)
            g = rotary(g, positions, self.rope, self.rope_base, self.state_dim, stride)
        return g if G == 1 else g.repeat_interleave(self.state_dim // G, dim=-1)

    def mix(self, x: Tensor, H: Tensor, positions: Tensor | None = None) -> Tensor:
        """PoM(X)_j = out(gate(x_j) * H_j); H broadcasts over queries when it has one row."""
        g = self.gate_values(x, positions)
        return self.out(g * H.to(g.dtype))

    @staticmethod
    def aggregate(h: Tensor, mask: Tensor | None) -> Tensor:
        """Mean state. h: (B, N, S); mask: bool (B|1, M|1, N) or None -> H: (B, M|1, S)."""
        if mask is None:
            return h.mean(dim=1, keepdim=True)               # H = (1/n) sum_i h(x_i)
        w = mask.to(h.dtype)
        return (w @ h) / (EPS + w.sum(-1, keepdim=True))     # sum_i m_ji h_i / (eps + sum_i m_ji)

    # --- public entry points --------------------------------------------------------------

    def forward(self, x: Tensor, context: Tensor | None = None, mask=None,
                positions: Tensor | None = None,
                context_positions: Tensor | None = None) -> Tensor:
        """x: (B, M, D) queries. context: (B, N, D) or None (self-mixing, context = x).

        mask: None, "causal", a (B, N) padding mask over the context, or a per-query
        (B|1, M, N) mask; True/1 = may see.
        positions / context_positions (rope only): token positions, (M,) / (N,) ints for "1d"
        (default 0, 1, ...), (M, 2) / (N, 2) rows and columns for "2d" (required); self-mixing
        uses ``positions`` for the context too.
        """
        check_tokens("x", x, self.dim)
        check_dtype_matches("x", x, self)
        self_mixing = context is None
        if context is None:
            context = x
        else:
            check_tokens("context", context, self.dim, batch=x.shape[0])
            if context.dtype != x.dtype:
                raise TypeError(f"context has dtype {context.dtype}, expected {x.dtype} (x's)")
        if self.rope is None:
            if positions is not None or context_positions is not None:
                raise ValueError("positions are for rope='1d'/'2d'; this PoM has rope=None")
        else:
            positions = self._positions("positions", positions, x.shape[1], x.device)
            if context_positions is None and self_mixing:
                context_positions = positions
            context_positions = self._positions("context_positions", context_positions,
                                                context.shape[1], x.device)
        if self.defaults_only and pom_fast.applies(x):
            return pom_fast.forward(x, context, mask, self._weights())
        m = masks.canonical(mask, x.shape[0], x.shape[1], context.shape[1], x.device)
        h = self.polynomial_features(context)
        if self.rope is not None:
            h = rotary(h, context_positions, self.rope, self.rope_base)     # h̃_i = R(p_i) h_i
        return self.mix(x, self.aggregate(h, m), positions)

    def _positions(self, name: str, positions, n: int, device, start: int = 0) -> Tensor:
        if positions is None:
            if self.rope == "2d":
                raise ValueError(f"{name}: rope='2d' needs (tokens, 2) row/column positions")
            return torch.arange(start, start + n, device=device)
        if not isinstance(positions, Tensor) or positions.dtype.is_floating_point:
            raise TypeError(f"{name} must be an integer tensor")
        shape = (n,) if self.rope == "1d" else (n, 2)
        if tuple(positions.shape) != shape:
            raise ValueError(f"{name} must have shape {shape} for rope={self.rope!r}, got "
                             f"{tuple(positions.shape)}")
        return positions.to(device)

    def step(self, x: Tensor, state: PoMState | None = None,
             positions: Tensor | None = None) -> tuple[Tensor, PoMState]:
        """Mix one new block of tokens (B, m, D) with everything seen before.

        Each token of the block sees all earlier blocks and the whole current block, so
        feeding frames one at a time equals ``forward`` with a block-causal mask.
        positions (rope only): the block's positions; "1d" defaults to n, ..., n + m - 1
        after the n tokens already seen.
        """
        check_tokens("x", x, self.dim)
        check_dtype_matches("x", x, self)
        if state is not None:
            self._check_state(state, x)
        if self.rope is None and positions is not None:
            raise ValueError("positions are for rope='1d'/'2d'; this PoM has rope=None")
        m = x.shape[1]
        n = m if state is None else state.n + m
        if self.defaults_only and pom_fast.applies(x):
            y, H = pom_fast.step(x, None if state is None else (state.H, state.n), self._weights())
            return y, PoMState(H=H, n=n, config=self.config)
        h = self.polynomial_features(x)
        if self.rope is not None:
            positions = self._positions("positions", positions, m, x.device,
                                        start=0 if state is None else state.n)
            h = rotary(h, positions, self.rope, self.rope_base)
        block_sum = h.sum(dim=1, keepdim=True)                              # m·Ĥ
        if state is None:
            H = block_sum / m
        else:
            H = (state.n * state.H + block_sum) / n                         # H_t
        return self.mix(x, H, positions), PoMState(H=H, n=n, config=self.config)

    def _weights(self) -> pom_fast.Weights:
        return pom_fast.Weights(self.poly.weight, self.poly.bias, self.gate.weight,
                                self.gate.bias, self.out.weight, self.out.bias,
                                self.alpha if self.polynomial == "powers" else None,
                                self.degree, EPS)

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
