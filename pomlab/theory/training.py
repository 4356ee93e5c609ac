"""The theory studies (experiments/contextual_mapping.py, universal_approximation.py) and their
training: toy seq2seq runs (relative MSE on a fixed held-out set, of standardised targets: 1 =
predicting the mean), resumable sets of runs, context models."""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..benchmark import device_label
from ..checks import check_choice
from ..io import atomic_to_csv, read_csv_exact
from ..nn.blocks import MIXERS
from .contextual import (ConstructedContextualMap, SequenceGrid, check_contextual_mapping,
                         context_keys, lemma_degree, sequence_grid)
from .tasks import TASKS, ToySeqModel, count_parameters, default_heads, get_task

TEST_SEED = 20_241_119           # the held-out set is the same for every run of a task
# the studies' and figures' names: "none" is the token-wise control, not just "no mixing"
MIXER_LABELS = {"pom": "PoM", "mha": "MHA", "none": "token-wise MLP (no mixing)"}


@dataclass(frozen=True)
class ToyRun:
    """One toy training run; ``mixer``: one of MIXERS, or the label of train_toy's mixer_factory."""

    task: str
    mixer: str
    width: int = 32
    depth: int = 2
    degree: int = 2
    expand: int = 2
    heads: int = 0                 # 0: default_heads(width)
    tokens: int = 8
    steps: int = 1500
    batch_size: int = 128
    lr: float = 3e-3
    seed: int = 0
    test_size: int = 4096

    def __post_init__(self):
        get_task(self.task)
        if not isinstance(self.mixer, str) or not self.mixer:
            raise ValueError(f"mixer must be one of {MIXERS} or a label, got {self.mixer!r}")


def _fit(model: nn.Module, batch: Callable[[], tuple[Tensor, Tensor]], steps: int, lr: float,
         clip: float | None = None, progress: str | None = None) -> list[float]:
    """MSE regression on ``steps`` batch()es: AdamW, 5% linear warm-up, cosine decay; losses."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    warmup = max(1, steps // 20)

    def factor(step: int) -> float:
        cosine = 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))
        return (step + 1) / warmup if step < warmup else cosine
    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    losses = []
    for _ in tqdm(range(steps), desc=progress, leave=False, disable=progress is None):
        x, target = batch()
        loss = ((model(x) - target) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        sched.step()
        losses.append(loss.item())
    return losses


def train_toy(run: ToyRun, progress: bool = False,
              mixer_factory: Callable[[int], nn.Module] | None = None) -> dict:
    """Train one model on one toy task; returns a labelled result row. mixer_factory: a user's
    mixer, built as ``mixer_factory(run.width)`` in every block; ``run.mixer`` is its label."""
    if mixer_factory is None:
        check_choice("mixer", run.mixer, MIXERS)
    task = get_task(run.task)
    x_test, y_test = task.sample(run.test_size, run.tokens,
                                 torch.Generator().manual_seed(TEST_SEED + run.tokens))
    mean, std = y_test.mean((0, 1)), y_test.std((0, 1)).clamp_min(1e-8)
    torch.manual_seed(run.seed)
    model = ToySeqModel(task.in_dim, task.out_dim,
                        mixer=run.mixer if mixer_factory is None else mixer_factory,
                        width=run.width, depth=run.depth, degree=run.degree, expand=run.expand,
                        heads=run.heads or None, positional=task.positional, tokens=run.tokens)
    gen = torch.Generator().manual_seed(run.seed)

    def batch():                                 # fresh samples every step
        x, y = task.sample(run.batch_size, run.tokens, gen)
        return x, (y - mean) / std
    start = time.perf_counter()
    recent = _fit(model, batch, run.steps, run.lr, clip=1.0,
                  progress=f"{run.task}/{run.mixer}" if progress else None)[-50:]
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(xb) for xb in x_test.split(1024)])
        test_rel_mse = ((pred - (y_test - mean) / std) ** 2).mean().item()
    return {**asdict(run), "heads": run.heads or default_heads(run.width),
            "params": count_parameters(model), "test_rel_mse": test_rel_mse,
            "train_rel_mse": sum(recent) / len(recent), "seconds": time.perf_counter() - start,
            "dataset": f"synthetic {run.task} (fresh samples each step, {run.test_size} "
                       f"held-out sequences of {run.tokens} tokens)",
            "metric": "relative MSE (standardised targets; 1 = predict the mean)",
            "device": device_label("cpu")}


def train_toy_runs(runs: list[ToyRun], csv_path: str | Path, progress: bool = True,
                   deadline: float | None = None) -> pd.DataFrame:
    """Train every run not already in ``csv_path`` (resumable), saving after each run.
    deadline: a time.time() after which no new run starts (finished rows are kept)."""
    for run in runs:
        check_choice("mixer", run.mixer, MIXERS)
    csv_path = Path(csv_path)
    # "heads" is stored resolved (0 -> default_heads(width)): compare on the other settings
    keys = [f.name for f in fields(ToyRun) if f.name != "heads"]
    # rows are read back and rewritten after every run: floats must survive exactly
    done = read_csv_exact(csv_path) if csv_path.exists() else pd.DataFrame(columns=keys)
    finished = set(map(tuple, done[keys].astype(str).values.tolist()))
    todo = [r for r in runs if tuple(str(getattr(r, k)) for k in keys) not in finished]
    rows = done.to_dict("records")
    for run in tqdm(todo, desc="runs", disable=not progress):
        if deadline is not None and time.time() > deadline:
            break
        rows.append(train_toy(run))
        atomic_to_csv(pd.DataFrame(rows), csv_path)
    return pd.DataFrame(rows)


def train_context_model(grid: SequenceGrid, mixer: str | Callable[[int], nn.Module] = "pom",
                        positional: bool = False, *,
                        width: int = 32, degree: int = 2, expand: int = 2, heads: int = 2,
                        out_dim: int = 8, steps: int = 600, lr: float = 3e-3, seed: int = 0
                        ) -> tuple[ToySeqModel, dict]:
    """Train one mixer block (full batch) to fit a random N(0, 1) target per contextual key of
    ``grid`` (possible only if its output is a contextual mapping); (model, info)."""
    torch.manual_seed(seed)
    _, key = context_keys(grid.ids, positional)
    table = torch.randn(int(key.max()) + 1, out_dim, generator=torch.Generator().manual_seed(seed))
    x, y = grid.points.float(), table[torch.from_numpy(key)]
    model = ToySeqModel(grid.dim, out_dim, mixer=mixer, width=width, depth=1, degree=degree,
                        expand=expand, heads=heads, positional=positional, tokens=grid.tokens)
    _fit(model, lambda: (x, y), steps, lr)                       # full batch
    with torch.no_grad():
        fit = ((model(x) - y) ** 2).mean().item() / y.var().item()
    return model, {"fit_rel_mse": fit, "steps": steps, "width": width, "mixer": model.mixer_kind,
                   "params": count_parameters(model)}


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
        for name, model, fit, n in ((f"{label} random init", init, float("nan"), 0),
                                    (f"{label} trained", trained, info["fit_rel_mse"], steps)):
            with torch.no_grad():
                values = model.double().features(grid.points)
            report = check_contextual_mapping(values, grid.ids, positional)
            rows.append(_row(grid, positional, name, report, proven_lower_bound=float("nan"),
                             degree=degree if mixer == "pom" else float("nan"), width=width,
                             params=count_parameters(model), trained_steps=n, fit_rel_mse=fit,
                             train_seconds=seconds if n else 0.0, seed=seed))
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
