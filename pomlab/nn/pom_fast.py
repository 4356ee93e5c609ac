"""Fast PoM: the function of ``pom.py``, computed with fewer passes over memory and less state.

``pom.py`` stays the readable definition; this module computes the same thing and is tested
against it (values and gradients in float64, every mask form, both polynomials, cross-mixing,
``step``). ``PoM.forward`` and ``PoM.step`` dispatch here when :func:`applies` says so.

What is different from the reference (same math, other schedule):

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
* Causal masks use prefix sums (cumsum) and block-causal masks per-frame sums plus a cumsum
  over frames, O(N·S) instead of the reference's O(M·N·S) mask product. A tensor mask that is
  exactly causal or block-causal is recognised (once per mask tensor, cached).
* Very long sequences with a one-row state are processed in chunks of tokens (bounded memory);
  with ``recompute`` the backward saves only the inputs and recomputes poly(c) and gate(x)
  chunk by chunk, so the memory for one layer no longer grows with the number of tokens.
* ``torch.compile`` of the elementwise kernels: on CUDA by default (Triton fuses them), on CPU
  only on request (measured no faster than the eager schedule here, and the first call
  compiles for ~20 s; see docs/speed.md).

Switches: ``POMLAB_FAST=0`` in the environment, :func:`set_enabled` / :func:`disabled` /
:func:`enabled` globally or for a block of code, ``pom.fast = False`` for one module, and
:func:`set_options` / :func:`options` for recompute, chunk size and compilation.
"""
from __future__ import annotations

import contextlib
import functools
import os
import weakref
from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from . import masks
from . import pom as reference   # module import: PoM dispatches here, attributes read at call time

__all__ = ["set_enabled", "is_enabled", "enabled", "disabled", "applies", "Options",
           "set_options", "get_options", "options", "forward", "step", "run_forward", "run_step"]


# --- switches --------------------------------------------------------------------------------

def _env_enabled() -> bool:
    return os.environ.get("POMLAB_FAST", "1").strip().lower() not in ("0", "false", "off", "no")


_enabled = _env_enabled()


def set_enabled(flag: bool) -> None:
    """Turn the fast path on or off for every PoM (off: the reference pom.py runs)."""
    global _enabled
    if not isinstance(flag, bool):
        raise TypeError(f"flag must be a bool, got {type(flag).__name__}")
    _enabled = flag


def is_enabled() -> bool:
    return _enabled


@contextlib.contextmanager
def enabled(flag: bool = True):
    """Context manager: the fast path on (or off) inside the block, restored afterwards."""
    previous = _enabled
    set_enabled(flag)
    try:
        yield
    finally:
        set_enabled(previous)


def disabled():
    """Context manager: the reference implementation inside the block."""
    return enabled(False)


@dataclass(frozen=True)
class Options:
    """How the fast path runs.

    recompute: save only the inputs for backward and recompute poly(c), gate(x) and the
        polynomial chunk by chunk (bounded memory, two more matrix products in backward).
        None = automatic: on when one layer's pre-activations would exceed ``chunk_bytes``.
        Applies to states with one row per sequence (no mask, padding masks); per-query states
        (causal, block-causal, dense masks) are O(M·S) by nature and always save them.
    chunk_bytes: size of the per-chunk (B, tokens, state_dim) buffers for long sequences.
    compile: torch.compile the elementwise kernels; None = automatic (CUDA with Triton only).
    kernels: "triton" (the hand-written kernels of pom_triton.py: CUDA, or CPU under
        TRITON_INTERPRET=1), "torch" (the ATen/compiled kernels below), or None = automatic
        (Triton on CUDA when importable). Dense per-query masks always take the torch kernels.
        Default from the environment variable POMLAB_KERNELS when set.
    """

    recompute: bool | None = None
    chunk_bytes: int = 256 * 2**20
    compile: bool | None = None
    kernels: str | None = None


KERNELS = ("torch", "triton")


def _env_kernels() -> str | None:
    value = os.environ.get("POMLAB_KERNELS", "").strip().lower()
    if value in ("", "auto"):
        return None
    if value not in KERNELS:
        raise ValueError(f"POMLAB_KERNELS must be one of {KERNELS} or 'auto', got {value!r}")
    return value


_options = Options(kernels=_env_kernels())


def _check_options(opts: Options) -> Options:
    for name in ("recompute", "compile"):
        value = getattr(opts, name)
        if value is not None and not isinstance(value, bool):
            raise TypeError(f"{name} must be None or a bool, got {value!r}")
    if isinstance(opts.chunk_bytes, bool) or not isinstance(opts.chunk_bytes, int) \
            or opts.chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be a positive int, got {opts.chunk_bytes!r}")
    if opts.kernels is not None and opts.kernels not in KERNELS:
        raise ValueError(f"kernels must be None or one of {KERNELS}, got {opts.kernels!r}")
    return opts


def set_options(**changes) -> Options:
    """Change some of :class:`Options` (recompute=, chunk_bytes=, compile=); returns the new set."""
    global _options
    known = {f.name for f in fields(Options)}
    unknown = set(changes) - known
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)}; known: {sorted(known)}")
    _options = _check_options(replace(_options, **changes))
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


def applies(pom, x: Tensor) -> bool:
    """Whether ``pom``'s forward/step take the fast path for input ``x``.

    Off when switched off (globally or with ``pom.fast = False``), on devices other than CPU
    and CUDA (the meta device of FLOP counting included), under torch.compile (inductor fuses
    and recomputes the reference itself), and under functorch transforms or forward-mode AD
    (the custom backward has no vmap/jvp rules).
    """
    return (_enabled and getattr(pom, "fast", None) is not False
            and x.device.type in ("cpu", "cuda")
            and not torch.compiler.is_compiling()
            and not torch._C._are_functorch_transforms_active()
            and torch.autograd.forward_ad._current_level < 0)


# --- aggregation: how token features become the state, and the adjoint -------------------------

@dataclass
class _Aggregation:
    """One mask form. H has shape (B, 1, S) for "mean"/"padding", (B, M, S) for "dense" and for
    "prefix" with group 1 (causal), (B, T, S) for "prefix" with frames of ``group`` tokens."""

    kind: str                      # "mean" | "padding" | "dense" | "prefix"
    n_query: int
    n_context: int
    weights: Tensor | None = None  # padding: (B, N) float; dense: (B|1, M, N) float
    group: int = 1                 # prefix: tokens per frame

    @property
    def global_state(self) -> bool:
        return self.kind in ("mean", "padding")

    def counts(self, dtype, device) -> Tensor:
        """sum_i m_ji per state row, broadcastable to H (without eps)."""
        if self.kind == "padding":
            return self.weights.sum(-1)[:, None, None]
        if self.kind == "dense":
            return self.weights.sum(-1, keepdim=True)
        if self.group == 1 and self.n_query != self.n_context:
            seen = self._causal_index(device).to(dtype) + 1
        else:       # state row t (a token, or a frame of `group` tokens) sees (t + 1) * group
            seen = torch.arange(1, self.n_context // self.group + 1, device=device,
                                dtype=dtype) * self.group
        return seen[None, :, None]

    def _causal_index(self, device) -> Tensor:
        """Causal query j sees context 0..min(j, N-1) (top-left aligned like SDPA)."""
        return torch.arange(self.n_query, device=device).clamp(max=self.n_context - 1)

    # forward: features -> (partial) sums -> H
    def partial_sum(self, h: Tensor, start: int) -> Tensor:
        """Sum of the features of context tokens start..start+len(h) (global states only)."""
        if self.kind == "mean":
            return h.sum(1, keepdim=True)
        w = self.weights[:, None, start:start + h.shape[1]].to(h.dtype)
        return torch.bmm(w, h)

    def reduce(self, h: Tensor) -> Tensor:
        """Unnormalised state sums from all context features h (B, N, S)."""
        if self.global_state:
            return self.partial_sum(h, 0)
        if self.kind == "dense":
            return self.weights.to(h.dtype) @ h
        b, n, s = h.shape
        sums = h if self.group == 1 else h.view(b, n // self.group, self.group, s).sum(2)
        prefix = sums.cumsum(1)
        if self.group == 1 and self.n_query != self.n_context:
            prefix = prefix[:, self._causal_index(h.device)]
        return prefix

    def normalise(self, sums: Tensor) -> Tensor:
        if self.kind == "mean":
            return sums / self.n_context
        return sums / (reference.EPS + self.counts(sums.dtype, sums.device))

    # backward: dH -> gradient of every token's features, G (broadcastable), times token weights
    def adjoint(self, dH: Tensor) -> tuple[Tensor, Tensor | None]:
        dsums = self.normalise(dH)
        if self.kind == "mean":
            return dsums, None
        if self.kind == "padding":
            return dsums, self.weights[:, :, None]
        if self.kind == "dense":
            return self.weights.to(dsums.dtype).transpose(1, 2) @ dsums, None
        if self.group == 1 and self.n_query != self.n_context:
            b, _, s = dsums.shape
            dsums = dsums.new_zeros(b, self.n_context, s).index_add_(
                1, self._causal_index(dsums.device), dsums)
        G = dsums.flip(1).cumsum(1).flip(1)              # token i feeds every state row >= its own
        return (G if self.group == 1 else G[:, :, None]), None

    def token_view(self, t: Tensor) -> Tensor:
        """Per-token tensor (B, N, S) viewed so that G broadcasts against it."""
        if self.kind == "prefix" and self.group > 1:
            b, n, s = t.shape
            return t.view(b, n // self.group, self.group, s)
        return t

    # the query side: how H broadcasts over queries, and the sum back to H's shape
    def query_state(self, H: Tensor) -> Tensor:
        return H[:, :, None] if self.kind == "prefix" and self.group > 1 else H

    def query_reduce(self, t: Tensor) -> Tensor:
        """Sum a per-query tensor, shaped like token_view(queries), back to H's shape."""
        if self.global_state:
            return t.sum(1, keepdim=True)
        if self.kind == "prefix" and self.group > 1:
            return t.sum(2)
        return t


_structure_cache: dict[int, tuple] = {}


def _aggregation(mask, batch: int, n_query: int, n_context: int, device,
                 dtype: torch.dtype) -> _Aggregation:
    if mask is None:
        return _Aggregation("mean", n_query, n_context)
    if isinstance(mask, str) and mask == "causal":
        return _Aggregation("prefix", n_query, n_context)
    if isinstance(mask, masks.BlockCausal):       # never materialised here
        mask.check(n_query, n_context)
        return _Aggregation("prefix", n_query, n_context, group=mask.tokens_per_frame)
    m = masks.canonical(mask, batch, n_query, n_context, device)   # validates, (B|1, M|1, N)
    if m.shape[1] == 1:
        return _Aggregation("padding", n_query, n_context,
                            weights=m[:, 0].expand(batch, n_context).to(dtype))
    group = _prefix_group(mask, m)
    if group is not None:
        return _Aggregation("prefix", n_query, n_context, group=group)
    return _Aggregation("dense", n_query, n_context, weights=m.to(dtype))


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


def _triton_for(agg: _Aggregation, device: torch.device):
    """The pom_triton module when its kernels run this call, else None (torch kernels)."""
    choice = _options.kernels
    if choice == "torch" or agg.kind == "dense":
        return None
    if choice is None and not (device.type == "cuda" and _has_triton()):
        return None
    try:
        from . import pom_triton
    except ImportError:
        if choice == "triton":
            raise
        return None
    if choice is None and not pom_triton.usable(device):
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
    def forward(ctx, c, weight, bias, alpha, agg: _Aggregation, degree: int, recompute: bool,
                chunked: bool):
        cdt, acc = c.dtype, reference.accumulation_dtype(c.dtype)
        alpha_acc = None if alpha is None else alpha.to(acc)
        spans = _chunks(c.shape[1], c.shape[0] * weight.shape[0] * 4, chunked and agg.global_state)
        feature_sum = _kernel(_features_sum, c.device)
        tri = _triton_for(agg, c.device)
        z_full, sums = None, None
        for start, end in spans:
            z = _linear(c[:, start:end], weight, bias, cdt)
            z_acc = z.to(acc)
            reuse = recompute or z_acc is not z          # z's buffer is free to overwrite
            if tri is not None:
                part = tri.state_sums(z, agg, start, degree, alpha)
            elif agg.kind == "mean":
                part = feature_sum(z_acc, degree, alpha_acc, reuse)
            elif agg.global_state:
                part = agg.partial_sum(_features(z_acc, degree, alpha_acc, reuse), start)
            else:
                part = agg.reduce(_features(z_acc, degree, alpha_acc, reuse))
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

def _fold(agg: _Aggregation, n_query: int, dim: int) -> bool:
    """Fold a one-row state into the output weights when that is the smaller tensor."""
    return agg.global_state and n_query >= dim


class _Mix(torch.autograd.Function):
    """y = out(gate(gate_lin(x)) * H). Saves x and the gate's output (sigmoid) or input
    (hardsigmoid), with recompute x only."""

    @staticmethod
    def forward(ctx, x, H, w_gate, b_gate, w_out, b_out, agg: _Aggregation, polynomial: str,
                recompute: bool, chunked: bool):
        cdt = x.dtype
        b, m, _ = x.shape
        fold = _fold(agg, m, w_out.shape[0])
        H_c = H.to(cdt)
        w_out_c, b_out_c = w_out.to(cdt), None if b_out is None else b_out.to(cdt)
        folded = H_c.transpose(1, 2) * w_out_c.t() if fold else None     # (B, S, D)
        spans = _chunks(m, b * w_gate.shape[0] * 4, chunked and agg.global_state)
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


# --- entry points (inputs already checked by PoM.forward / PoM.step) ----------------------------

def _alpha(pom):
    return pom.alpha if pom.polynomial == "powers" else None


def _plan(pom, x: Tensor, context: Tensor, agg: _Aggregation) -> tuple[bool, bool]:
    """(recompute, chunked) for this call."""
    needs_grad = torch.is_grad_enabled() and (
        x.requires_grad or context.requires_grad or any(p.requires_grad for p in pom.parameters()))
    long = max(x.shape[1], context.shape[1]) * x.shape[0] * pom.state_dim * 4 > \
        _options.chunk_bytes
    if not needs_grad:
        return True, long                # nothing to save; chunk only when it bounds memory
    recompute = long if _options.recompute is None else _options.recompute
    recompute = recompute and agg.global_state
    return recompute, recompute


def _state(pom, context: Tensor, agg: _Aggregation, recompute: bool, chunked: bool) -> Tensor:
    return _State.apply(context, pom.poly.weight, pom.poly.bias, _alpha(pom), agg, pom.degree,
                        recompute, chunked)


def _mix(pom, x: Tensor, H: Tensor, agg: _Aggregation, recompute: bool, chunked: bool) -> Tensor:
    return _Mix.apply(x, H, pom.gate.weight, pom.gate.bias, pom.out.weight, pom.out.bias, agg,
                      pom.polynomial, recompute, chunked)


def _compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype the reference's Linear layers compute in (autocast's when it is on)."""
    device = x.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return x.dtype


def run_forward(pom, x: Tensor, context: Tensor | None, mask) -> Tensor:
    """PoM(x, context, mask) by the fast path; inputs checked by the caller (PoM.forward)."""
    context = x if context is None else context
    cdt = _compute_dtype(x)
    with torch.autocast(x.device.type, enabled=False):
        x, context = x.to(cdt), context.to(cdt)
        agg = _aggregation(mask, x.shape[0], x.shape[1], context.shape[1], x.device,
                           reference.accumulation_dtype(cdt))
        recompute, chunked = _plan(pom, x, context, agg)
        H = _state(pom, context, agg, recompute, chunked)
        return _mix(pom, x, H, agg, recompute, chunked)


def run_step(pom, x: Tensor, state):
    """PoM.step by the fast path; x checked by the caller, the state checked here."""
    if state is not None:
        pom._check_state(state, x)
    m = x.shape[1]
    cdt = _compute_dtype(x)
    with torch.autocast(x.device.type, enabled=False):
        x = x.to(cdt)
        agg = _aggregation(None, x.shape[0], m, m, x.device, reference.accumulation_dtype(cdt))
        recompute, chunked = _plan(pom, x, x, agg)
        H = _state(pom, x, agg, recompute, chunked)                     # block mean Ĥ
        if state is not None:
            H = (state.n * state.H + m * H) / (state.n + m)             # H_t
        n = m if state is None else state.n + m
        y = _mix(pom, x, H, agg, recompute, chunked)
    return y, reference.PoMState(H=H, n=n, config=pom.config)


def forward(pom, x: Tensor, context: Tensor | None = None, mask=None) -> Tensor:
    """``pom(x, context, mask)`` forced through the fast path (the per-call switch)."""
    with enabled(True):
        previous, pom.fast = getattr(pom, "fast", None), None
        try:
            return pom(x, context=context, mask=mask)
        finally:
            pom.fast = previous


def step(pom, x: Tensor, state=None):
    """``pom.step(x, state)`` forced through the fast path (the per-call switch)."""
    with enabled(True):
        previous, pom.fast = getattr(pom, "fast", None), None
        try:
            return pom.step(x, state)
        finally:
            pom.fast = previous
