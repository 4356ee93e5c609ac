"""Fast PoM: the function of ``pom.py``, computed with fewer passes over memory and less state.

Leaf functions over tensors: ``pom.py`` calls :func:`forward` / :func:`step` with its inputs
(already checked) and its :class:`Weights`; nothing here imports the module class. The math is
the reference's and is tested against it (values and gradients in float64, every mask form,
both polynomials, cross-mixing, ``step``). What differs is the schedule:

* Two custom autograd Functions own the three matrix products. ``_State`` maps context tokens
  to the state H; ``_Mix`` maps queries and H to the output. They save z = poly(c) and the
  gate g = sigmoid(gate(x)) (its input for the hardsigmoid) and recompute the polynomial in
  backward, instead of keeping GELU outputs, products, sigmoid outputs and g·H (half the
  saved bytes).
* Elementwise work is done in place on fresh buffers, with fused ATen backward kernels
  (gelu_backward, sigmoid_backward, addcmul).
* A state with one row per sequence (no mask, padding mask, ``step``) is folded into the output
  weights: out(g ⊙ H) = g @ (H ⊙ W_outᵀ), one (S × D) scaling per sequence instead of an
  (N × S) product, and backward gets dH from a (S × D) product too.
* One aggregation class per mask kind (:class:`NoMask`, :class:`Padding`, :class:`Causal`,
  :class:`BlockCausalFrames`, :class:`GeneralMask`): causal masks use prefix sums (cumsum),
  block-causal masks per-frame sums plus a cumsum over frames, O(N·S) instead of the
  reference's O(M·N·S) mask product. A tensor mask that is exactly causal or block-causal is
  recognised (once per mask tensor, cached).
* Very long sequences with a one-row state are processed in chunks of tokens (bounded memory);
  with ``recompute`` the backward saves only the inputs and recomputes poly(c) and gate(x)
  chunk by chunk, so the memory for one layer no longer grows with the number of tokens.
* ``torch.compile`` of the elementwise kernels: on CUDA by default (Triton fuses them), on CPU
  only on request (measured no faster than the eager schedule here, and the first call
  compiles for ~20 s; see docs/speed.md).

The switch (one, docs/speed.md): ``implementation(name)`` for a block of code,
``set_implementation(name)`` globally, ``POMLAB_FAST=name`` in the environment, with name
"auto" (default: this file; Triton kernels on CUDA when importable), "reference" (pom.py),
"torch" (this file's ATen kernels) or "triton" (pom_triton.py's kernels). Tuning of the fast
path (recompute, chunk size, compilation): :func:`set_options` / :func:`options`.
"""
from __future__ import annotations

import contextlib
import functools
import os
import weakref
from dataclasses import dataclass, fields, replace
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from . import masks
from ..checks import check_choice, check_positive_int

__all__ = ["IMPLEMENTATIONS", "implementation", "set_implementation", "get_implementation",
           "applies", "Options", "set_options", "get_options", "options", "Weights", "forward",
           "step", "NoMask", "Padding", "Causal", "BlockCausalFrames", "GeneralMask",
           "aggregation"]


# --- the switch ---------------------------------------------------------------------------------

IMPLEMENTATIONS = ("auto", "reference", "torch", "triton")
_ENV_ALIASES = {"": "auto", "1": "auto", "true": "auto", "on": "auto", "yes": "auto",
                "0": "reference", "false": "reference", "off": "reference", "no": "reference"}


def _from_environment() -> str:
    value = os.environ.get("POMLAB_FAST", "").strip().lower()
    value = _ENV_ALIASES.get(value, value)
    return check_choice("POMLAB_FAST", value, IMPLEMENTATIONS)


_implementation = _from_environment()


def set_implementation(name: str) -> None:
    """Which code every PoM runs: "auto", "reference", "torch" or "triton" (module doc)."""
    global _implementation
    _implementation = check_choice("implementation", name, IMPLEMENTATIONS)


def get_implementation() -> str:
    return _implementation


@contextlib.contextmanager
def implementation(name: str):
    """Context manager: every PoM runs ``name``'s code inside the block, restored afterwards."""
    previous = _implementation
    set_implementation(name)
    try:
        yield name
    finally:
        set_implementation(previous)


def applies(x: Tensor) -> bool:
    """Whether a PoM call on input ``x`` takes the fast path.

    Off when the switch says "reference", on devices other than CPU and CUDA (the meta device of
    FLOP counting included), under torch.compile (inductor fuses and recomputes the reference
    itself), and under functorch transforms or forward-mode AD (the custom backward has no
    vmap/jvp rules).
    """
    return (_implementation != "reference" and x.device.type in ("cpu", "cuda")
            and not torch.compiler.is_compiling()
            and not torch._C._are_functorch_transforms_active()
            and torch.autograd.forward_ad._current_level < 0)


@dataclass(frozen=True)
class Options:
    """How the fast path runs.

    recompute: save only the inputs for backward and recompute poly(c), gate(x) and the
        polynomial chunk by chunk (bounded memory, two more matrix products in backward).
        None = automatic: on when one layer's pre-activations would exceed ``chunk_bytes``.
        Applies to states with one row per sequence (no mask, padding masks); per-query states
        (causal, block-causal, general masks) are O(M·S) by nature and always save them.
    chunk_bytes: size of the per-chunk (B, tokens, state_dim) buffers for long sequences.
    compile: torch.compile the elementwise kernels; None = automatic (CUDA with Triton only).
    """

    recompute: bool | None = None
    chunk_bytes: int = 256 * 2**20
    compile: bool | None = None

    def __post_init__(self):
        for name in ("recompute", "compile"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                raise TypeError(f"{name} must be None or a bool, got {value!r}")
        check_positive_int("chunk_bytes", self.chunk_bytes)


_options = Options()


def set_options(**changes) -> Options:
    """Change some of :class:`Options` (recompute=, chunk_bytes=, compile=); returns the new set."""
    global _options
    unknown = set(changes) - {f.name for f in fields(Options)}
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)}; known: "
                         f"{[f.name for f in fields(Options)]}")
    _options = replace(_options, **changes)
    return _options


def get_options() -> Options:
    return _options


@contextlib.contextmanager
def options(**changes):
    """Context manager version of :func:`set_options`."""
    global _options
    previous = _options
    set_options(**changes)
    try:
        yield _options
    finally:
        _options = previous


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """Half-precision inputs build and average the state in float32 (range and accuracy)."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


# --- aggregation: how token features become the state, and the adjoint, one class per mask kind --
# Shared interface: reduce(h, start) -> unnormalised state sums (a chunk of tokens from `start`
# for one-row states), normalise(sums) -> H, adjoint(dH) -> (G broadcastable against
# token_view(features), per-token weights or None), and on the query side query_state(H) /
# query_reduce(t). `group` is the tokens per state row of prefix states (None otherwise),
# `token_weights` the (B, N) padding weights (None otherwise): pom_triton reads both.

class NoMask:
    """No mask: H (B, 1, S) is the plain mean over the N context tokens."""

    one_row, group, token_weights = True, None, None

    def __init__(self, n_context: int):
        self.n_context = n_context

    def reduce(self, h: Tensor, start: int = 0) -> Tensor:
        return h.sum(1, keepdim=True)

    def normalise(self, sums: Tensor) -> Tensor:
        return sums / self.n_context

    def adjoint(self, dH: Tensor) -> tuple[Tensor, Tensor | None]:
        return self.normalise(dH), None

    def token_view(self, t: Tensor) -> Tensor:
        return t

    query_state = token_view

    def query_reduce(self, t: Tensor) -> Tensor:
        return t.sum(1, keepdim=True)


class Padding(NoMask):
    """A (B, N) padding mask: H (B, 1, S) is the mean over each sequence's visible tokens."""

    def __init__(self, weights: Tensor, eps: float):
        self.token_weights, self.eps = weights, eps          # (B, N), the state's dtype

    def reduce(self, h: Tensor, start: int = 0) -> Tensor:
        w = self.token_weights[:, None, start:start + h.shape[1]].to(h.dtype)
        return torch.bmm(w, h)

    def normalise(self, sums: Tensor) -> Tensor:
        return sums / (self.eps + self.token_weights.sum(-1)[:, None, None])

    def adjoint(self, dH: Tensor) -> tuple[Tensor, Tensor | None]:
        return self.normalise(dH), self.token_weights[:, :, None]


class GeneralMask:
    """Any other (B|1, M, N) mask: H (B, M, S) = weights @ h, the reference's product."""

    one_row, group, token_weights = False, None, None

    def __init__(self, weights: Tensor, eps: float):
        self.weights, self.eps = weights, eps                # (B|1, M, N), the state's dtype

    def reduce(self, h: Tensor, start: int = 0) -> Tensor:
        return self.weights.to(h.dtype) @ h

    def normalise(self, sums: Tensor) -> Tensor:
        return sums / (self.eps + self.weights.sum(-1, keepdim=True))

    def adjoint(self, dH: Tensor) -> tuple[Tensor, Tensor | None]:
        dsums = self.normalise(dH)
        return self.weights.to(dsums.dtype).transpose(1, 2) @ dsums, None

    def token_view(self, t: Tensor) -> Tensor:
        return t

    query_state = token_view
    query_reduce = token_view


class BlockCausalFrames(GeneralMask):
    """Frames of ``group`` tokens, frame t sees frames <= t: per-frame sums and a prefix sum over
    frames, H (B, T, S), one row per frame (never an N x N mask)."""

    def __init__(self, n_context: int, group: int, eps: float):
        self.n_context, self.group, self.eps = n_context, group, eps

    def _seen(self, dtype, device) -> Tensor:
        """Tokens each state row sees: (t + 1) * group."""
        return torch.arange(1, self.n_context // self.group + 1, device=device,
                            dtype=dtype) * self.group

    def select_rows(self, prefix: Tensor) -> Tensor:
        return prefix

    def spread_rows(self, dsums: Tensor) -> Tensor:
        return dsums

    def reduce(self, h: Tensor, start: int = 0) -> Tensor:
        b, n, s = h.shape
        sums = h if self.group == 1 else h.view(b, n // self.group, self.group, s).sum(2)
        return self.select_rows(sums.cumsum(1))

    def normalise(self, sums: Tensor) -> Tensor:
        return sums / (self.eps + self._seen(sums.dtype, sums.device)[None, :, None])

    def adjoint(self, dH: Tensor) -> tuple[Tensor, Tensor | None]:
        dsums = self.spread_rows(self.normalise(dH))
        G = dsums.flip(1).cumsum(1).flip(1)              # token i feeds every state row >= its own
        return (G if self.group == 1 else G[:, :, None]), None

    def token_view(self, t: Tensor) -> Tensor:
        """Per-token tensor (B, N, S) viewed as (B, T, P, S) so that G broadcasts against it."""
        if self.group == 1:
            return t
        b, n, s = t.shape
        return t.view(b, n // self.group, self.group, s)

    def query_state(self, H: Tensor) -> Tensor:
        return H if self.group == 1 else H[:, :, None]

    def query_reduce(self, t: Tensor) -> Tensor:
        return t if self.group == 1 else t.sum(2)


class Causal(BlockCausalFrames):
    """Query j sees context 0..min(j, N-1) (top-left aligned like SDPA): a prefix sum over
    tokens, H (B, M, S); M != N picks (forward) and scatters back (backward) the rows."""

    def __init__(self, n_query: int, n_context: int, eps: float):
        super().__init__(n_context, 1, eps)
        self.n_query = n_query

    def _rows(self, device) -> Tensor | None:
        if self.n_query == self.n_context:
            return None
        return torch.arange(self.n_query, device=device).clamp(max=self.n_context - 1)

    def _seen(self, dtype, device) -> Tensor:
        rows = self._rows(device)
        return super()._seen(dtype, device) if rows is None else rows.to(dtype) + 1

    def select_rows(self, prefix: Tensor) -> Tensor:
        rows = self._rows(prefix.device)
        return prefix if rows is None else prefix[:, rows]

    def spread_rows(self, dsums: Tensor) -> Tensor:
        rows = self._rows(dsums.device)
        if rows is None:
            return dsums
        b, _, s = dsums.shape
        return dsums.new_zeros(b, self.n_context, s).index_add_(1, rows, dsums)


_structure_cache: dict[int, tuple] = {}


def aggregation(mask, batch: int, n_query: int, n_context: int, device, dtype: torch.dtype,
                eps: float):
    """The aggregation class for ``mask`` (validated as the reference does), weights in dtype."""
    if mask is None:
        return NoMask(n_context)
    if isinstance(mask, str) and mask == "causal":
        return Causal(n_query, n_context, eps)
    if isinstance(mask, masks.BlockCausal):       # never materialised here
        mask.check(n_query, n_context)
        return BlockCausalFrames(n_context, mask.tokens_per_frame, eps)
    m = masks.canonical(mask, batch, n_query, n_context, device)   # validates, (B|1, M|1, N)
    if m.shape[1] == 1:
        return Padding(m[:, 0].expand(batch, n_context).to(dtype), eps)
    group = _prefix_group(mask, m)
    if group == 1:
        return Causal(n_query, n_context, eps)
    if group is not None:
        return BlockCausalFrames(n_context, group, eps)
    return GeneralMask(m.to(dtype), eps)


def _prefix_group(user_mask: Tensor, m: Tensor) -> int | None:
    """Frame size P if the per-query mask m (B|1, M, N) is causal (P = 1) or block-causal,
    else None. The O(M·N) comparison is cached per mask tensor (and its version counter)."""
    if user_mask.is_inference():     # no version counter to notice in-place edits: no cache
        return _detect_prefix_group(m)
    key = id(user_mask)
    hit = _structure_cache.get(key)
    if hit is not None and hit[0]() is user_mask and hit[1] == user_mask._version:
        return hit[2]
    group = _detect_prefix_group(m)
    if len(_structure_cache) > 64:      # drop entries whose mask is gone
        for k in [k for k, v in _structure_cache.items() if v[0]() is None]:
            del _structure_cache[k]
    _structure_cache[key] = (weakref.ref(user_mask), user_mask._version, group)
    return group


def _detect_prefix_group(m: Tensor) -> int | None:
    """Reads m without (N x N) temporaries beyond one triangle for the causal case."""
    _, n_query, n_context = m.shape
    if not all(torch.equal(m[0], m[b]) for b in range(1, m.shape[0])):
        return None
    first = m[0]
    row0 = int(first[0].sum())
    if row0 == 1:
        return 1 if torch.equal(first, masks.causal(n_query, n_context, device=m.device)) \
            else None
    if row0 < 1 or n_query != n_context or n_context % row0:
        return None
    frames = n_context // row0
    blocks = first.view(frames, row0, frames, row0)
    below = masks.causal(frames, device=m.device)          # frame t sees frames <= t
    full, some = blocks.all(3).all(1), blocks.any(3).any(1)
    return row0 if torch.equal(full, below) and torch.equal(some, below) else None


# --- elementwise kernels (eager; compiled on request) -------------------------------------------

def _features(z: Tensor, degree: int, alpha: Tensor | None, inplace: bool = False) -> Tensor:
    """h(z) for the products (alpha None) or powers polynomial; z in the accumulation dtype.
    inplace: z is not needed afterwards, reuse its buffer."""
    if alpha is None:
        h = torch.ops.aten.gelu_(z) if inplace else F.gelu(z)   # then filled in place below
        chunks = h.chunk(degree, dim=-1)
        for q in range(1, degree):
            chunks[q].mul_(chunks[q - 1])                 # chunk q <- u_1 * ... * u_q
        return h
    a = F.leaky_relu(z, 0.01, inplace=inplace).clamp_(-0.1, 6.0)
    h = a * alpha[:, degree - 1]                          # Horner: a(α1 + a(α2 + ... a·αk))
    for p in range(degree - 1, 0, -1):
        h.add_(alpha[:, p - 1]).mul_(a)
    return h


def _features_sum(z: Tensor, degree: int, alpha: Tensor | None, inplace: bool = False) -> Tensor:
    """Sum over tokens (dim 1) of h(z); a separate function so that compile fuses it."""
    return _features(z, degree, alpha, inplace).sum(1, keepdim=True)


def _into(out: Tensor, op, *args) -> Tensor:
    """op(*args, out=out) without a temporary; torch.compile cannot trace out= into a view."""
    if torch.compiler.is_compiling():
        return out.copy_(op(*args))
    return op(*args, out=out)


def _features_backward(z: Tensor, G: Tensor, token_weight: Tensor | None, degree: int,
                       alpha: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """dL/dz and dL/dalpha given dL/dh = token_weight * G (G broadcasts against z)."""
    if alpha is None:
        # h_q = u_1...u_q: dL/du_q = P_{q-1} R_q with R_k = G_k, R_q = G_q + u_{q+1} R_{q+1}
        Gs = G.chunk(degree, dim=-1)
        if degree == 1:
            du = Gs[0].expand_as(z)
        else:
            u = F.gelu(z).chunk(degree, dim=-1)
            du = torch.empty_like(z)
            dus = du.chunk(degree, dim=-1)
            R_next = Gs[-1]
            for q in range(degree - 2, -1, -1):
                R_next = _into(dus[q], torch.addcmul, Gs[q], u[q + 1], R_next)
            prefix = u[0]                                     # P_1; u is overwritten by P_q
            for q in range(1, degree - 1):
                dus[q].mul_(prefix)
                prefix = u[q].mul_(prefix)
            _into(dus[-1], torch.mul, Gs[-1], prefix)
        if token_weight is not None:
            du = du * token_weight
        return torch.ops.aten.gelu_backward(du, z), None
    leaky = F.leaky_relu(z, 0.01)
    a = leaky.clamp(-0.1, 6.0)
    dh_da = (degree * alpha[:, degree - 1]).expand_as(a)  # Horner for sum_p p α_p a^(p-1)
    for p in range(degree - 1, 0, -1):
        dh_da = torch.addcmul(p * alpha[:, p - 1], dh_da, a)
    Gw = G if token_weight is None else G * token_weight
    da = (Gw * dh_da) * ((leaky >= -0.1) & (leaky <= 6.0))  # clamp passes the gradient inside
    dz = torch.ops.aten.leaky_relu_backward(da, z, 0.01, False)
    dims = tuple(range(a.dim() - 1))
    dalpha, power = [], a
    for p in range(1, degree + 1):
        dalpha.append((Gw * power).sum(dims))
        if p < degree:
            power = power * a
    return dz, torch.stack(dalpha, dim=-1)


_compiled: dict = {}


def _kernel(fn, device: torch.device):
    """fn itself, or its torch.compile'd version when compilation is on for this device."""
    want = _options.compile
    if want is None:
        want = device.type == "cuda" and _has_triton()
    if not want:
        return fn
    if fn not in _compiled:
        _compiled[fn] = torch.compile(fn)
    return _compiled[fn]


def _triton_for(agg, device: torch.device):
    """The pom_triton module when its kernels run this call, else None (torch kernels)."""
    choice = _implementation
    if choice == "torch" or type(agg) is GeneralMask:    # general masks: torch kernels only
        return None
    if choice == "auto" and not (device.type == "cuda" and _has_triton()):
        return None
    try:
        from . import pom_triton
    except ImportError:
        if choice == "triton":
            raise
        return None
    if choice == "auto" and not pom_triton.usable(device):
        return None
    return pom_triton


@functools.cache
def _has_triton() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _gate(s: Tensor, polynomial: str, inplace: bool = False) -> Tensor:
    if polynomial == "products":
        return s.sigmoid_() if inplace else torch.sigmoid(s)
    return F.hardsigmoid(s, inplace=inplace)


def _gate_backward(dg: Tensor, s: Tensor, g: Tensor, polynomial: str) -> Tensor:
    if polynomial == "products":
        return torch.ops.aten.sigmoid_backward(dg, g)
    return torch.ops.aten.hardsigmoid_backward(dg, s)


# --- chunking and gradient accumulation -----------------------------------------------------------

def _chunks(n_tokens: int, per_token_bytes: int, chunked: bool) -> list[tuple[int, int]]:
    if not chunked:
        return [(0, n_tokens)]
    size = max(1, _options.chunk_bytes // max(1, per_token_bytes))
    return [(i, min(i + size, n_tokens)) for i in range(0, n_tokens, size)]


def _linear(t: Tensor, weight: Tensor, bias: Tensor | None, dtype: torch.dtype) -> Tensor:
    return F.linear(t.to(dtype), weight.to(dtype), None if bias is None else bias.to(dtype))


def _add(total: Tensor | None, part: Tensor) -> Tensor:
    return part if total is None else total.add_(part)


class _Grads:
    """Gradients of one Linear layer (and its input) summed over chunks of tokens."""

    def __init__(self, need_input: bool, need_weight: bool, need_bias: bool):
        self.need_input, self.need_weight, self.need_bias = need_input, need_weight, need_bias
        self.inputs, self.weight, self.bias = [], None, None

    def add(self, dpre: Tensor, inp: Tensor, weight: Tensor) -> None:
        """dpre = dL/d(inp @ weightᵀ + bias) for one chunk of tokens."""
        if self.need_input:
            self.inputs.append(dpre @ weight.to(dpre.dtype))
        d2 = dpre.reshape(-1, dpre.shape[-1])
        if self.need_weight:
            self.weight = _add(self.weight, d2.t() @ inp.reshape(-1, inp.shape[-1]).to(d2.dtype))
        if self.need_bias:
            self.bias = _add(self.bias, d2.sum(0))

    def result(self, inp: Tensor, weight: Tensor, bias: Tensor | None) -> tuple:
        d_inp = None
        if self.need_input:
            d_inp = self.inputs[0] if len(self.inputs) == 1 else torch.cat(self.inputs, dim=1)
            d_inp = d_inp.to(inp.dtype)
        return (d_inp, _cast(self.weight, weight, self.need_weight),
                _cast(self.bias, bias, self.need_bias))


def _cast(g: Tensor | None, like: Tensor | None, needed: bool):
    return None if (g is None or like is None or not needed) else g.to(like.dtype)


# --- the state: context tokens -> H --------------------------------------------------------------

class _State(torch.autograd.Function):
    """H from context tokens c: z = poly(c), h = polynomial(z), H = masked mean of h.

    Saves c and z (with recompute: c only, z is recomputed chunk by chunk); h is always
    recomputed in backward.
    """

    @staticmethod
    def forward(ctx, c, weight, bias, alpha, agg, degree: int, recompute: bool,
                chunked: bool):
        cdt, acc = c.dtype, accumulation_dtype(c.dtype)
        alpha_acc = None if alpha is None else alpha.to(acc)
        spans = _chunks(c.shape[1], c.shape[0] * weight.shape[0] * 4, chunked and agg.one_row)
        feature_sum = _kernel(_features_sum, c.device)
        tri = _triton_for(agg, c.device)
        z_full, sums = None, None
        for start, end in spans:
            z = _linear(c[:, start:end], weight, bias, cdt)
            z_acc = z.to(acc)
            reuse = recompute or z_acc is not z          # z's buffer is free to overwrite
            if tri is not None:
                part = tri.state_sums(z, agg, start, degree, alpha)
            elif type(agg) is NoMask:                       # one fused kernel when compiled
                part = feature_sum(z_acc, degree, alpha_acc, reuse)
            else:
                part = agg.reduce(_features(z_acc, degree, alpha_acc, reuse), start)
            sums = _add(sums, part)
            z_full = None if recompute else z
        ctx.agg, ctx.degree, ctx.spans, ctx.tri = agg, degree, spans, tri
        ctx.save_for_backward(c, weight, bias, alpha, z_full)
        return agg.normalise(sums)

    @staticmethod
    def backward(ctx, dH):
        c, weight, bias, alpha, z_saved = ctx.saved_tensors
        agg, degree, cdt, acc = ctx.agg, ctx.degree, c.dtype, dH.dtype
        need_c, need_w, need_b, need_a = ctx.needs_input_grad[:4]
        alpha_acc = None if alpha is None else alpha.to(acc)
        G, token_weight = agg.adjoint(dH)
        grads = _Grads(need_c, need_w, need_b and bias is not None)
        dalpha = None
        features_backward = _kernel(_features_backward, c.device)
        for start, end in ctx.spans:
            c_part = c[:, start:end]
            z = z_saved if z_saved is not None else _linear(c_part, weight, bias, cdt)
            tw = None if token_weight is None else token_weight[:, start:end]
            if ctx.tri is not None:
                dz, da = ctx.tri.state_backward(z, G, tw, agg, degree, alpha)
            else:
                dz, da = features_backward(agg.token_view(z.to(acc)), G, tw, degree, alpha_acc)
            if da is not None:
                dalpha = _add(dalpha, da)
            grads.add(dz.reshape(z.shape).to(cdt), c_part, weight)
        return (*grads.result(c, weight, bias), _cast(dalpha, alpha, need_a),
                None, None, None, None)


# --- the output: queries and H -> out(gate(x) * H) -----------------------------------------------

def _fold(agg, n_query: int, dim: int) -> bool:
    """Fold a one-row state into the output weights when that is the smaller tensor."""
    return agg.one_row and n_query >= dim


class _Mix(torch.autograd.Function):
    """y = out(gate(gate_lin(x)) * H). Saves x and the gate's output (sigmoid) or input
    (hardsigmoid), with recompute x only."""

    @staticmethod
    def forward(ctx, x, H, w_gate, b_gate, w_out, b_out, agg, polynomial: str,
                recompute: bool, chunked: bool):
        cdt = x.dtype
        b, m, _ = x.shape
        fold = _fold(agg, m, w_out.shape[0])
        H_c = H.to(cdt)
        w_out_c, b_out_c = w_out.to(cdt), None if b_out is None else b_out.to(cdt)
        folded = H_c.transpose(1, 2) * w_out_c.t() if fold else None     # (B, S, D)
        spans = _chunks(m, b * w_gate.shape[0] * 4, chunked and agg.one_row)
        # kept for backward (unless recompute): the gate's output g for the sigmoid (its
        # derivative needs only g), its input s for the hardsigmoid
        tri = None if fold else _triton_for(agg, x.device)
        keep_output = polynomial == "products" and tri is None   # the kernels keep s
        parts, kept = [], None
        for start, end in spans:
            s = _linear(x[:, start:end], w_gate, b_gate, cdt)
            if tri is not None:
                parts.append(F.linear(tri.gate_mul(s, H, agg, polynomial), w_out_c, b_out_c))
                kept = None if recompute else s
                continue
            g = _gate(s, polynomial, inplace=recompute or keep_output)   # overwrite s if unkept
            if fold:
                part = torch.bmm(g, folded)
                parts.append(part if b_out_c is None else part.add_(b_out_c))
            else:
                gq, Hq = agg.token_view(g), agg.query_state(H_c)
                gH = gq.mul_(Hq) if recompute or not keep_output else gq * Hq
                parts.append(F.linear(gH.reshape(g.shape), w_out_c, b_out_c))
            kept = None if recompute else (g if keep_output else s)
        ctx.agg, ctx.polynomial, ctx.spans, ctx.fold, ctx.tri = agg, polynomial, spans, fold, tri
        ctx.save_for_backward(x, H, w_gate, b_gate, w_out, b_out, kept)
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    @staticmethod
    def backward(ctx, dy):
        x, H, w_gate, b_gate, w_out, b_out, kept = ctx.saved_tensors
        agg, polynomial, fold, cdt = ctx.agg, ctx.polynomial, ctx.fold, x.dtype
        need_x, need_H, need_wg, need_bg, need_wo, need_bo = ctx.needs_input_grad[:6]
        dy = dy.to(cdt)
        H_c = H.to(cdt)
        Hq = agg.query_state(H_c)
        w_out_c = w_out.to(cdt)
        folded = H_c.transpose(1, 2) * w_out_c.t() if fold else None
        gate_grads = _Grads(need_x, need_wg, need_bg and b_gate is not None)
        out_grads = _Grads(False, need_wo and not fold, need_bo and b_out is not None)
        d_folded, dH = None, None
        for start, end in ctx.spans:
            x_part, dy_part = x[:, start:end], dy[:, start:end]
            if ctx.tri is not None:
                s = kept if kept is not None else _linear(x_part, w_gate, b_gate, cdt)
                ds, dH_part, gH = ctx.tri.mix_backward(dy_part @ w_out_c, s, H, agg, polynomial,
                                                       want_gH=out_grads.need_weight)
                out_grads.add(dy_part, dy_part if gH is None else gH, w_out)
                dH = _add(dH, dH_part)
                gate_grads.add(ds, x_part, w_gate)
                continue
            if kept is None:
                s = _linear(x_part, w_gate, b_gate, cdt)
                g = _gate(s, polynomial)
            elif polynomial == "products":
                s, g = None, kept                       # sigmoid's derivative needs only g
            else:
                s = kept
                g = _gate(s, polynomial)
            if fold:
                dg = torch.bmm(dy_part, folded.transpose(1, 2))
                d_folded = _add(d_folded, torch.bmm(g.transpose(1, 2), dy_part))
                out_grads.add(dy_part, dy_part, w_out)                  # the bias gradient only
            else:
                gq = agg.token_view(g)
                out_grads.add(dy_part, (gq * Hq).reshape(g.shape), w_out)
                dgH = dy_part @ w_out_c
                dH = _add(dH, agg.query_reduce(agg.token_view(dgH) * gq))
                dg = agg.token_view(dgH).mul_(Hq).reshape(g.shape)
            gate_grads.add(_gate_backward(dg, s, g, polynomial), x_part, w_gate)
        d_out_w = out_grads.weight
        if fold:   # folded[b, c, d] = H[b, c] * W_out[d, c]
            if need_wo:
                d_out_w = (d_folded * H_c.transpose(1, 2)).sum(0).t()
            dH = (d_folded * w_out_c.t()).sum(-1)[:, None, :]
        dx, dWg, dbg = gate_grads.result(x, w_gate, b_gate)
        return (dx, _cast(dH, H, need_H), dWg, dbg, _cast(d_out_w, w_out, need_wo),
                _cast(out_grads.bias, b_out, need_bo), None, None, None, None)


# --- entry points: called by PoM.forward / PoM.step with checked inputs -------------------------

class Weights(NamedTuple):
    """One PoM's parameters and settings as pom.py passes them (alpha: "powers" only)."""

    poly_weight: Tensor
    poly_bias: Tensor | None
    gate_weight: Tensor
    gate_bias: Tensor | None
    out_weight: Tensor
    out_bias: Tensor | None
    alpha: Tensor | None
    degree: int
    eps: float                     # the masked mean's eps

    @property
    def polynomial(self) -> str:
        return "products" if self.alpha is None else "powers"

    def tensors(self) -> list[Tensor]:
        return [t for t in self[:7] if t is not None]


def _plan(w: Weights, x: Tensor, context: Tensor, agg) -> tuple[bool, bool]:
    """(recompute, chunked) for this call."""
    needs_grad = torch.is_grad_enabled() and (
        x.requires_grad or context.requires_grad or any(t.requires_grad for t in w.tensors()))
    long = max(x.shape[1], context.shape[1]) * x.shape[0] * w.poly_weight.shape[0] * 4 > \
        _options.chunk_bytes
    if not needs_grad:
        return True, long                # nothing to save; chunk only when it bounds memory
    recompute = long if _options.recompute is None else _options.recompute
    recompute = recompute and agg.one_row
    return recompute, recompute


def _state(w: Weights, context: Tensor, agg, recompute: bool, chunked: bool) -> Tensor:
    return _State.apply(context, w.poly_weight, w.poly_bias, w.alpha, agg, w.degree, recompute,
                        chunked)


def _mix(w: Weights, x: Tensor, H: Tensor, agg, recompute: bool, chunked: bool) -> Tensor:
    return _Mix.apply(x, H, w.gate_weight, w.gate_bias, w.out_weight, w.out_bias, agg,
                      w.polynomial, recompute, chunked)


def _compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype the reference's Linear layers compute in (autocast's when it is on)."""
    device = x.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return x.dtype


def forward(x: Tensor, context: Tensor | None, mask, w: Weights) -> Tensor:
    """PoM(x, context, mask): queries x (B, M, D), context (B, N, D) or None (self-mixing)."""
    context = x if context is None else context
    cdt = _compute_dtype(x)
    with torch.autocast(x.device.type, enabled=False):
        x, context = x.to(cdt), context.to(cdt)
        agg = aggregation(mask, x.shape[0], x.shape[1], context.shape[1], x.device,
                          accumulation_dtype(cdt), w.eps)
        recompute, chunked = _plan(w, x, context, agg)
        H = _state(w, context, agg, recompute, chunked)
        return _mix(w, x, H, agg, recompute, chunked)


def step(x: Tensor, previous: tuple[Tensor, int] | None, w: Weights) -> tuple[Tensor, Tensor]:
    """PoM.step: the output and the new mean state H_t for block x (B, m, D), given the
    (H, n) of the tokens seen before (None for the first block)."""
    m = x.shape[1]
    cdt = _compute_dtype(x)
    with torch.autocast(x.device.type, enabled=False):
        x = x.to(cdt)
        agg = NoMask(m)
        recompute, chunked = _plan(w, x, x, agg)
        H = _state(w, x, agg, recompute, chunked)                       # block mean Ĥ
        if previous is not None:
            H_seen, n = previous
            H = (n * H_seen + m * H) / (n + m)                          # H_t
        return _mix(w, x, H, agg, recompute, chunked), H
