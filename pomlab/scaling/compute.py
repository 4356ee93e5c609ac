"""Training compute in the DiT paper's convention (its Figure 9 / the PoM paper's Figure 5).

A training step costs forward + backward = 3 forward passes per image, so the compute after
`images_seen` images is 3 * GFLOPs(forward, batch 1) * images_seen, with GFLOPs from
pomlab.models.gflops (one multiply-add = one FLOP, attention and PoM's elementwise work counted).
"""
from __future__ import annotations

from torch import nn

from ..models import gflops

FORWARD_AND_BACKWARD = 3        # backward ~ 2 forwards (DiT's convention)


def gflops_per_image(model: nn.Module) -> float:
    """Forward GFLOPs of one image at the model's own input size (pomlab.models.gflops)."""
    return gflops(model)


def images_seen(step: int, batch_size: int) -> int:
    """Images through the model after `step` optimiser steps of a global batch `batch_size`."""
    return int(step) * int(batch_size)


def training_compute_gflops(gflops_forward: float, images: int) -> float:
    """Total training GFLOPs: 3 x forward GFLOPs per image x images seen."""
    return FORWARD_AND_BACKWARD * float(gflops_forward) * int(images)
