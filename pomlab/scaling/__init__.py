"""Scaling-law sweeps (the paper's Figure 5): DiPoM and DiT from S to XL, FID and IS against
training compute, log-log fits. See docs/scaling.md and experiments/scaling_laws.py."""
from .compute import gflops_per_image, images_seen, training_compute_gflops
from .config import (MIXERS, SWEEP_DEFAULTS, SweepConfig, every_steps, log_spaced_steps,
                     model_name, run_folder_name)
from .evaluation import Evaluator, balanced_labels, chunk_bounds, chunk_seed
from .fits import fit_table, frontier, loglog_fit, saturating_fit, slopes_table, write_fits
from .plots import plot_mixer_comparison, plot_scaling
from .results import (RESULT_COLUMNS, TIMING_COLUMNS, check_settings, load_results, load_timings,
                      merge_results)
from .sweep import (SweepResult, default_jobs, finalize, pending_steps, refit, run_model,
                    run_sweep, train_config)

__all__ = [
    "SweepConfig", "SweepResult", "run_sweep", "run_model", "finalize", "refit", "train_config",
    "pending_steps", "default_jobs", "MIXERS", "SWEEP_DEFAULTS", "log_spaced_steps", "every_steps",
    "model_name", "run_folder_name", "gflops_per_image", "images_seen", "training_compute_gflops",
    "Evaluator", "chunk_bounds", "chunk_seed", "balanced_labels", "loglog_fit", "saturating_fit",
    "frontier", "fit_table", "write_fits", "slopes_table", "plot_scaling", "plot_mixer_comparison",
    "RESULT_COLUMNS", "TIMING_COLUMNS", "check_settings", "merge_results", "load_results",
    "load_timings",
]
