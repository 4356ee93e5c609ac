"""Theory of the Polynomial Mixer by machine (docs/theory.md); figures: ``.plots`` (matplotlib)."""
from .contextual import (G_STAR, ConstructedContextualMap, ContextualMappingReport,
                         InterpolationNet, RampQuantiser, SequenceGrid, check_contextual_mapping,
                         context_keys, gelu_inverse, lemma_degree, readout_place_values,
                         sequence_grid)
from .tasks import TASKS, ToySeqModel, ToyTask, count_parameters, get_task
from .training import (ToyRun, capacity_sweep, contextual_mapping_rows, largest_model_errors,
                       train_context_model, train_toy, train_toy_runs)

__all__ = [
    "check_contextual_mapping", "ContextualMappingReport", "context_keys", "sequence_grid",
    "SequenceGrid", "ConstructedContextualMap", "InterpolationNet", "RampQuantiser",
    "gelu_inverse", "lemma_degree", "readout_place_values", "G_STAR", "ToySeqModel",
    "count_parameters", "TASKS", "ToyTask", "get_task", "ToyRun", "train_toy", "train_toy_runs",
    "train_context_model", "contextual_mapping_rows", "capacity_sweep", "largest_model_errors",
]
