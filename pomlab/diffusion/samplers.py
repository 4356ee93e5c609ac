"""Fixed-step samplers: Euler and Heun for flow-matching ODEs, DDIM for epsilon diffusion.

The integrators take a plain callable, so they are tested on analytic fields; the processes in
flow.py and gaussian.py wrap a model (with guidance) into that callable.
"""
from __future__ import annotations

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
