"""Fixed-step samplers: Euler and Heun for flow-matching ODEs, DDIM and ancestral DDPM for epsilon
diffusion.

The integrators take a plain callable, so they are tested on analytic fields; the processes in
flow.py and gaussian.py wrap a model (with guidance) into that callable.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

# velocity(x, t) with t a python float; returns dx/dt with x's shape.
Velocity = Callable[[Tensor, float], Tensor]
# noise prediction eps(x, step) with step an int in [0, num_steps).
NoisePredictor = Callable[[Tensor, int], Tensor]

ODE_METHODS = ("euler", "heun")


def _check_grid(times) -> list[float]:
    times = [float(t) for t in times]
    if len(times) < 2:
        raise ValueError(f"the time grid needs at least 2 points, got {len(times)}")
    return times


def euler(velocity: Velocity, x: Tensor, times) -> Tensor:
    """First-order integration of dx/dt = velocity(x, t) along the grid times[0] -> times[-1]."""
    times = _check_grid(times)
    for t, t_next in zip(times[:-1], times[1:]):
        x = x + (t_next - t) * velocity(x, t).to(x.dtype)
    return x


def heun(velocity: Velocity, x: Tensor, times) -> Tensor:
    """Heun's second-order method (explicit trapezoid): two velocity calls per step."""
    times = _check_grid(times)
    for t, t_next in zip(times[:-1], times[1:]):
        dt = t_next - t
        d1 = velocity(x, t).to(x.dtype)
        x_euler = x + dt * d1
        d2 = velocity(x_euler, t_next).to(x.dtype)
        x = x + dt * 0.5 * (d1 + d2)
    return x


def integrate(method: str, velocity: Velocity, x: Tensor, times) -> Tensor:
    if method == "euler":
        return euler(velocity, x, times)
    if method == "heun":
        return heun(velocity, x, times)
    raise ValueError(f"flow-matching sampler must be one of {ODE_METHODS}, got {method!r}")


def ddim(eps: NoisePredictor, x: Tensor, alpha_bars: Tensor, steps, *, eta: float = 0.0,
         generator: torch.Generator | None = None) -> Tensor:
    """DDIM (Song et al. 2021) along the decreasing integer steps, ending at clean data.

    alpha_bars: (num_steps,) cumulative products of (1 - beta), float64. eta = 0 is the
    deterministic sampler; eta = 1 matches DDPM's posterior variance.
    """
    steps = [int(s) for s in steps]
    if not steps or any(a <= b for a, b in zip(steps[:-1], steps[1:])):
        raise ValueError(f"DDIM steps must be a non-empty strictly decreasing list, got {steps}")
    if steps[0] >= len(alpha_bars) or steps[-1] < 0:
        raise ValueError(f"DDIM steps must lie in [0, {len(alpha_bars)}), got {steps[0]}..{steps[-1]}")
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    for i, step in enumerate(steps):
        a_t = alpha_bars[step].item()
        a_prev = alpha_bars[steps[i + 1]].item() if i + 1 < len(steps) else 1.0
        e = eps(x, step).to(x.dtype)
        x0 = (x - (1.0 - a_t) ** 0.5 * e) / a_t ** 0.5
        sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)) ** 0.5
        x = a_prev ** 0.5 * x0 + max(1.0 - a_prev - sigma ** 2, 0.0) ** 0.5 * e
        if sigma > 0:
            where = generator.device if generator is not None else x.device
            z = torch.randn(x.shape, generator=generator, device=where, dtype=x.dtype)
            x = x + sigma * z.to(x.device)
    return x


def posterior(alpha_bars: Tensor, index: int) -> tuple[float, float, float, float, float]:
    """(beta, coef_x0, coef_xt, var, log_var_clipped) of q(x_prev | x_i, x_0) along a chain with
    cumulative products `alpha_bars` (float64; abar before index 0 is 1), at position `index`:
    mean = coef_x0 x_0 + coef_xt x_i, var = beta (1 - abar_prev) / (1 - abar_i). var is 0 at
    index 0; its log is clipped there to the value at index 1 (ADM's convention)."""
    def at(i):
        a_t = alpha_bars[i].item()
        a_prev = alpha_bars[i - 1].item() if i > 0 else 1.0
        beta = 1.0 - a_t / a_prev
        return a_t, a_prev, beta, beta * (1.0 - a_prev) / (1.0 - a_t)

    a_t, a_prev, beta, var = at(index)
    clipped = var if index > 0 or len(alpha_bars) == 1 else at(1)[3]
    clipped = clipped if clipped > 0 else beta
    return (beta, beta * a_prev ** 0.5 / (1.0 - a_t),
            (1.0 - a_prev) * (1.0 - beta) ** 0.5 / (1.0 - a_t), var, math.log(clipped))


# model output at an integer step: eps (B, C, ...) or [eps, v] (B, 2C, ...) for a learned variance.
EpsVariancePredictor = Callable[[Tensor, int], Tensor]


def ddpm(output: EpsVariancePredictor, x: Tensor, alpha_bars: Tensor, steps, *,
         variance: str | None = None, generator: torch.Generator | None = None) -> Tensor:
    """Ancestral DDPM sampling along the decreasing integer steps (a subset S of the training
    steps: the chain then has betas 1 - abar_s / abar_prev(s), ADM's respacing).

    variance: "learned" (output is [eps, v], log var = frac log beta + (1 - frac) log beta~,
    frac = (v + 1) / 2; the default when output has 2C channels), "small" (beta~, the default
    otherwise) or "large" (beta, with beta~ at the last step). No noise is added at the last step.
    """
    steps = [int(s) for s in steps]
    if not steps or any(a <= b for a, b in zip(steps[:-1], steps[1:])):
        raise ValueError(f"DDPM steps must be a non-empty strictly decreasing list, got {steps}")
    if steps[0] >= len(alpha_bars) or steps[-1] < 0:
        raise ValueError(f"DDPM steps must lie in [0, {len(alpha_bars)}), got {steps[0]}..{steps[-1]}")
    chain = alpha_bars[torch.tensor(steps[::-1])]            # abar along S, increasing time
    c = x.shape[1]
    for i, step in zip(range(len(steps) - 1, -1, -1), steps):
        beta, coef_x0, coef_xt, var, log_small = posterior(chain, i)
        out = output(x, step)
        learned = out.shape[1] == 2 * c
        mode = variance or ("learned" if learned else "small")
        if mode == "learned" and not learned:
            raise ValueError(f"variance='learned' needs a model with 2C = {2 * c} output channels "
                             f"(learn_sigma=True), got {out.shape[1]}")
        eps = out[:, :c].double()
        a_t = chain[i].item()
        x0 = (x.double() - (1.0 - a_t) ** 0.5 * eps) / a_t ** 0.5
        mean = coef_x0 * x0 + coef_xt * x.double()
        if i == 0:
            x = mean.to(x.dtype)
            break
        if mode == "learned":
            frac = (out[:, c:].double() + 1.0) / 2.0
            log_var = frac * math.log(beta) + (1.0 - frac) * log_small
        else:
            log_var = torch.full_like(mean, log_small if mode == "small" else math.log(beta))
        where = generator.device if generator is not None else x.device
        z = torch.randn(x.shape, generator=generator, device=where, dtype=torch.float64)
        x = (mean + torch.exp(0.5 * log_var) * z.to(x.device)).to(x.dtype)
    return x
