"""Run a scaling sweep: train every (mixer, size) through pomlab.train, evaluate FID/IS at the
evaluation steps, write the rows, merge, fit and plot; resumable, in parallel worker processes or
under torchrun (docs/scaling.md)."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
import torch
import torch.distributed as dist

from ..benchmark import device_label
from ..checks import as_setting_errors, check_int
from ..data import load_vae
from ..faults import fault_point
from ..io import atomic_write_yaml, remove_stale_temp_files
from ..metrics import get_backend
from ..models.registry import SIZES
from ..processes import die_with_parent
from ..train import TrainConfig, Trainer, distributed_env, join_process_group, pick_device
from ..train.checkpoints import rng_state, set_rng_state
from .compute import FORWARD_AND_BACKWARD, gflops_per_image, images_seen, training_compute_gflops
from .config import SweepConfig, model_name, run_folder_name
from .evaluation import Evaluator, vae_source
from .fits import with_wall_clock, write_fits
from .plots import plot_scaling
from .results import (RESULT_COLUMNS, RUN_EVALS, RUN_TIMINGS, TIMING_COLUMNS, check_settings,
                      folder_lock, load_results, load_timings, merge_results, read_rows, run_dir,
                      run_lock, write_row)

Report = Callable[[dict], None]


@dataclass
class SweepResult:
    out: Path
    results: pd.DataFrame       # results.csv (every model in OUT, not only this call's)
    fits: dict | None           # fits.json's content
    figures: list[Path]
    evaluations: int            # evaluations done by this call (0: everything was already there)


def _run_folder(config: SweepConfig, mixer: str, size: str) -> Path:
    return run_dir(config.out, run_folder_name(mixer, size, config.patch, config.seed))


def train_config(config: SweepConfig, mixer: str, size: str, device: str | None = None
                 ) -> TrainConfig:
    """config.train for one model of the sweep: its model, run folder (and worker's device)."""
    return dataclasses.replace(config.train, model=model_name(mixer, size, config.patch),
                               device=device or config.train.device,
                               out=str(_run_folder(config, mixer, size)))


def pending_steps(config: SweepConfig, mixer: str, size: str) -> list[int]:
    """The evaluation steps of one model without a row in its evals.csv."""
    done = {int(r["step"]) for r in read_rows(_run_folder(config, mixer, size) / RUN_EVALS)}
    return [s for s in config.eval_steps if s not in done]


@contextlib.contextmanager
def preserved_rng(device: torch.device):
    """Evaluation must not move any RNG the training uses, so that an evaluated-then-continued
    run equals one resumed from the checkpoint written before the evaluation."""
    state = rng_state(device)
    try:
        yield
    finally:                          # an exception too (torch.random.fork_rng did so before)
        set_rng_state(state, device)


def run_model(config: SweepConfig, mixer: str, size: str, *, device: str | None = None,
              report: Report | None = None, callbacks: Sequence = (), jobs: int = 1) -> int:
    """Train one model (resuming) to each pending evaluation step and evaluate it there, its run
    folder locked; returns the number of evaluations done. Every rank calls it."""
    if not pending_steps(config, mixer, size):
        return 0
    name, folder = model_name(mixer, size, config.patch), _run_folder(config, mixer, size)
    report = report or (lambda event: None)
    with contextlib.ExitStack() as held:
        def take_run():
            held.enter_context(run_lock(folder, name))
            stale = remove_stale_temp_files(folder)    # ours alone now: left by a killed writer
            if stale:
                print(f"{name}: removed {len(stale)} unfinished temporary file(s) of a killed "
                      f"run ({', '.join(p.name for p in stale[:3])})", file=sys.stderr)

        def on_log(trainer, row):
            if trainer.is_main:
                report({"kind": "step", "model": name, "seed": config.seed, "step": row["step"]})

        _on_rank0_then_share(take_run)
        pending = pending_steps(config, mixer, size)       # again, under the lock
        if not pending:
            return 0
        trainer = Trainer(train_config(config, mixer, size, device), resume=True, progress=False,
                          callbacks=[on_log, *callbacks])
        held.callback(trainer.close)                      # closed before the lock is released
        resumed_from = trainer.step
        report({"kind": "start", "model": name, "seed": config.seed, "step": trainer.step})
        with preserved_rng(trainer.device):     # building a metric network draws random weights
            evaluator = Evaluator(config, trainer, cache_dir=Path(config.out) / "reference")
        gflops = gflops_per_image(trainer.model)
        label = device_label(trainer.device) + (f" x{trainer.world_size} ranks"
                                                if trainer.world_size > 1 else "")
        for step in pending:
            if trainer.step > step:
                raise RuntimeError(
                    f"{str(folder)!r} has trained to step {trainer.step}, past its unfinished "
                    f"evaluation at step {step} (was its evals.csv removed?); delete that run "
                    "folder to redo this model")
            wall, cpu = time.perf_counter(), time.process_time()
            trainer.run(until=step)
            train_wall, train_cpu = time.perf_counter() - wall, time.process_time() - cpu
            wall, cpu = time.perf_counter(), time.process_time()
            with preserved_rng(trainer.device):
                metrics = evaluator(trainer)
            eval_wall, eval_cpu = time.perf_counter() - wall, time.process_time() - cpu
            if trainer.is_main:
                seen = images_seen(step, config.batch_size)
                row = {**{k: metrics.get(k) for k in RESULT_COLUMNS},   # None: not measured
                       **{k: getattr(config, k) for k in ("scale", "patch", "dataset", "backend",
                                                          "batch_size", "sample_steps",
                                                          "cfg_guidance", "seed")},
                       "model": name, "mixer": mixer, "size": size, "step": step,
                       "images_seen": seen, "gflops_per_image": gflops,
                       "train_compute_gflops": training_compute_gflops(gflops, seen),
                       "sample_method": config.sample_method or trainer.process.default_method,
                       "cfg": float(config.cfg), "device": label}
                timing = {"model": name, "seed": config.seed, "step": step,
                          "train_seconds": train_wall, "eval_seconds": eval_wall,
                          "train_cpu_seconds": train_cpu, "eval_cpu_seconds": eval_cpu,
                          "resumed_from": resumed_from, "threads": torch.get_num_threads(),
                          "jobs": jobs, "world_size": trainer.world_size, "device": label}
                write_row(folder / RUN_TIMINGS, timing, TIMING_COLUMNS)
                write_row(folder / RUN_EVALS, row, RESULT_COLUMNS)   # last: the row means "done"
                trainer.logger.scalars(step, {   # tags named by the metric (e.g. digits-FID)
                    row["fid_name"]: row["fid"], row["is_name"]: row["is_mean"],
                    **({f"{row['pr_name']} {k}": row[k] for k in ("precision", "recall")}
                       if row["pr_name"] else {}),
                    **({row["kid_name"]: row["kid_mean"]} if row["kid_name"] else {})}, "eval/")
                report({"kind": "eval", **row})
            resumed_from = None
            if trainer.world_size > 1:
                dist.barrier()
        return len(pending)


# --- worker processes ---------------------------------------------------------------------

_WORKER: dict = {}


def _init_worker(parent_pid: int, threads: int, devices, events) -> None:
    die_with_parent(parent_pid)     # a killed sweep must not leave workers training (and locking)
    torch.set_num_threads(threads)
    _WORKER.update(device=devices.get() if devices is not None else None, events=events)


def _run_in_worker(config: SweepConfig, mixer: str, size: str, jobs: int) -> int:
    return run_model(config, mixer, size, device=_WORKER["device"],
                     report=_WORKER["events"].put, jobs=jobs)


def _drain(events, report) -> None:
    while not events.empty():         # one reader (this process): get() never waits here
        report(events.get())


def _run_parallel(config, models, jobs, threads, device, report) -> int:
    # Plain queues, no multiprocessing.Manager: a manager is one more process, which a SIGKILL of
    # this one would leave behind. The workers follow this process (die_with_parent).
    context = multiprocessing.get_context("spawn")     # fork + torch threads can deadlock
    events, devices = context.Queue(), None
    if device.type == "cuda":
        devices = context.Queue()
        for index in range(jobs):
            devices.put(f"cuda:{index}")
    done, errors = 0, []
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker,
                             initargs=(os.getpid(), threads, devices, events)) as pool:
        futures = {pool.submit(_run_in_worker, config.for_seed(seed), m, s, jobs):
                   f"{model_name(m, s, config.patch)} seed {seed}" for m, s, seed in models}
        remaining = set(futures)
        while remaining:
            finished, remaining = wait(remaining, timeout=0.25, return_when=FIRST_COMPLETED)
            _drain(events, report)
            for future in finished:
                try:
                    done += future.result()
                except Exception as exc:          # let the other models finish first
                    errors.append(f"{futures[future]}: {type(exc).__name__}: {exc}")
                merge_results(config.out)
    _drain(events, report)
    if errors:
        raise RuntimeError("some models failed (the others' results are saved):\n  " +
                           "\n  ".join(errors))
    return done


# --- the sweep ----------------------------------------------------------------------------

def resolve_device(device: str) -> torch.device:
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(auto if device == "auto" else device)


def default_jobs(device: torch.device) -> int:
    """CPU: one per core, at most 2 (tiny models are memory-bound); CUDA: one per visible GPU."""
    if device.type == "cuda":
        return torch.cuda.device_count() if device.index is None else 1
    return max(1, min(2, os.cpu_count() or 1))


def _on_rank0_then_share(fn):
    """fn() on rank 0, returning its result there; under DDP every rank raises its exception."""
    rank, world, _ = distributed_env()
    result = error = None
    if rank == 0:
        try:
            result = fn()
        except Exception as exc:          # shared below, so no rank is left waiting
            error = exc
    if world > 1:
        box = [error]
        dist.broadcast_object_list(box, src=0)
        error = box[0]
    if error is not None:
        raise error
    return result


def model_costs(config: SweepConfig, mixer: str, size: str) -> tuple[float, float]:
    """Estimated FLOPs of a training step and of an evaluation (on the meta device); (1, 0) when
    the estimate fails: it never stops a sweep."""
    from ..models import create, gflops

    try:
        with torch.device("meta"):
            model = create(model_name(mixer, size, config.patch), scale=config.scale,
                           **config.model_overrides)
        forward = gflops(model, config.image_size) * 1e9
    except Exception:
        return 1.0, 0.0
    method = config.sample_method or ("heun" if config.loss == "flow" else "ddim")
    calls = config.sample_steps * (2 if method == "heun" else 1) * (1 if config.cfg == 1 else 2)
    return (FORWARD_AND_BACKWARD * forward * config.batch_size,
            forward * calls * config.fid_samples)


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return (f"{s} s" if s < 60 else f"{s // 60} min {s % 60:02d} s" if s < 3600
            else f"{s // 3600} h {s % 3600 // 60:02d} min")


class _Progress:
    """Progress weighted by estimated FLOPs (model_costs): a tqdm bar on a terminal, else (a log
    file) the progress and time left appended to each evaluation line."""

    def __init__(self, config: SweepConfig, models, enabled: bool, log):
        from tqdm.auto import tqdm

        self.log, self.enabled, self.last = log, enabled, {}
        self.total, self.done, self.start = 0.0, 0.0, None   # clock starts with the first model
        self.costs = {model_name(m, z, config.patch): model_costs(config, m, z)
                      for m, z in dict.fromkeys((m, z) for m, z, _ in models)}
        for mixer, size, seed in models:
            pending = pending_steps(config.for_seed(seed), mixer, size)
            done = max([0] + [s for s in config.eval_steps if s not in pending])
            step_cost, eval_cost = self.costs[model_name(mixer, size, config.patch)]
            self.total += (config.steps - done) * step_cost + len(pending) * eval_cost
        self.bar = tqdm(total=self.total, unit="FLOP", unit_scale=True, dynamic_ncols=True,
                        desc="sweep (estimated FLOPs)",
                        disable=not (enabled and sys.stderr.isatty()),
                        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}]")

    def __call__(self, event: dict) -> None:
        kind, run = event["kind"], (event["model"], event.get("seed", 0))   # a model and a seed
        step_cost, eval_cost = self.costs.get(event["model"], (1.0, 0.0))
        if kind == "start":
            if self.start is None:             # not counting the workers' start-up
                self.start = time.perf_counter()
            self.last[run] = max(self.last.get(run, 0), event["step"])
            return
        flops = (eval_cost if kind == "eval" else
                 max(0, event["step"] - self.last.get(run, 0)) * step_cost)
        self.done += flops
        self.bar.update(flops)
        if kind == "step":
            self.last[run] = event["step"]
            return
        seed = f" seed {run[1]}" if run[1] else ""
        line = (f"{run[0]}{seed} step {event['step']} ({event['train_compute_gflops']:.3g} "
                f"GFLOPs): {event['fid_name']} {event['fid']:.3f}, {event['is_name']} "
                f"{event['is_mean']:.3f}")
        if not self.bar.disable:
            self.bar.write(line)
            return
        if self.enabled:                  # "sweep 42%, 3 min 10 s elapsed, ~4 min 20 s left"
            elapsed = time.perf_counter() - self.start if self.start is not None else 0.0
            fraction = min(1.0, self.done / self.total) if self.total else 1.0
            left = (f", ~{_duration(elapsed * (1 - fraction) / fraction)} left"
                    if 0 < fraction < 1 else "")
            line += f"  [sweep {100 * fraction:.0f}%, {_duration(elapsed)} elapsed{left}]"
        self.log(line)
        sys.stdout.flush()                # a log file shows each line when it happens

    def close(self):
        self.bar.close()


def finalize(out: str | os.PathLike) -> tuple[pd.DataFrame, dict | None, list[Path]]:
    """Merge every run's rows into results.csv, fit and plot, all under OUT's lock (so fits and
    figures are never older than results.csv); any job may call it at any time."""
    out = Path(out)
    with folder_lock(out):
        results = merge_results(out, locked=True)
        if results.empty:
            return results, None, []
        return (results, *refit(out, results, fault="finalize"))


def refit(out: str | os.PathLike, results: pd.DataFrame | None = None, *,
          fault: str | None = None) -> tuple[dict, list[Path]]:
    """Fit and plot OUT's results.csv and timings.csv (fits.json/csv, scaling[_wall].png/pdf)
    without merging the runs: for a folder holding only the CSVs."""
    out = Path(out)
    results = load_results(out) if results is None else results
    timings = load_timings(out)
    fits = write_fits(results, out / "fits.json", out / "fits.csv", timings=timings)
    if fault:
        fault_point(fault)
    figures = plot_scaling(results, fits["fits"], out / "scaling")
    if any(f["x"] == "wall" for f in fits["fits"]):
        figures += plot_scaling(with_wall_clock(results, timings), fits["fits"],
                                out / "scaling_wall", x="wall")
    return fits, figures


def preflight(config: SweepConfig) -> str:
    """Fail before any training when data, metric backend or VAE is missing; the metric names."""
    meta_file = Path(config.data_path or "") / "meta.json"
    if config.dataset == "latents" and not meta_file.is_file():
        raise FileNotFoundError(f"{config.data_path!r} is not a latent folder (no meta.json): "
                                "encode the images first with experiments/encode_latents.py "
                                "and pass the folder as --data-path")
    if config.dataset in ("folder", "cifar10") and not Path(config.data_path).exists():
        raise FileNotFoundError(f"--data-path {config.data_path!r} does not exist")
    if config.reference != "data" and not Path(config.reference).expanduser().exists():
        raise FileNotFoundError(f"reference {config.reference!r} does not exist")
    backend = get_backend(config.backend, weights=config.backend_weights, device="cpu")
    if config.dataset == "latents":     # now, not at the first evaluation hours from now
        load_vae(vae_source(config, json.loads(meta_file.read_text())))
    return f"{backend.fid_name}/{backend.is_name}"


def run_sweep(config: SweepConfig, *, jobs: int | None = None, threads: int | None = None,
              progress: bool = True, callbacks: Sequence = (), log: Callable[[str], None] = print
              ) -> SweepResult:
    """Run (or resume) the sweep into config.out; callbacks go to every Trainer (in-process runs:
    jobs=1 or under torchrun)."""
    config.validate()
    out = Path(config.out)
    rank, world, local_rank = distributed_env()
    device = resolve_device(config.device)
    owns_group = False
    if world > 1:
        jobs = 1
        if "TORCHELASTIC_RUN_ID" in os.environ:       # torchrun's ranks end with their agent
            die_with_parent()
        owns_group = join_process_group(pick_device(config.device, local_rank))
    with as_setting_errors():
        jobs = check_int("jobs", jobs or default_jobs(device))
    if device.type == "cuda" and jobs > 1:
        if device.index is not None:
            raise ValueError(f"--device {device} runs one job; use --device cuda (or auto) to "
                             "run one job per GPU")
        if jobs > torch.cuda.device_count():
            raise ValueError(f"jobs={jobs} but only {torch.cuda.device_count()} GPUs are visible")
    if callbacks and jobs > 1:
        raise ValueError("callbacks run inside the training loop: they need jobs=1")
    # GPU: the cores shared by this machine's processes (jobs, or torchrun's local ranks)
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if world > 1 else jobs
    threads = threads or (1 if device.type == "cpu" else
                          max(1, (os.cpu_count() or 1) // local_processes))

    def check():
        metric = preflight(config)
        check_settings(out, config)
        # the resolved settings: `--config OUT/config.yaml --out OUT2` repeats this sweep
        atomic_write_yaml(out / "config.yaml",
                          {k: v for k, v in config.to_dict().items() if k != "out"})
        return metric

    metric = _on_rank0_then_share(check)
    # the runs with pending evaluations, largest models first (XL ... S, DiPoM before DiT: the
    # costlier of each size), so parallel workers finish together
    models = sorted(((m, z, seed) for m, z in config.models() for seed in config.seeds
                     if pending_steps(config.for_seed(seed), m, z)),
                    key=lambda run: (-SIZES.index(run[1]), run[0] != "pom", run[2]))
    jobs = min(jobs, max(1, len(models)))
    is_main = rank == 0
    if is_main:
        log(f"scaling sweep: scale={config.scale} dataset={config.dataset} "
            f"backend={config.backend} ({metric}) device={device_label(device).split(' x')[0]}"
            f"{f' x{world} ranks' if world > 1 else ''} jobs={jobs} threads/job={threads}")
        log(f"  models {', '.join(model_name(m, s, config.patch) for m, s in config.models())}"
            f" ({config.scale} scale), seeds {','.join(map(str, config.seeds))}; {len(models)} "
            f"runs with pending evaluations; steps {config.steps} x batch {config.batch_size}; "
            f"evaluations at steps {list(config.eval_steps)} on {config.fid_samples} samples "
            f"({config.sample_steps} sampling steps, cfg {config.cfg}); out {out}")
    bar = _Progress(config, models, progress and is_main, log if is_main else (lambda s: None))
    done = 0
    try:
        if jobs > 1:
            done = _run_parallel(config, models, jobs, threads, device, bar)
        else:
            previous = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                for mixer, size, seed in models:
                    done += run_model(config.for_seed(seed), mixer, size, report=bar,
                                      callbacks=callbacks)
                    if is_main:
                        merge_results(out)
            finally:
                torch.set_num_threads(previous)
                if is_main:                        # interrupted too: results.csv shows the rows
                    merge_results(out)
    finally:
        bar.close()
        if owns_group:
            dist.barrier()
    try:
        return SweepResult(out, *(finalize(out) if is_main else (pd.DataFrame(), None, [])), done)
    finally:
        if owns_group:
            dist.destroy_process_group()
