"""The property checks (docs/properties.md): each takes a mixer (or factory) and returns a
``PropertyReport``; deviations are relative to the largest |output|, for mixers of any size."""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable

import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..checks import check_choice
from ..nn import masks
from ..theory.contextual import check_contextual_mapping as check_keys, sequence_grid
from ..theory.training import ToyRun, train_context_model, train_toy
from .mixers import MixerError, NotApplicable, build_mixer, call, mixer_name, prepare

F64 = torch.float64
# the kinds check_causality perturbs (pomlab.testing.MASK_KINDS adds other ways to write them)
CAUSALITY_MASK_KINDS = ("padding", "per_query", "causal", "block_causal")


@dataclass(frozen=True)
class PropertyReport:
    """One property of one mixer: whether it holds (None: does not apply, ``reason`` says why),
    the ``measured`` number compared with ``tolerance`` (``passes_when``), the worst case."""

    property: str
    holds: bool | None
    measured: float
    tolerance: float
    worst_case: str
    measure: str
    passes_when: str = "<="
    reason: str = ""
    details: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def applies(self) -> bool:
        return self.holds is not None

    @property
    def verdict(self) -> str:
        return "n/a" if self.holds is None else "holds" if self.holds else "FAILS"

    def summary(self) -> str:
        if not self.applies:
            return f"{self.property}: does not apply ({self.reason})"
        text = (f"{self.property} {self.verdict}: {self.measure} = {self.measured:.3g} "
                f"(must be {self.passes_when} {self.tolerance:.3g}); worst case: {self.worst_case}")
        return text + (f" [{self.reason}]" if self.reason else "")

    def as_row(self) -> dict:
        return {"property": self.property, "result": self.verdict, "measured": self.measured,
                "passes_when": self.passes_when, "tolerance": self.tolerance,
                "measure": self.measure, "worst_case": self.worst_case, "reason": self.reason}


def default_tolerance(dtype: torch.dtype) -> float:
    """Relative tolerance for exact properties: rounding of reordered sums in ``dtype``."""
    return {torch.float64: 1e-9, torch.float32: 1e-4}.get(dtype, 1e-2)


def _not_applicable(prop: str, measure: str, reason: str, tolerance: float) -> PropertyReport:
    return PropertyReport(prop, None, math.nan, tolerance, "", measure, reason=reason)


def _setup(mixer, dim, dtype, tolerance, seed, default_tol=None):
    """(float ``dtype`` copy of the mixer, its dim, the tolerance, a seeded generator)."""
    m, dim = prepare(mixer, dim, dtype)
    if tolerance is None:
        tolerance = default_tolerance(dtype) if default_tol is None else default_tol
    return m, dim, tolerance, torch.Generator().manual_seed(seed)


def _worse(worst, change: Tensor, scale: float, *where):
    """``worst`` or, when ``change`` (B, M) beats it, (deviation, *where, batch, query, change)."""
    dev = change.max().item() / scale
    if worst is None or dev > worst[0]:
        b, j = divmod(int(change.argmax()), change.shape[1])
        return (dev, *where, b, j, change.max().item())
    return worst


def _randn(gen, *shape, dtype):
    return torch.randn(*shape, dtype=dtype, generator=gen)


def _permutation(gen, n: int) -> Tensor:
    """A random permutation other than the identity (when n > 1)."""
    while True:
        perm = torch.randperm(n, generator=gen)
        if n < 2 or not torch.equal(perm, torch.arange(n)):
            return perm


def _padding(gen, batch: int, n: int) -> Tensor:
    """(batch, n) padding mask hiding about a third of the tokens, never all of them."""
    mask = torch.rand(batch, n, generator=gen) < 0.67
    mask[torch.arange(batch), torch.randint(n, (batch,), generator=gen)] = True
    return mask


def _permutation_check(prop, measure, mixer, dim, dtype, tolerance, seed, trials, padding, batch,
                       tokens, queries=None) -> PropertyReport:
    """Worst deviation over ``trials`` permutations of the tokens (context tokens with queries)."""
    m, dim, tol, gen = _setup(mixer, dim, dtype, tolerance, seed)
    cross = queries is not None
    worst, skipped = None, []
    for trial in range(trials):
        x = _randn(gen, batch, queries if cross else tokens, dim, dtype=dtype)
        c = _randn(gen, batch, tokens, dim, dtype=dtype) if cross else None
        perm, pad = _permutation(gen, tokens), _padding(gen, batch, tokens)
        for mask in ((None, pad) if padding else (None,)):
            permuted = None if mask is None else mask[:, perm]
            try:
                if cross:
                    ref = call(m, x, context=c, mask=mask)
                    got = call(m, x, context=c[:, perm], mask=permuted)
                else:
                    ref = call(m, x, mask=mask)[:, perm]
                    got = call(m, x[:, perm], mask=permuted)
            except NotApplicable as e:
                if mask is not None:
                    skipped.append(f"padding mask: {e}")
                    continue
                if not cross:
                    raise
                return _not_applicable(prop, measure, f"no cross-mixing: {e}", tol)
            worst = _worse(worst, (got - ref).abs().amax(-1), ref.abs().max().item() or 1.0,
                           trial, perm, mask is not None)
    dev, trial, perm, masked, b, j, abs_err = worst
    token = j if cross else int(perm[j])
    who = f"query {j}" if cross else f"the output of input token {token}"
    case = (f"{'context' if cross else 'tokens'} permuted as {perm.tolist()}"
            f"{' with a padding mask' if masked else ''}: {who} is off by {abs_err:.3g} (trial "
            f"{trial}, batch {b})")
    return PropertyReport(prop, dev <= tol, dev, tol, case, measure,
                          reason="; ".join(dict.fromkeys(skipped)),
                          details={"trial": trial, "permutation": perm.tolist(), "masked": masked,
                                   "query" if cross else "token": token})


def check_equivariance(mixer, dim: int | None = None, *, batch: int = 2, tokens: int = 9,
                       trials: int = 3, padding: bool = True, dtype: torch.dtype = F64,
                       tolerance: float | None = None, seed: int = 0) -> PropertyReport:
    """Permutation equivariance of self-mixing (Prop. 1): f(XP; mP) = f(X; m)P, m padding/none."""
    return _permutation_check("permutation equivariance", "max |f(XP) - f(X)P| / max |f(X)|",
                              mixer, dim, dtype, tolerance, seed, trials, padding, batch, tokens)


def check_context_invariance(mixer, dim: int | None = None, *, batch: int = 2, queries: int = 4,
                             context_tokens: int = 7, trials: int = 3, padding: bool = True,
                             dtype: torch.dtype = F64, tolerance: float | None = None,
                             seed: int = 0) -> PropertyReport:
    """Cross-mixing ignores the order of the context tokens: f(X, CP; mP) = f(X, C; m)."""
    return _permutation_check("context-order invariance",
                              "max |f(X, CP) - f(X, C)| / max |f(X, C)|", mixer, dim, dtype,
                              tolerance, seed, trials, padding, batch, context_tokens, queries)


def _mask_for(kind: str, gen, batch: int, n_query: int, n_context: int, frames: int):
    """(mask as given to the mixer, dense bool (batch, M, N)) for one mask kind."""
    mask = {"padding": lambda: _padding(gen, batch, n_context),
            "per_query": lambda: torch.rand(batch, n_query, n_context, generator=gen) < 0.5,
            "causal": lambda: "causal",
            "block_causal": lambda: masks.block_causal(frames, n_context // frames)[None]}[kind]()
    dense = masks.canonical(mask, batch, n_query, n_context, "cpu")
    return mask, dense.expand(batch, n_query, n_context)


def check_causality(mixer, dim: int | None = None, *, kinds=CAUSALITY_MASK_KINDS,
                    batch: int = 2, tokens: int = 8, frames: int = 4, cross: bool = True,
                    queries: int = 5, dtype: torch.dtype = F64, tolerance: float | None = None,
                    seed: int = 0) -> PropertyReport:
    """Masks hide what they say: no query may change when a token its mask hides changes (every
    kind in self-mixing, all but block-causal in cross-mixing); refused kinds go in ``reason``."""
    prop, measure = "mask causality", "max |change of a query's output| / max |output|"
    m, dim, tol, gen = _setup(mixer, dim, dtype, tolerance, seed)
    for kind in kinds:
        check_choice("kinds", kind, CAUSALITY_MASK_KINDS)
    if "block_causal" in kinds and tokens % frames:
        raise ValueError(f"tokens ({tokens}) must be a multiple of frames ({frames})")
    settings = ([("self-mixing", k) for k in kinds] +
                [("cross-mixing", k) for k in kinds if cross and k != "block_causal"])
    worst, per_kind, skipped, perturbations = None, {}, [], 0
    for setting, kind in settings:
        self_mixing = setting == "self-mixing"
        x = _randn(gen, batch, tokens if self_mixing else queries, dim, dtype=dtype)
        c = None if self_mixing else _randn(gen, batch, tokens, dim, dtype=dtype)
        mask, dense = _mask_for(kind, gen, batch, x.shape[1], tokens, frames)
        try:
            y = call(m, x, context=c, mask=mask)
        except NotApplicable as e:
            skipped.append(f"{kind} ({setting}): {e}")
            continue
        scale, kind_worst = y.abs().max().item() or 1.0, 0.0           # deviations are relative
        for i in range(tokens):
            hidden = ~dense[:, :, i]                               # (B, M): must not see i
            if self_mixing:
                hidden[:, i] = False
            if not hidden.any():
                continue
            x2, c2 = (x.clone(), c) if self_mixing else (x, c.clone())
            (x2 if self_mixing else c2)[:, i] = 1.0 + 2.0 * _randn(gen, batch, dim, dtype=dtype)
            perturbations += 1
            change = (call(m, x2, context=c2, mask=mask) - y).abs().amax(-1) * hidden
            kind_worst = max(kind_worst, change.max().item() / scale)
            worst = _worse(worst, change, scale, setting, kind, i)
        per_kind[f"{kind} ({setting})"] = kind_worst
    if worst is None:
        return _not_applicable(prop, measure, "; ".join(skipped) or "no mask kind given", tol)
    dev, setting, kind, i, b, j, abs_change = worst
    case = (f"{kind} mask ({setting}): query {j} changes by {abs_change:.3g} when token {i}, "
            f"which its mask hides, changes (batch {b})")
    if abs_change == 0:
        case = (f"no query changed when a token its mask hides changed ({perturbations} "
                f"perturbations, {len(per_kind)} mask settings)")
    return PropertyReport(prop, dev <= tol, dev, tol, case, measure,
                          reason=("not checked: " + "; ".join(skipped)) if skipped else "",
                          details={"kind": kind, "setting": setting, "query": j, "position": i,
                                   "batch": b, "per_kind": per_kind})


def check_step(mixer, dim: int | None = None, *, batch: int = 2, frames: int = 4,
               tokens_per_frame: int = 3, dtype: torch.dtype = F64,
               tolerance: float | None = None, seed: int = 0) -> PropertyReport:
    """``step(x, state=None) -> (y, state)`` over frames gives ``f(X, mask=block_causal(T,
    P)[None])``; float64 tolerance 1e-6, as PoM's parallel path divides by eps + count."""
    prop = "step = block-causal forward"
    measure = "max |step outputs - block-causal forward| / max |forward|"
    m, dim, tol, gen = _setup(mixer, dim, dtype, tolerance, seed, 1e-6 if dtype == F64 else None)
    step = getattr(m, "step", None)
    if not callable(step):
        return _not_applicable(prop, measure, f"{mixer_name(mixer)} has no step(x, state=None) "
                               f"method", tol)
    x = _randn(gen, batch, frames * tokens_per_frame, dim, dtype=dtype)
    try:
        parallel = call(m, x, mask=masks.block_causal(frames, tokens_per_frame)[None])
    except NotApplicable as e:
        return _not_applicable(prop, measure, f"no block-causal mask: {e}", tol)
    state, errs = None, []
    for block, expected in zip(x.split(tokens_per_frame, 1), parallel.split(tokens_per_frame, 1)):
        try:
            with torch.no_grad():
                result = step(block, state)
        except NotImplementedError as e:
            return _not_applicable(prop, measure, f"step raised NotImplementedError: {e}", tol)
        if not (isinstance(result, tuple) and len(result) == 2 and
                isinstance(result[0], Tensor) and result[0].shape == block.shape):
            raise MixerError(f"{mixer_name(mixer)}.step(x, state) must return (y, state) with "
                             f"y of x's shape {tuple(block.shape)}, got {_describe(result)}")
        y, state = result
        errs.append((y - expected).abs().max().item())
    scale = parallel.abs().max().item() or 1.0
    t = max(range(frames), key=errs.__getitem__)
    dev = errs[t] / scale
    first, last = t * tokens_per_frame, (t + 1) * tokens_per_frame - 1
    case = f"frame {t} of {frames} (tokens {first}..{last}) is off by {errs[t]:.3g}"
    return PropertyReport(prop, dev <= tol, dev, tol, case, measure,
                          details={"frame": t, "per_frame": [e / scale for e in errs]})


def _describe(result) -> str:
    if isinstance(result, tuple):
        return "(" + ", ".join(map(_describe, result)) + ")"
    return f"tensor {tuple(result.shape)}" if isinstance(result, Tensor) else type(result).__name__


def _contextual_report(values, ids, positional):
    """Definition 3.1 on keys; an order-dependent mixer is checked with positions (auto)."""
    report = check_keys(values, ids, positional=bool(positional))
    if positional is None and not report.well_defined:
        report = check_keys(values, ids, positional=True)
    return report


def check_contextual_mapping(mixer, dim: int | None = None, *, factory: Callable | None = None,
                             levels: int = 3, tokens: int = 3, positional: bool | None = None,
                             train: bool = True, steps: int = 300, seed: int = 0
                             ) -> PropertyReport:
    """Contextual mapping (Lemma 3; Yun et al.'s Def. 3.1) of ``h + mixer(h)`` on a quantised
    grid, positional keys when the mixer depends on order; failing that and with ``train``, of a
    trained block of ``factory`` (else copies of ``mixer``; docs/properties.md)."""
    prop, measure = "contextual mapping", "smallest distance between values of different keys"
    m, dim, _, gen = _setup(mixer, dim, F64, None, seed)
    grid = sequence_grid(levels, tokens, 1)
    weight, bias = _randn(gen, 1, dim, dtype=F64), 0.5 * _randn(gen, dim, dtype=F64)
    h = grid.points @ weight + bias
    report = _contextual_report(h + call(m, h), grid.ids, positional)
    stage = "at initialisation"
    if not report.holds and train:
        build = factory if factory is not None else (lambda width: copy.deepcopy(mixer))
        model, info = train_context_model(grid, build, report.positional, width=dim,
                                          steps=steps, seed=seed)
        with torch.no_grad():
            values = model.double().features(grid.points)
        report = _contextual_report(values, grid.ids, report.positional)
        stage = (f"after training a mixer block and read-out ({steps} steps, fit relative MSE "
                 f"{info['fit_rel_mse']:.3g})")
    ids, case = grid.ids.tolist(), "no two keys to compare"
    if report.closest is not None:
        a, i, b, j = report.closest
        case = (f"token {i} of sequence {ids[a]} and token {j} of sequence {ids[b]} are "
                f"{report.separation:.3g} apart")
    if not report.well_defined:
        case = f"values not a function of the keys (spread {report.spread:.3g}); " + case
    mode = "with positions" if report.positional else "up to permutations"
    return PropertyReport(
        prop, report.holds, report.separation, report.tolerance, f"{case} ({stage})", measure,
        passes_when=">", reason=f"{levels} levels, {tokens} tokens, {len(grid)} sequences, keys "
                                f"{mode}",
        details={"report": report, "stage": stage, "positional": report.positional,
                 "relative_separation": report.relative_separation})


# quick: seconds on a CPU (`center`, n = 4: a token-wise map has relative MSE >= 1/n = 0.25)
UA_QUICK = dict(tasks=("center",), tokens=4, width=16, depth=1, steps=150, batch_size=64,
                lr=1e-2, test_size=1024)
UA_FULL = dict(tasks=("center", "count", "rank", "pairwise"), tokens=8, width=32, depth=1,
               steps=400, batch_size=128, lr=3e-3, test_size=2048)
# short column labels of the report's table (the theory figures say "token-wise MLP")
BASELINES = {"pom": "PoM", "mha": "MHA", "none": "MLP (no mixing)"}


def check_universal_approximation(factory: Callable, *, name: str | None = None,
                                  quick: bool = False, baselines=("pom", "mha", "none"),
                                  ratio: float = 0.5, seed: int = 0, progress: bool = False,
                                  **settings) -> PropertyReport:
    """Train ``factory(width)`` mixers on toy seq2seq tasks beside the ``baselines`` (settings
    ``UA_QUICK`` or ``UA_FULL``, each overridable); holds when on every task the held-out error
    is at most ``ratio`` times the token-wise MLP's. details: "table" (task x mixer), "rows"."""
    prop, measure = "universal approximation", "held-out rel. MSE / token-wise MLP's (worst task)"
    unknown = set(settings) - set(UA_FULL)
    if unknown:
        raise TypeError(f"unknown settings {sorted(unknown)}; expected some of {sorted(UA_FULL)}")
    cfg = {**(UA_QUICK if quick else UA_FULL), **settings}
    tasks = tuple(cfg.pop("tasks"))
    label = name or mixer_name(factory)
    if label in BASELINES.values() or label in BASELINES:
        label += " (checked)"                   # never mistaken for a baseline row
    baselines = tuple(dict.fromkeys(tuple(baselines) + ("none",)))
    jobs = [(task, mixer) for task in tasks for mixer in (None,) + baselines]
    rows = []
    for task, mixer in tqdm(jobs, desc="universal approximation", leave=False,
                            disable=not progress):
        run = ToyRun(task, label if mixer is None else mixer, seed=seed, **cfg)
        row = train_toy(run, mixer_factory=factory if mixer is None else None)
        row["mixer"] = label if mixer is None else BASELINES.get(mixer, mixer)
        rows.append(row)
    table = pd.DataFrame(rows).pivot(index="task", columns="mixer", values="test_rel_mse")
    table = table.loc[list(tasks), [label] + [BASELINES.get(b, b) for b in baselines]]
    table.columns.name = None
    ratios = table[label] / table[BASELINES["none"]]
    worst_task, dev = ratios.idxmax(), float(ratios.max())
    others = ", ".join(f"{c} {table.loc[worst_task, c]:.3g}" for c in table.columns[1:])
    case = f"task {worst_task}: {label} {table.loc[worst_task, label]:.3g} ({others})"
    return PropertyReport(
        prop, dev <= ratio, dev, ratio, case, measure,
        reason=(f"{len(tasks)} task(s), {cfg['tokens']} tokens, width {cfg['width']}, depth "
                f"{cfg['depth']}, {cfg['steps']} steps, {cfg['test_size']} held-out sequences"),
        details={"table": table, "rows": rows, "ratios": ratios.to_dict()})


def _assert_twin(check):
    def assert_property(*args, **kwargs) -> PropertyReport:
        report = check(*args, **kwargs)
        if report.holds is not True:
            raise AssertionError(report.summary())
        return report
    assert_property.__name__ = "assert_" + check.__name__.removeprefix("check_")
    assert_property.__qualname__ = assert_property.__name__
    assert_property.__doc__ = (f"``{check.__name__}`` for pytest: the report if the property "
                               f"holds, else AssertionError with its summary.")
    return assert_property


(assert_equivariance, assert_context_invariance, assert_causality, assert_step,
 assert_contextual_mapping, assert_universal_approximation) = map(_assert_twin, (
    check_equivariance, check_context_invariance, check_causality, check_step,
    check_contextual_mapping, check_universal_approximation))


# every check as `python -m pomlab.properties` runs them: name -> (check, quick settings, full)
CHECKS = {
    "equivariance": (check_equivariance, dict(trials=2), dict(trials=3)),
    "context_invariance": (check_context_invariance, dict(trials=2), dict(trials=3)),
    "causality": (check_causality, dict(tokens=8, frames=4), dict(tokens=12, frames=4)),
    "step": (check_step, dict(frames=3), dict(frames=5)),
    "contextual_mapping": (check_contextual_mapping, dict(levels=3, tokens=3, steps=150),
                           dict(levels=4, tokens=4, steps=400)),
    "universal_approximation": (check_universal_approximation, dict(quick=True),
                                dict(quick=False)),
}


def run_all(factory, dim: int = 64, *, quick: bool = False, only=None,
            dtype: torch.dtype = torch.float64, name: str | None = None,
            progress: bool = False) -> list[PropertyReport]:
    """Run every check (or those in ``only``) on ``factory(dim)`` (universal approximation at its
    own width); a check that raises is reported as failing, with the error."""
    only = list(CHECKS) if only is None else list(only)
    unknown = [c for c in only if c not in CHECKS]
    if unknown:
        raise ValueError(f"unknown check(s) {unknown}; choose among {list(CHECKS)}")
    mixer = build_mixer(factory, dim, dtype)
    name = name or mixer_name(mixer)
    reports = []
    bar = tqdm(only, desc="properties", disable=not progress)
    for check_name in bar:
        bar.set_postfix_str(check_name)
        check, quick_settings, full_settings = CHECKS[check_name]
        settings = quick_settings if quick else full_settings
        # universal approximation trains factory-built mixers; contextual mapping may too
        args = (factory,) if check_name == "universal_approximation" else (mixer, dim)
        extra = {"universal_approximation": dict(name=name, progress=progress),
                 "contextual_mapping": dict(factory=factory)}.get(check_name, dict(dtype=dtype))
        try:
            report = check(*args, **extra, **settings)
        except MixerError:
            raise
        except Exception as e:
            report = PropertyReport(check_name.replace("_", " "), False, float("nan"),
                                    float("nan"), f"raised {type(e).__name__}: {e}",
                                    "the check could not run")
        reports.append(report)
    return reports
