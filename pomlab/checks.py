"""Argument checks for pomlab's boundaries (public functions, configs, CLIs, file loads): each
error names the argument and what was expected. Hot paths (a module's forward) do not call
these; their callers validate once at the entry point."""
from __future__ import annotations

import contextlib
from collections.abc import Iterable

import torch
from torch import Tensor


def check_int(name: str, value, *, minimum: int | None = 1) -> int:
    """value must be an int (not a bool), >= minimum when given (default 1: a positive count)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


check_positive_int = check_int         # (name, value): minimum 1 is check_int's default


def check_number(name: str, value, *, minimum: float | None = None, maximum: float | None = None,
                 strict_minimum: bool = False) -> float:
    """value must be a real number (not a bool) in [minimum, maximum] ((minimum, ...] if strict)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if minimum is not None and (value <= minimum if strict_minimum else value < minimum):
        raise ValueError(f"{name} must be {'>' if strict_minimum else '>='} {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_choice(name: str, value, choices: Iterable):
    """value must be one of choices."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")
    return value


def check_tokens(name: str, x, dim: int, batch: int | None = None) -> Tensor:
    """x must be a floating (batch, tokens, dim) tensor; batch must match when given."""
    if not isinstance(x, Tensor) or not x.dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating-point torch.Tensor of shape (batch, tokens, "
                        f"{dim}), got {x.dtype if isinstance(x, Tensor) else type(x).__name__}")
    if x.dim() != 3:
        raise ValueError(f"{name} must have shape (batch, tokens, {dim}), got {tuple(x.shape)}")
    if x.shape[-1] != dim:
        raise ValueError(f"{name} has feature size {x.shape[-1]}, expected {dim} "
                         f"(shape (batch, tokens, {dim}))")
    if x.shape[1] < 1:
        raise ValueError(f"{name} must hold at least one token, got shape {tuple(x.shape)}")
    if batch is not None and x.shape[0] != batch:
        raise ValueError(f"{name} has batch size {x.shape[0]}, expected {batch} (the batch of x)")
    return x


def check_dtype_matches(name: str, x: Tensor, module: torch.nn.Module) -> None:
    """Outside autocast (meta tensors have none), the input dtype must be the parameters'."""
    if x.device.type != "meta" and torch.is_autocast_enabled(x.device.type):
        return
    param = next(module.parameters(), None)
    if param is not None and param.dtype != x.dtype:
        raise TypeError(f"{name} has dtype {x.dtype} but the module's parameters are "
                        f"{param.dtype}; convert one with .to(dtype)")


def check_ids(name: str, ids: Tensor, n_ids: int, what: str) -> Tensor:
    """ids must be an integer tensor with values in [0, n_ids) (``what`` says what they are).
    Reads the values (a host sync for device tensors): call at entry points, once per batch."""
    if not isinstance(ids, Tensor) or ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor of {what}, got "
                        + (str(ids.dtype) if isinstance(ids, Tensor) else type(ids).__name__))
    if ids.numel() and bool(((ids < 0) | (ids >= n_ids)).any()):
        raise ValueError(f"{name} must hold {what}, got values in "
                         f"[{ids.min().item()}, {ids.max().item()}]")
    return ids


@contextlib.contextmanager
def as_setting_errors():
    """A config's validation: TypeErrors become ValueErrors, the CLIs' one-line error class."""
    try:
        yield
    except TypeError as err:
        raise ValueError(str(err)) from None
