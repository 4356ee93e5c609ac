"""What a token mixer is to the property checks (docs/properties.md), and the clear errors when
something is not one; NotImplementedError from a mixer makes the checks that need it n/a."""
from __future__ import annotations

import copy
import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn


class MixerError(ValueError):
    """The object given is not a usable token mixer (or factory); the message says why."""


class NotApplicable(Exception):
    """A check needs a feature the mixer does not have (raised NotImplementedError, no step)."""


def mixer_name(mixer) -> str:
    named = not isinstance(mixer, nn.Module) and hasattr(mixer, "__name__")
    return mixer.__name__ if named else type(mixer).__name__


def load_factory(spec: str) -> Callable:
    """``MODULE:FACTORY`` -> the factory. MODULE is a dotted module name (importable from the
    current directory) or a path to a ``.py`` file; FACTORY is a callable in it."""
    module_part, _, attr = spec.rpartition(":") if isinstance(spec, str) else ("", "", "")
    if not module_part or not attr:
        raise MixerError(f"expected MODULE:FACTORY (e.g. my_mixers.py:make_mixer or "
                         f"pomlab.properties.examples:pom), got {spec!r}")
    path = Path(module_part)
    if module_part.endswith(".py") or path.is_file():
        if not path.is_file():
            raise MixerError(f"no file {module_part!r} (MODULE of {spec!r})")
        name = f"_pomlab_user_{path.stem}"
        loader_spec = importlib.util.spec_from_file_location(name, path.resolve())
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[name] = module          # dataclasses and pickling look the module up
        # the file's own folder first, so that it can import its neighbours
        sys.path.insert(0, str(path.resolve().parent))
        try:
            loader_spec.loader.exec_module(module)
        except Exception as e:
            sys.modules.pop(name, None)
            raise MixerError(f"importing {module_part} failed: {type(e).__name__}: {e}") from e
        finally:
            sys.path.remove(str(path.resolve().parent))
    else:
        if "" not in sys.path and "." not in sys.path:
            sys.path.insert(0, "")          # `python -m` users expect their cwd importable
        try:
            module = importlib.import_module(module_part)
        except ModuleNotFoundError as e:
            raise MixerError(f"no module named {module_part!r} (MODULE of {spec!r}; give a "
                             f"dotted module importable from here or a path to a .py file)"
                             ) from e
        except Exception as e:
            raise MixerError(f"importing {module_part} failed: {type(e).__name__}: {e}") from e
    if not hasattr(module, attr):
        public = sorted(n for n, v in vars(module).items()
                        if callable(v) and not n.startswith("_") and
                        getattr(v, "__module__", None) == module.__name__)
        raise MixerError(f"{module_part} has no factory {attr!r}; callables defined there: "
                         f"{', '.join(public) or 'none'}")
    factory = getattr(module, attr)
    if not callable(factory):
        raise MixerError(f"{spec}: {attr} is a {type(factory).__name__}, not a callable "
                         f"factory dim -> mixer")
    return factory


def check_signature(mixer) -> None:
    """The mixer must take (x, context=None, mask=None); raise MixerError naming what it takes."""
    if not callable(mixer):
        raise MixerError(f"a mixer must be an nn.Module or a callable, got {type(mixer).__name__}")
    try:
        sig = inspect.signature(mixer.forward if isinstance(mixer, nn.Module) else mixer)
    except (TypeError, ValueError):
        return                              # a builtin: nothing to read, calls will tell
    P = inspect.Parameter
    params = list(sig.parameters.values())
    takes_x = any(p.kind not in (P.KEYWORD_ONLY, P.VAR_KEYWORD) for p in params)
    by_name = {p.name for p in params if p.kind != P.POSITIONAL_ONLY}
    any_name = any(p.kind == P.VAR_KEYWORD for p in params)
    missing = [n for n in ("context", "mask") if n not in by_name and not any_name]
    extra = [p.name for p in params[1:] if p.default is p.empty and p.name not in
             ("context", "mask") and p.kind not in (P.VAR_POSITIONAL, P.VAR_KEYWORD)]
    what = ("no argument for x" if not takes_x else
            f"no {' or '.join(missing)} argument" if missing else
            f"required argument(s) {', '.join(extra)} beyond x" if extra else None)
    if what:
        owner = mixer_name(mixer) + (".forward" if isinstance(mixer, nn.Module) else "")
        raise MixerError(f"{owner} must take (x, context=None, mask=None), but it takes "
                         f"{sig} ({what})")


def prepare(mixer, dim: int | None, dtype: torch.dtype):
    """(an eval-mode ``dtype`` copy of the mixer (the user's is left as it was), dim or .dim)."""
    check_signature(mixer)
    if dim is None:
        dim = getattr(mixer, "dim", None)
        if not isinstance(dim, int):
            raise MixerError(f"dim must be given: {mixer_name(mixer)} has no integer .dim")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:    # MixerError: CLI exit 2
        raise MixerError(f"dim must be a positive int, got {dim!r}")
    if isinstance(mixer, nn.Module):
        mixer = copy.deepcopy(mixer).to(dtype).eval()
    return mixer, dim


def call(mixer, x: Tensor, context: Tensor | None = None, mask=None) -> Tensor:
    """One forward (NotImplementedError: NotApplicable; output not of x's shape: MixerError)."""
    name = mixer_name(mixer)
    try:
        with torch.no_grad():
            y = mixer(x, context=context, mask=mask)
    except NotImplementedError as e:
        raise NotApplicable(f"{name} raised NotImplementedError: {e}") from e
    if not isinstance(y, Tensor):
        raise MixerError(f"{name} returned a {type(y).__name__}, expected a tensor of shape "
                         f"(batch, tokens, dim) = {tuple(x.shape)}")
    if y.dim() != 3 or y.shape[:2] != x.shape[:2]:
        raise MixerError(f"{name} changed the token count: input {tuple(x.shape)} gave output "
                         f"{tuple(y.shape)}; a token mixer returns one output per query token")
    if y.shape != x.shape:
        raise MixerError(f"{name} changed the feature size: input {tuple(x.shape)} gave "
                         f"output {tuple(y.shape)}")
    return y


def build_mixer(factory, dim: int, dtype: torch.dtype = torch.float64):
    """factory(dim), checked to mix (2, 5, dim) tokens into finite outputs (else MixerError)."""
    try:
        mixer = factory(dim)
    except Exception as e:
        raise MixerError(f"{mixer_name(factory)}({dim}) failed: {type(e).__name__}: {e}") from e
    if mixer is None or not callable(mixer):
        raise MixerError(f"{mixer_name(factory)}({dim}) returned {type(mixer).__name__}, "
                         f"expected a mixer (an nn.Module or callable)")
    prepared, _ = prepare(mixer, dim, dtype)
    x = torch.randn(2, 5, dim, dtype=dtype, generator=torch.Generator().manual_seed(0))
    try:
        y = call(prepared, x)
    except MixerError:
        raise
    except NotApplicable as e:
        raise MixerError(f"{e}; plain self-mixing mixer(x) must work") from e
    except Exception as e:
        raise MixerError(f"{mixer_name(prepared)}(x) failed on x of shape {tuple(x.shape)}, "
                         f"{dtype}: {type(e).__name__}: {e}") from e
    if not torch.isfinite(y).all():
        raise MixerError(f"{mixer_name(prepared)}(x) returned NaN or inf on x of shape "
                         f"{tuple(x.shape)}")
    return mixer
