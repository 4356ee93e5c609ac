"""Triton kernels for PoM's elementwise and reduction work (the fast path's CUDA backend).

The three matrix products (poly, gate, out) stay cuBLAS GEMMs in ``pom_fast``; these kernels
do everything between them in one pass over memory each:

* ``state_sums``: z = poly(c) -> the (masked) sums of the polynomial features h(z), without
  materialising h. Mean and padding masks reduce over tokens (partials per token split, summed
  afterwards); causal and block-causal masks run a prefix sum over tokens (``tl.cumsum`` plus a
  carry) and store one state row per frame end, O(N·S), never an N x N mask.
* ``state_backward``: dL/dz (and dL/dalpha for the "powers" polynomial) from the state's
  adjoint G, recomputing the polynomial from z.
* ``gate_mul`` / ``mix_backward``: gate(s) * H[row(query)] and its backward (ds, dH, and g·H
  for the output weights' gradient), recomputing the gate from its input s.

Both polynomials: "products" (h_q = u_1...u_q, u = GELU(z), one column of S at a time, so a
tile may straddle chunks) and "powers" (h = sum_p alpha_p a(z)^p). Arithmetic in the
accumulation dtype (float32 for bf16/fp16 inputs, float64 for float64).

Triton decides at decoration time whether kernels are compiled for a GPU or interpreted on
the CPU (``TRITON_INTERPRET=1``, set before this module is imported): the tests run these
kernels on CPU tensors through the interpreter. ``pom_fast`` selects them on CUDA by default
(its switch: ``pom_fast.implementation("torch" | "triton")`` or ``POMLAB_FAST=torch|triton``).
Nothing here imports pom.py or pom_fast: ``agg`` is pom_fast's aggregation object (its
``group``, ``token_weights`` and ``select_rows``).
"""
from __future__ import annotations

import torch
from torch import Tensor

try:
    import triton
    import triton.language as tl
except ImportError as err:  # pragma: no cover - exercised where triton is absent
    raise ImportError("pomlab.nn.pom_triton needs triton (pip install triton, or the "
                      "pomlab[triton] extra)") from err

from triton import knobs

INTERPRETED = bool(knobs.runtime.interpret)   # the kernels below were decorated for the CPU

_TL_DTYPES = {torch.float32: tl.float32, torch.float64: tl.float64}
BLOCK_N = 32
BLOCK_C = 64


def usable(device: torch.device) -> bool:
    """Whether the kernels can run on tensors of ``device`` in this process."""
    return device.type == ("cpu" if INTERPRETED else "cuda")


# --- elementwise helpers ----------------------------------------------------------------------

@triton.jit
def _gelu(z):
    return 0.5 * z * (1.0 + tl.math.erf(z * 0.7071067811865476))


@triton.jit
def _gelu_grad(z):
    cdf = 0.5 * (1.0 + tl.math.erf(z * 0.7071067811865476))
    return cdf + z * 0.3989422804014327 * tl.exp(-0.5 * z * z)


@triton.jit
def _powers_act(z):
    """a(z) = clamp(leaky_relu(z, 0.01), -0.1, 6) and leaky_relu(z)."""
    leaky = tl.where(z > 0, z, 0.01 * z)
    return tl.minimum(tl.maximum(leaky, -0.1), 6.0), leaky


@triton.jit
def _features(zp, cols, cmask, mask, alpha_ptr, C, POWERS: tl.constexpr, K: tl.constexpr,
              ACC: tl.constexpr):
    """h(z) for a (tokens, columns) tile; zp: per-token row pointers (BLOCK_N, 1)."""
    if POWERS:
        z = tl.load(zp + cols[None, :], mask=mask, other=0.0).to(ACC)
        a, _ = _powers_act(z)
        h = a * tl.load(alpha_ptr + cols * K + (K - 1), mask=cmask, other=0.0).to(ACC)[None, :]
        for i in tl.static_range(K - 1):          # Horner: a(α1 + a(α2 + ... a·αK))
            alpha_p = tl.load(alpha_ptr + cols * K + (K - 2 - i), mask=cmask, other=0.0)
            h = (h + alpha_p.to(ACC)[None, :]) * a
        return h
    chunk = cols // C                              # column c of chunk q: h = u_1 * ... * u_(q+1)
    c = cols % C
    h = _gelu(tl.load(zp + c[None, :], mask=mask, other=0.0).to(ACC))
    for p in tl.static_range(1, K):
        used = (chunk >= p)[None, :]
        z = tl.load(zp + (p * C + c)[None, :], mask=mask & used, other=0.0).to(ACC)
        h = tl.where(used, h * _gelu(z), h)
    return h


@triton.jit
def _gate(s, POWERS: tl.constexpr):
    if POWERS:
        return tl.minimum(tl.maximum(s / 6.0 + 0.5, 0.0), 1.0)     # hardsigmoid
    return 1.0 / (1.0 + tl.exp(-s))                                 # sigmoid


@triton.jit
def _gate_grad(s, g, POWERS: tl.constexpr):
    if POWERS:
        return tl.where((s > -3.0) & (s < 3.0), 1.0 / 6.0, 0.0)
    return g * (1.0 - g)


# --- the state ----------------------------------------------------------------------------------

@triton.jit
def _state_kernel(z_ptr, w_ptr, alpha_ptr, out_ptr, N, S, C, P, TOKENS,
                  stride_zb, stride_zn, stride_wb, stride_ob, stride_or,
                  PREFIX: tl.constexpr, POWERS: tl.constexpr, K: tl.constexpr,
                  HAS_W: tl.constexpr, ACC: tl.constexpr, BLOCK_N: tl.constexpr,
                  BLOCK_C: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)          # offsets past 2**31 elements
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = cols < S
    offs = tl.arange(0, BLOCK_N)
    if PREFIX:
        # one program walks all tokens: running sums, stored at the last token of each frame
        carry = tl.zeros([BLOCK_C], dtype=ACC)
        for start in range(0, N, BLOCK_N):
            tok = start + offs
            mask = (tok < N)[:, None] & cmask[None, :]
            h = _features(z_ptr + b * stride_zb + tok[:, None] * stride_zn, cols, cmask, mask,
                          alpha_ptr, C, POWERS, K, ACC)
            h = tl.where(mask, h, 0.0)
            running = tl.cumsum(h, axis=0) + carry[None, :]
            carry += tl.sum(h, axis=0)
            frame_end = ((tok + 1) % P == 0) & (tok < N)
            row = (tok + 1) // P - 1
            tl.store(out_ptr + b * stride_ob + row[:, None] * stride_or + cols[None, :], running,
                     mask=frame_end[:, None] & cmask[None, :])
    else:
        # TOKENS tokens per program (a multiple of BLOCK_N); partial sums per split
        split = tl.program_id(2)
        total = tl.zeros([BLOCK_C], dtype=ACC)
        for start in range(0, TOKENS, BLOCK_N):
            tok = split * TOKENS + start + offs
            tmask = tok < N
            mask = tmask[:, None] & cmask[None, :]
            h = _features(z_ptr + b * stride_zb + tok[:, None] * stride_zn, cols, cmask, mask,
                          alpha_ptr, C, POWERS, K, ACC)
            if HAS_W:
                h = h * tl.load(w_ptr + b * stride_wb + tok, mask=tmask, other=0.0).to(ACC)[:, None]
            total += tl.sum(tl.where(mask, h, 0.0), axis=0)
        tl.store(out_ptr + b * stride_ob + split * stride_or + cols, total, mask=cmask)


@triton.jit
def _state_backward_kernel(z_ptr, g_ptr, w_ptr, alpha_ptr, dz_ptr, dalpha_ptr, N, S, C, P,
                           TOKENS, stride_zb, stride_zn, stride_gb, stride_gr, stride_wb,
                           stride_ab, stride_as,
                           POWERS: tl.constexpr, K: tl.constexpr, KP: tl.constexpr,
                           HAS_W: tl.constexpr, ACC: tl.constexpr, BLOCK_N: tl.constexpr,
                           BLOCK_C: tl.constexpr):
    """dz for TOKENS tokens; token i takes the adjoint row i // P of G (times its weight)."""
    b = tl.program_id(0).to(tl.int64)          # offsets past 2**31 elements
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    split = tl.program_id(2)
    cmask = cols < S
    offs = tl.arange(0, BLOCK_N)
    kidx = tl.arange(0, KP)
    dalpha = tl.zeros([BLOCK_C, KP], dtype=ACC)
    for start in range(0, TOKENS, BLOCK_N):
        tok = split * TOKENS + start + offs
        tmask = tok < N
        mask = tmask[:, None] & cmask[None, :]
        zp = z_ptr + b * stride_zb + tok[:, None] * stride_zn
        gp = g_ptr + b * stride_gb + (tok // P)[:, None] * stride_gr
        if HAS_W:
            w = tl.load(w_ptr + b * stride_wb + tok, mask=tmask, other=0.0).to(ACC)[:, None]
        if POWERS:
            z = tl.load(zp + cols[None, :], mask=mask, other=0.0).to(ACC)
            a, leaky = _powers_act(z)
            gw = tl.load(gp + cols[None, :], mask=mask, other=0.0).to(ACC)
            if HAS_W:
                gw = gw * w
            # dh/da = sum_p p α_p a^(p-1), Horner
            dh = K * tl.load(alpha_ptr + cols * K + (K - 1), mask=cmask, other=0.0).to(ACC)[None, :]
            for i in tl.static_range(K - 1):
                alpha_p = tl.load(alpha_ptr + cols * K + (K - 2 - i), mask=cmask, other=0.0)
                dh = dh * a + (K - 1 - i) * alpha_p.to(ACC)[None, :]
            da = tl.where((leaky >= -0.1) & (leaky <= 6.0), gw * dh, 0.0)
            dz = tl.where(z > 0, da, 0.01 * da)
            power = a
            for p in tl.static_range(K):
                part = tl.sum(tl.where(mask, gw * power, 0.0), axis=0)
                dalpha += tl.where(kidx[None, :] == p, part[:, None], 0.0)
                power = power * a
        else:
            # column c of chunk p: dL/du_p = sum_{q >= p} G_q prod_{r <= q, r != p} u_r
            chunk = (cols // C)[None, :]
            c = (cols % C)[None, :]
            z_sel = tl.load(zp + c, mask=mask, other=0.0).to(ACC)
            u = _gelu(z_sel)
            running = tl.where(chunk == 0, 1.0, u)
            du = tl.where(chunk == 0, tl.load(gp + c, mask=mask, other=0.0).to(ACC) * running, 0.0)
            for q in tl.static_range(1, K):
                zq = tl.load(zp + q * C + c, mask=mask, other=0.0).to(ACC)
                running = running * tl.where(chunk == q, 1.0, _gelu(zq))
                gq = tl.load(gp + q * C + c, mask=mask, other=0.0).to(ACC)
                du += tl.where(chunk <= q, gq * running, 0.0)
                z_sel = tl.where(chunk == q, zq, z_sel)
            if HAS_W:
                du = du * w
            dz = du * _gelu_grad(z_sel)
        tl.store(dz_ptr + b * stride_zb + tok[:, None] * stride_zn + cols[None, :], dz, mask=mask)
    if POWERS:
        tl.store(dalpha_ptr + b * stride_ab + split * stride_as + cols[:, None] * KP + kidx[None, :],
                 dalpha, mask=cmask[:, None])


# --- the mix ------------------------------------------------------------------------------------

@triton.jit
def _gate_mul_kernel(s_ptr, h_ptr, out_ptr, M, S, P, stride_sb, stride_sn, stride_hb, stride_hr,
                     POWERS: tl.constexpr, ACC: tl.constexpr, BLOCK_N: tl.constexpr,
                     BLOCK_C: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)          # offsets past 2**31 elements
    tok = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask = (tok < M)[:, None] & (cols < S)[None, :]
    at = b * stride_sb + tok[:, None] * stride_sn + cols[None, :]
    g = _gate(tl.load(s_ptr + at, mask=mask, other=0.0).to(ACC), POWERS)
    H = tl.load(h_ptr + b * stride_hb + (tok // P)[:, None] * stride_hr + cols[None, :],
                mask=mask, other=0.0).to(ACC)
    tl.store(out_ptr + at, g * H, mask=mask)


@triton.jit
def _mix_backward_kernel(dgh_ptr, s_ptr, h_ptr, ds_ptr, dh_ptr, gh_ptr, M, S, P,
                         stride_sb, stride_sn, stride_hb, stride_hr, stride_db, stride_dr,
                         GLOBAL: tl.constexpr, WANT_GH: tl.constexpr, POWERS: tl.constexpr,
                         ACC: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr):
    """ds = dgH * H * gate'(s); dH: per-block partial sums (GLOBAL) or per query (dgH * g)."""
    b = tl.program_id(0).to(tl.int64)          # offsets past 2**31 elements
    blk = tl.program_id(1)
    tok = blk * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = cols < S
    mask = (tok < M)[:, None] & cmask[None, :]
    at = b * stride_sb + tok[:, None] * stride_sn + cols[None, :]
    dgh = tl.load(dgh_ptr + at, mask=mask, other=0.0).to(ACC)
    s = tl.load(s_ptr + at, mask=mask, other=0.0).to(ACC)
    H = tl.load(h_ptr + b * stride_hb + (tok // P)[:, None] * stride_hr + cols[None, :],
                mask=mask, other=0.0).to(ACC)
    g = _gate(s, POWERS)
    tl.store(ds_ptr + at, dgh * H * _gate_grad(s, g, POWERS), mask=mask)
    if WANT_GH:
        tl.store(gh_ptr + at, g * H, mask=mask)
    q = tl.where(mask, dgh * g, 0.0)
    if GLOBAL:
        tl.store(dh_ptr + b * stride_db + blk * stride_dr + cols, tl.sum(q, axis=0), mask=cmask)
    else:
        tl.store(dh_ptr + b * stride_db + tok[:, None] * stride_dr + cols[None, :], q, mask=mask)


# --- Python entry points (called by pom_fast with its aggregation object) -------------------------

def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check_device(t: Tensor) -> None:
    if not usable(t.device):
        where = "CPU tensors (interpreter)" if INTERPRETED else "CUDA tensors"
        raise RuntimeError(f"pom_triton kernels were built for {where}, got a tensor on "
                           f"{t.device}; set TRITON_INTERPRET=1 before importing triton to run "
                           "them on the CPU")


def _splits(n: int, programs: int) -> tuple[int, int]:
    """(tokens per program, number of splits): enough programs to fill a GPU, whole blocks."""
    want = max(1, min(triton.cdiv(n, BLOCK_N), triton.cdiv(1024, max(programs, 1))))
    tokens = triton.cdiv(triton.cdiv(n, want), BLOCK_N) * BLOCK_N
    return tokens, triton.cdiv(n, tokens)


def _chunk_width(S: int, degree: int, alpha: Tensor | None) -> int:
    return S if alpha is not None else S // degree


def state_sums(z: Tensor, agg, start: int, degree: int, alpha: Tensor | None) -> Tensor:
    """What ``agg.reduce(h, start)`` gives for h = features(z), in the accumulation dtype."""
    _check_device(z)
    z = z.contiguous()
    B, N, S = z.shape
    acc = _acc_dtype(z.dtype)
    alpha_c = alpha.to(acc).contiguous() if alpha is not None else z   # dummy pointer
    common = dict(POWERS=alpha is not None, K=degree, ACC=_TL_DTYPES[acc], BLOCK_N=BLOCK_N,
                  BLOCK_C=BLOCK_C)
    c_tiles = triton.cdiv(S, BLOCK_C)
    C = _chunk_width(S, degree, alpha)
    if agg.group is not None:                      # causal / block-causal: prefix sums
        P = agg.group
        out = torch.empty(B, N // P, S, device=z.device, dtype=acc)
        _state_kernel[(B, c_tiles, 1)](z, z, alpha_c, out, N, S, C, P, N,
                                       z.stride(0), z.stride(1), 0, out.stride(0), out.stride(1),
                                       PREFIX=True, HAS_W=False, **common)
        return agg.select_rows(out)
    weights = (agg.token_weights[:, start:start + N].contiguous()
               if agg.token_weights is not None else None)
    tokens, splits = _splits(N, B * c_tiles)
    parts = torch.empty(B, splits, S, device=z.device, dtype=acc)
    w = weights if weights is not None else z
    _state_kernel[(B, c_tiles, splits)](z, w, alpha_c, parts, N, S, C, N, tokens,
                                        z.stride(0), z.stride(1),
                                        0 if weights is None else weights.stride(0),
                                        parts.stride(0), parts.stride(1),
                                        PREFIX=False, HAS_W=weights is not None, **common)
    return parts.sum(1, keepdim=True)


def state_backward(z: Tensor, G: Tensor, token_weight: Tensor | None, agg, degree: int,
                   alpha: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """dL/dz (z's dtype) and dL/dalpha (accumulation dtype) from the adjoint G of the state
    rows (``agg.adjoint``); token i uses row i // group (prefix) or row 0 (global states)."""
    _check_device(z)
    z = z.contiguous()
    B, N, S = z.shape
    acc = _acc_dtype(z.dtype)
    G = G.reshape(G.shape[0], -1, G.shape[-1]).expand(B, -1, S).to(acc).contiguous()
    P = agg.group if agg.group is not None else max(N, 1)
    w = None if token_weight is None else token_weight.reshape(B, N).contiguous()
    alpha_c = alpha.to(acc).contiguous() if alpha is not None else z
    c_tiles = triton.cdiv(S, BLOCK_C)
    tokens, splits = _splits(N, B * c_tiles)
    KP = triton.next_power_of_2(degree)
    dz = torch.empty_like(z)
    dalpha = (torch.empty(B, splits, S, KP, device=z.device, dtype=acc) if alpha is not None
              else z)
    _state_backward_kernel[(B, c_tiles, splits)](
        z, G, z if w is None else w, alpha_c, dz, dalpha, N, S, _chunk_width(S, degree, alpha),
        P, tokens, z.stride(0), z.stride(1), G.stride(0), G.stride(1),
        0 if w is None else w.stride(0),
        dalpha.stride(0) if alpha is not None else 0, dalpha.stride(1) if alpha is not None else 0,
        POWERS=alpha is not None, K=degree, KP=KP, HAS_W=w is not None, ACC=_TL_DTYPES[acc],
        BLOCK_N=BLOCK_N, BLOCK_C=BLOCK_C)
    return dz, (dalpha.sum((0, 1))[:, :degree] if alpha is not None else None)


def _query_rows(H: Tensor, agg, M: int) -> tuple[Tensor, int]:
    """H as (B, rows, S) and the number of consecutive queries per row."""
    if (agg.group or 1) > 1:
        return H, agg.group
    if H.shape[1] == 1:
        return H, max(M, 1)
    return H, 1


def gate_mul(s: Tensor, H: Tensor, agg, polynomial: str) -> Tensor:
    """gate(s) * H[row(query)] in s's dtype; s: (B, M, S) gate pre-activations."""
    _check_device(s)
    s = s.contiguous()
    B, M, S = s.shape
    H, P = _query_rows(H.contiguous(), agg, M)
    out = torch.empty_like(s)
    grid = (B, triton.cdiv(M, BLOCK_N), triton.cdiv(S, BLOCK_C))
    _gate_mul_kernel[grid](s, H, out, M, S, P, s.stride(0), s.stride(1), H.stride(0),
                           H.stride(1), POWERS=polynomial == "powers",
                           ACC=_TL_DTYPES[_acc_dtype(H.dtype)], BLOCK_N=BLOCK_N,
                           BLOCK_C=BLOCK_C)
    return out


def mix_backward(dgH: Tensor, s: Tensor, H: Tensor, agg, polynomial: str,
                 want_gH: bool) -> tuple[Tensor, Tensor, Tensor | None]:
    """(ds in s's dtype, dH in H's dtype and shape, g·H or None) given dgH = dL/d(g·H)."""
    _check_device(s)
    s, dgH = s.contiguous(), dgH.to(s.dtype).contiguous()
    B, M, S = s.shape
    Hr, P = _query_rows(H.contiguous(), agg, M)
    acc = _acc_dtype(H.dtype)
    one_row = Hr.shape[1] == 1
    blocks = triton.cdiv(M, BLOCK_N)
    dH_parts = torch.empty((B, blocks, S) if one_row else (B, M, S), device=s.device, dtype=acc)
    ds = torch.empty_like(s)
    gH = torch.empty_like(s) if want_gH else s
    _mix_backward_kernel[(B, blocks, triton.cdiv(S, BLOCK_C))](
        dgH, s, Hr, ds, dH_parts, gH, M, S, P, s.stride(0), s.stride(1), Hr.stride(0),
        Hr.stride(1), dH_parts.stride(0), dH_parts.stride(1), GLOBAL=one_row, WANT_GH=want_gH,
        POWERS=polynomial == "powers", ACC=_TL_DTYPES[acc], BLOCK_N=BLOCK_N, BLOCK_C=BLOCK_C)
    if one_row:
        dH = dH_parts.sum(1, keepdim=True)
    elif P > 1:
        dH = dH_parts.view(B, M // P, P, S).sum(2)
    else:
        dH = dH_parts
    return ds, dH.to(H.dtype), (gH if want_gH else None)
