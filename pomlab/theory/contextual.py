"""Contextual-mapping checker (Yun et al. 2020, Definition 3.1) for token-wise context values.

Given context values q(L) for every sequence L of a finite grid (one scalar or one vector
per token), the checker decides whether q is a contextual mapping and measures by how much:

1. for any L, the entries of q(L) are all distinct;
2. for L != L', all entries of q(L) and q(L') are distinct.

How permutations and positions are handled (``positional``):

* ``positional=False`` (permutation-equivariant mixers, no positional encoding): a sequence
  is known only up to the order of its tokens, so the *context* of L is its multiset of
  tokens and the *key* of entry i is (multiset(L), token id of L_i). Condition 1 is checked
  for tokens with different ids (equal tokens of an equivariant map necessarily get equal
  values); condition 2 for sequences that are not permutations of each other (as in Yun et
  al.'s Lemma 6). The checker also requires q to be *well defined* on keys: q(LP) = q(L)P and
  equal tokens get equal values, up to ``tolerance``.
* ``positional=True`` (inputs L + E with a positional encoding): Definition 3.1 verbatim. The
  context is the sequence itself and the key of entry i is (L, i).

Distances are Euclidean (absolute values for scalars). ``separation`` is the smallest
distance between values of different keys; ``relative_separation`` divides it by the radius
of the value cloud, so trained and constructed maps of different scales can be compared.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["ContextualMappingReport", "check_contextual_mapping", "context_keys"]

# Differences, not |a|^2 + |b|^2 - 2ab: small gaps between large values must stay exact.
EXACT = "donot_use_mm_for_euclid_dist"


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
        verdict = "holds" if self.holds else "FAILS"
        return (f"contextual mapping {verdict} ({mode}): separation {self.separation:.4g} "
                f"(within {self.separation_within:.4g}, across {self.separation_across:.4g}, "
                f"relative {self.relative_separation:.3g}), spread {self.spread:.2g}, "
                f"tolerance {self.tolerance:.2g}; {self.n_sequences} sequences, "
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
    """(context (N,), key (N, n)) integer labels: what Definition 3.1 must tell apart.

    positional=False: context = multiset of ids, key = (multiset, id).
    positional=True:  context = the sequence,    key = (sequence, position).
    """
    ids = _as_numpy("token_ids", token_ids, integer=True)
    if ids.ndim != 2:
        raise ValueError(f"token_ids must have shape (sequences, tokens), got {ids.shape}")
    n_seq, n_tok = ids.shape
    canonical = ids if positional else np.sort(ids, axis=1)
    _, context = np.unique(canonical, axis=0, return_inverse=True)
    context = context.reshape(-1)
    second = np.broadcast_to(np.arange(n_tok), ids.shape) if positional else ids
    pairs = np.stack([np.repeat(context, n_tok), second.reshape(-1)], axis=1)
    _, key = np.unique(pairs, axis=0, return_inverse=True)
    return context, key.reshape(n_seq, n_tok)


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
    """Check Definition 3.1 on a finite grid.

    values: (N, n) scalars or (N, n, m) vectors, the context value of every token of every
    sequence; token_ids: (N, n) integer ids of the (quantised) input tokens.
    tolerance: distances <= tolerance count as equal; default 64 machine epsilons of the
    values' dtype times max(1, largest |value|).
    """
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
    elif tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
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
