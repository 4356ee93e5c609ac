"""Theory of the Polynomial Mixer, by machine: contextual mapping and universal approximation.

* ``check_contextual_mapping``: Yun et al.'s Definition 3.1 on a quantised grid, with the
  smallest separation (permutations and positions handled as documented there).
* ``ConstructedContextualMap``: Lemma 3's PoM with constructed parameters.
* ``TASKS`` / ``train_toy`` / ``run_sweep``: toy seq2seq tasks that need mixing, comparing
  PoM, MHA and a token-wise MLP as width, degree and depth grow.

The proofs are in proofs/*.md with their sympy checks (``python proofs/check_all.py``).
Plots live in ``pomlab.theory.plots`` (imported on demand: it loads matplotlib).
"""
from .construction import (G_STAR, ConstructedContextualMap, InterpolationNet, RampQuantiser,
                           gelu_inverse, lemma_degree, readout_place_values)
from .contextual import ContextualMappingReport, check_contextual_mapping, context_keys
from .grid import SequenceGrid, sequence_grid
from .models import ToySeqModel, count_parameters
from .studies import capacity_sweep, contextual_mapping_rows, largest_model_errors
from .tasks import TASKS, ToyTask, get_task
from .training import ToyRun, run_sweep, train_context_model, train_toy

__all__ = [
    "check_contextual_mapping", "ContextualMappingReport", "context_keys",
    "sequence_grid", "SequenceGrid",
    "ConstructedContextualMap", "InterpolationNet", "RampQuantiser", "gelu_inverse",
    "lemma_degree", "readout_place_values", "G_STAR",
    "ToySeqModel", "count_parameters", "TASKS", "ToyTask", "get_task",
    "ToyRun", "train_toy", "run_sweep", "train_context_model",
    "contextual_mapping_rows", "capacity_sweep", "largest_model_errors",
]
