"""Multi-head attention with PoM's forward signature: the baseline of every comparison."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from . import masks
from ..checks import check_dtype_matches, check_positive_int, check_tokens


class MHA(nn.Module):
    """Multi-head (self or cross) attention through ``scaled_dot_product_attention``.

    Parameter names follow DiT/timm (``qkv``, ``proj``) so parameter counts match the DiT paper.
    Mask semantics are PoM's: True/1 = may see. A query that may see nothing gets a zero
    attention output (PoM gets a zero state), never NaN.
    """

    def __init__(self, dim: int, heads: int, bias: bool = True):
        super().__init__()
        check_positive_int("dim", dim)
        check_positive_int("heads", heads)
        if dim % heads:
            raise ValueError(f"heads must divide dim, got dim={dim}, heads={heads}")
        self.dim, self.heads = dim, heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.proj = nn.Linear(dim, dim, bias=bias)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, heads={self.heads}"

    def _split_heads(self, t: Tensor) -> Tensor:
        b, n, _ = t.shape
        return t.view(b, n, self.heads, self.dim // self.heads).transpose(1, 2)

    def forward(self, x: Tensor, context: Tensor | None = None, mask=None) -> Tensor:
        check_tokens("x", x, self.dim)
        check_dtype_matches("x", x, self)
        d = self.dim
        if context is None:
            q, k, v = self.qkv(x).split(d, dim=-1)
            n_context = x.shape[1]
        else:
            check_tokens("context", context, d, batch=x.shape[0])
            w, b = self.qkv.weight, self.qkv.bias
            q = F.linear(x, w[:d], None if b is None else b[:d])
            k, v = F.linear(context, w[d:], None if b is None else b[d:]).split(d, dim=-1)
            n_context = context.shape[1]
        q, k, v = map(self._split_heads, (q, k, v))

        if isinstance(mask, str) and mask == "causal" and x.shape[1] == n_context:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            m = masks.canonical(mask, x.shape[0], x.shape[1], n_context, x.device)
            if m is None:
                out = F.scaled_dot_product_attention(q, k, v)
            else:
                sees_any = m.any(-1, keepdim=True)               # (B|1, M|1, 1)
                safe = m | ~sees_any                             # avoid softmax over nothing
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=safe[:, None])
                out = out * sees_any[:, None].to(out.dtype)      # blind queries -> 0
        out = out.transpose(1, 2).reshape(x.shape[0], x.shape[1], d)
        return self.proj(out)
