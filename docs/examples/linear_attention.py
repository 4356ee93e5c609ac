"""A user-written token mixer, checked with pomlab's property checks (docs/properties.md):

    python -m pomlab.properties docs/examples/linear_attention.py:make_mixer --quick

Linear attention (Katharopoulos et al. 2020) with pomlab's mixer signature and mask semantics:

    out_j = proj( phi(q_j) . sum_i m_ji phi(k_i) v_i^T  /  phi(q_j) . sum_i m_ji phi(k_i) ),

phi = elu + 1 > 0. Unmasked mixing and ``step`` run in linear time through the sums
S = sum_i phi(k_i) v_i^T and z = sum_i phi(k_i); masks are applied as a dense (M, N) weight
(enough for a check; a fast version would use prefix sums for causal masks).
"""
import torch
import torch.nn.functional as F
from torch import nn

import pomlab


def phi(t):
    return F.elu(t) + 1


class LinearAttention(nn.Module):
    def __init__(self, dim: int, heads: int = 1):
        super().__init__()
        if dim % heads:
            raise ValueError(f"heads must divide dim, got dim={dim}, heads={heads}")
        self.dim, self.heads = dim, heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def _split(self, t):                       # (B, N, D) -> (B, heads, N, D / heads)
        return t.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def _project(self, x, context):
        w, b = self.qkv.weight, self.qkv.bias
        d = self.dim
        q = F.linear(x, w[:d], b[:d])
        k, v = F.linear(x if context is None else context, w[d:], b[d:]).split(d, dim=-1)
        return phi(self._split(q)), phi(self._split(k)), self._split(v)

    def _out(self, num, den):
        out = num / den.clamp_min(1e-12)           # a query that sees nothing gets 0
        return self.proj(out.transpose(1, 2).flatten(2))

    def forward(self, x, context=None, mask=None):
        q, k, v = self._project(x, context)
        n_context = k.shape[2]
        m = pomlab.masks.canonical(mask, x.shape[0], x.shape[1], n_context, x.device)
        if m is None:                              # linear time: one (d x d) sum per head
            S, z = k.transpose(-1, -2) @ v, k.sum(2, keepdim=True)
            return self._out(q @ S, (q * z).sum(-1, keepdim=True))
        weights = (q @ k.transpose(-1, -2)) * m[:, None].to(q.dtype)     # (B, H, M, N)
        return self._out(weights @ v, weights.sum(-1, keepdim=True))

    def step(self, x, state=None):
        """One block of tokens: each sees the earlier blocks and the whole block."""
        q, k, v = self._project(x, None)
        S, z = k.transpose(-1, -2) @ v, k.sum(2, keepdim=True)
        if state is not None:
            S, z = S + state[0], z + state[1]
        return self._out(q @ S, (q * z).sum(-1, keepdim=True)), (S, z)


def make_mixer(dim: int) -> LinearAttention:
    """The factory the command calls: dim -> mixer."""
    return LinearAttention(dim, heads=4 if dim % 4 == 0 else 1)
