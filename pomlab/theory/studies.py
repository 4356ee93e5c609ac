"""The theory studies of experiments/contextual_mapping.py and universal_approximation.py."""
from __future__ import annotations

import time

import torch

from ..benchmark import device_label
from ..nn.blocks import MIXERS
from .construction import ConstructedContextualMap, lemma_degree
from .contextual import check_contextual_mapping, sequence_grid
from .tasks import TASKS, count_parameters
from .training import ToyRun, train_context_model


def _row(grid, positional, model_name, report, **extra) -> dict:
    return {"levels": grid.levels, "tokens": grid.tokens, "dim": grid.dim,
            "positional": positional, "alphabet": grid.alphabet, "sequences": len(grid),
            "exhaustive_grid": grid.exhaustive, "model": model_name, **report.as_dict(),
            "closest": str(report.closest), **extra, "device": device_label("cpu")}


def contextual_mapping_rows(levels: int, tokens: int, dim: int = 1, positional: bool = False,
                            *, width: int = 32, degree: int = 2, expand: int = 2, heads: int = 2,
                            steps: int = 600, seed: int = 0, extra_degrees: tuple = ()
                            ) -> list[dict]:
    """Definition 3.1 on one grid for Lemma 3's constructed PoM (also at ``extra_degrees``) and
    PoM, MHA and the token-wise MLP at initialisation and trained ``steps`` to fit the keys."""
    from .plots import MIXER_LABELS         # the figures' names (plots loads matplotlib)
    grid, lemma, rows = sequence_grid(levels, tokens, dim), lemma_degree(tokens), []
    for k in (lemma,) + tuple(extra_degrees):
        constructed = ConstructedContextualMap(levels, tokens, dim, positional, k)
        with torch.no_grad():
            report = check_contextual_mapping(constructed(grid.points), grid.ids, positional)
        name = ("Lemma 3, degree n-1" if k == lemma else
                f"degree n{k - tokens:+d}" + (", below Lemma 3" if k < lemma else ""))
        bound = constructed.proven_separation if k >= lemma else float("nan")
        rows.append(_row(grid, positional, f"PoM constructed ({name})", report,
                         proven_lower_bound=bound, degree=k,
                         params=count_parameters(constructed), trained_steps=0))
    for mixer in MIXERS:
        label = MIXER_LABELS[mixer]
        settings = dict(width=width, degree=degree, expand=expand, heads=heads, seed=seed)
        init, _ = train_context_model(grid, mixer, positional, steps=0, **settings)
        start = time.perf_counter()
        trained, info = train_context_model(grid, mixer, positional, steps=steps, **settings)
        seconds = time.perf_counter() - start
        for name, model, fit, n_steps in ((f"{label} random init", init, float("nan"), 0),
                                          (f"{label} trained", trained, info["fit_rel_mse"],
                                           steps)):
            with torch.no_grad():
                values = model.double().features(grid.points)
            report = check_contextual_mapping(values, grid.ids, positional)
            rows.append(_row(grid, positional, name, report, proven_lower_bound=float("nan"),
                             degree=degree if mixer == "pom" else float("nan"),
                             width=width, params=count_parameters(model), trained_steps=n_steps,
                             fit_rel_mse=fit, train_seconds=seconds if n_steps else 0.0,
                             seed=seed))
    return rows


def capacity_sweep(tasks=None, *, ladder=((8, 1), (16, 1), (32, 1), (32, 2)),
                   degrees=(1, 2, 3, 4), degree_width: int = 16, degree_depth: int = 1,
                   steps: int = 800, tokens: int = 8, seed: int = 0) -> list[ToyRun]:
    """Runs of the universal-approximation study: each (width, depth) of ``ladder`` for every
    mixer, then PoM at every degree of ``degrees`` at (degree_width, degree_depth)."""
    tasks = list(TASKS) if tasks is None else list(tasks)
    common = dict(steps=steps, tokens=tokens, seed=seed)
    runs = [ToyRun(task, mixer, width=width, depth=depth, **common)
            for width, depth in ladder for task in tasks for mixer in MIXERS]
    runs += [ToyRun(task, "pom", width=degree_width, depth=degree_depth, degree=degree, **common)
             for degree in degrees for task in tasks]
    return list(dict.fromkeys(runs))                    # degree 2 may repeat a ladder run


def ladder_rows(df):
    """The capacity-ladder rows of the universal-approximation CSV (PoM at degree 2 only)."""
    return df[(df.mixer != "pom") | (df.degree == 2)]


def largest_model_errors(df):
    """Held-out relative MSE of each mixer's largest ladder model: a (task x mixer) table."""
    biggest = ladder_rows(df).sort_values("params").groupby(["task", "mixer"]).tail(1)
    return biggest.pivot(index="task", columns="mixer", values="test_rel_mse")
