"""Hypothesis strategies for token-mixer tests (docs/properties.md): tensors come from torch
generators seeded by hypothesis, so failures report the seed; shapes, kinds and configs shrink."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

try:
    from hypothesis import strategies as st
except ImportError as e:                # pragma: no cover - hypothesis is in the dev extra
    raise ImportError("pomlab.testing needs hypothesis: pip install 'hypothesis>=6.100' "
                      "(or pip install -e '.[dev]')") from e

from .checks import check_choice
from .nn import MHA, Polymorpher, PoM
from .nn import masks as _masks

__all__ = ["seeds", "dims", "token_batches", "permutations", "MASK_KINDS", "MaskCase", "masks",
           "block_splits", "MixerConfig", "mixer_configs", "MIXER_KINDS"]

MASK_KINDS = ("none", "causal", "padding", "per_query", "per_query_shared", "int", "blind",
              "block_causal", "BlockCausal")
# not nn.blocks.MIXERS: "none" mixes nothing, the Polymorpher block must keep its PoM's properties
MIXER_KINDS = {"pom": PoM, "mha": MHA, "polymorpher": Polymorpher}


def _strategy(value):
    return value if isinstance(value, st.SearchStrategy) else st.just(value)


def seeds() -> st.SearchStrategy[int]:
    """Seeds for torch generators."""
    return st.integers(0, 2 ** 31 - 1)


def dims(min_dim: int = 1, max_dim: int = 8) -> st.SearchStrategy[int]:
    """Token feature sizes."""
    return st.integers(min_dim, max_dim)


@st.composite
def token_batches(draw, dim=dims(), batch=st.integers(1, 3), tokens=st.integers(1, 9),
                  dtype: torch.dtype = torch.float64, scale: float = 1.0) -> Tensor:
    """(batch, tokens, dim) N(0, scale^2) tokens; each size an int or a strategy."""
    d, b, n = draw(_strategy(dim)), draw(_strategy(batch)), draw(_strategy(tokens))
    gen = torch.Generator().manual_seed(draw(seeds()))
    return scale * torch.randn(b, n, d, dtype=dtype, generator=gen)


def permutations(n: int) -> st.SearchStrategy[Tensor]:
    """Permutations of range(n) as a LongTensor: index the token axis with it, x[:, perm]."""
    return st.permutations(range(n)).map(lambda p: torch.tensor(p, dtype=torch.long))


def block_splits(n: int | None = None, max_frames: int = 6,
                 max_tokens_per_frame: int = 5) -> st.SearchStrategy[tuple[int, int]]:
    """(frames, tokens_per_frame). With n: the splits of n tokens into equal frames."""
    if n is None:
        return st.tuples(st.integers(1, max_frames), st.integers(1, max_tokens_per_frame))
    return st.sampled_from([f for f in range(1, n + 1) if n % f == 0]).map(lambda f: (f, n // f))


@dataclass(frozen=True)
class MaskCase:
    """A mask as a mixer gets it and what it means (``dense`` (batch, M, N): True = visible)."""

    kind: str
    mask: object
    dense: Tensor = field(repr=False)

    def permuted(self, perm: Tensor) -> "MaskCase":
        """The mask P^T M P of tokens permuted by ``perm`` (Prop. 1: f(XP; P^T M P) = f(X; M) P)."""
        dense = self.dense[:, perm][:, :, perm]
        return self if self.mask is None else MaskCase(f"{self.kind} (permuted)", dense, dense)

    def context_permuted(self, perm: Tensor) -> "MaskCase":
        """The mask of context tokens permuted by ``perm`` (a padding mask stays one)."""
        if self.mask is None:
            return self
        dense = self.dense[:, :, perm]
        padding = isinstance(self.mask, Tensor) and self.mask.dim() == 2
        mask = self.mask[:, perm] if padding else dense
        return MaskCase(f"{self.kind} (context permuted)", mask, dense)

    def hidden_from(self, token: int) -> Tensor:
        """(batch, M) bool: the queries whose mask hides context token ``token``."""
        return ~self.dense[:, :, token]


@st.composite
def masks(draw, batch: int, n_query: int, n_context: int | None = None,
          kinds=MASK_KINDS) -> MaskCase:
    """A mask of one of ``kinds`` for ``n_query`` queries on ``n_context`` tokens (default: self-
    mixing): "blind" hides all, "int" is a 0/1 padding mask, block-causal is self-mixing only."""
    n_context = n_query if n_context is None else n_context
    allowed = [k for k in kinds if n_context == n_query or k not in ("block_causal", "BlockCausal")]
    if not allowed:
        raise ValueError(f"no mask kind of {kinds} fits {n_query} queries on {n_context} "
                         f"context tokens")
    kind = draw(st.sampled_from(allowed))
    gen = torch.Generator().manual_seed(draw(seeds()))
    density = draw(st.sampled_from([0.3, 0.6, 0.9]))
    if kind in ("block_causal", "BlockCausal"):
        split = draw(block_splits(n_query))
    mask = {"none": lambda: None, "causal": lambda: "causal",
            "padding": lambda: torch.rand(batch, n_context, generator=gen) < density,
            "int": lambda: (torch.rand(batch, n_context, generator=gen) < density).long(),
            "per_query": lambda: torch.rand(batch, n_query, n_context, generator=gen) < density,
            "per_query_shared": lambda: torch.rand(1, n_query, n_context, generator=gen) < density,
            "blind": lambda: torch.zeros(batch, n_context, dtype=torch.bool),
            "block_causal": lambda: _masks.block_causal(*split)[None],
            "BlockCausal": lambda: _masks.BlockCausal(*split)}[kind]()
    dense = _masks.canonical(mask, batch, n_query, n_context, "cpu")
    dense = (torch.ones(batch, n_query, n_context, dtype=torch.bool) if dense is None
             else dense.expand(batch, n_query, n_context))
    return MaskCase(kind, mask, dense)


@dataclass(frozen=True)
class MixerConfig:
    """One of pomlab's MIXER_KINDS, ``dim`` and its other arguments (sorted (name, value) pairs)."""

    kind: str
    dim: int
    options: tuple = ()

    def build(self, dtype: torch.dtype = torch.float64, seed: int = 0) -> nn.Module:
        """The module, seeded, in ``dtype``; "powers" gets N(0, 1) alpha (~1e-3 hides mixing)."""
        build = MIXER_KINDS[check_choice("kind", self.kind, MIXER_KINDS)]
        torch.manual_seed(seed)
        module = build(self.dim, **dict(self.options)).to(dtype)
        pom = module if isinstance(module, PoM) else getattr(module, "mixer", None)
        if isinstance(pom, PoM) and pom.polynomial == "powers":
            with torch.no_grad():
                pom.alpha.normal_()
        return module


@st.composite
def mixer_configs(draw, kinds=tuple(MIXER_KINDS), dim=None,
                  polynomials=("products", "powers")) -> MixerConfig:
    """Configurations of pomlab's mixers: PoM (dim 1-6, degree 1-4, expansion 1-3, both
    polynomials), MHA (1-4 heads of 1-4 features; with a fixed dim, one of its divisors),
    Polymorpher (dim 2-8, degree 1-3, expansion 1-3)."""
    kind = draw(st.sampled_from(kinds))
    if kind == "mha":
        if dim is None:
            heads, head_dim = draw(st.integers(1, 4)), draw(st.integers(1, 4))
            return MixerConfig("mha", heads * head_dim, (("heads", heads),))
        d = draw(_strategy(dim))
        heads = draw(st.sampled_from([h for h in range(1, min(d, 8) + 1) if d % h == 0]))
        return MixerConfig("mha", d, (("heads", heads),))
    d = draw(_strategy(dim if dim is not None else dims(1, 6) if kind == "pom" else dims(2, 8)))
    options = {"degree": draw(st.integers(1, 4 if kind == "pom" else 3)),
               "expand": draw(st.integers(1, 3)), "polynomial": draw(st.sampled_from(polynomials))}
    return MixerConfig(kind, d, tuple(sorted(options.items())))
