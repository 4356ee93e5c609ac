"""Training compute in the DiT paper's convention (its Figure 9 / the PoM paper's Figure 5):
3 x forward GFLOPs per image (pomlab.models.gflops, batch 1) x images seen."""
from __future__ import annotations

from ..models import gflops as gflops_per_image  # noqa: F401  (forward, one image)

FORWARD_AND_BACKWARD = 3        # backward ~ 2 forwards (DiT's convention)


def images_seen(step: int, batch_size: int) -> int:
    """Images through the model after `step` optimiser steps of a global batch `batch_size`."""
    return int(step) * int(batch_size)


def training_compute_gflops(gflops_forward: float, images: int) -> float:
    """Total training GFLOPs: 3 x forward GFLOPs per image x images seen."""
    return FORWARD_AND_BACKWARD * float(gflops_forward) * int(images)
