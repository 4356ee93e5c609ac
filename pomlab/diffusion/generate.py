"""Draw samples from a trained denoiser: noise from a seeded generator, chunked, no grad."""
from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn

from ..checks import check_ids, check_positive_int


@contextlib.contextmanager
def sampling_mode(model: nn.Module):
    """eval() mode inside the block (no label dropout), the caller's mode restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@torch.no_grad()
def generate(model: nn.Module, process, labels: Tensor, *, steps: int = 50,
             method: str | None = None, cfg: float = 1.0, seed: int = 0,
             batch_size: int = 256, autocast_dtype: torch.dtype | None = None,
             guidance: str = "standard", guided_channels: int | None = None) -> Tensor:
    """Samples (N, C, H, W) in model space (pixels in [-1, 1] or scaled latents), on CPU.

    model: an image denoiser with in_channels, input_size, num_classes (its num_classes is the
    null label used by guidance). process: FlowMatching or GaussianDiffusion. The noise comes
    from torch.Generator().manual_seed(seed) on the CPU, so a seed gives the same noise on
    every device. cfg is read in the `guidance` convention
    ("standard": u + cfg (c - u); "authors": c + cfg (c - u)); guided_channels=3 is DiT's legacy
    forward_with_cfg. The model is in eval mode for the call (``sampling_mode``).
    """
    check_positive_int("steps", steps)
    check_positive_int("batch_size", batch_size)
    labels = torch.as_tensor(labels, dtype=torch.long)
    if labels.dim() != 1 or len(labels) == 0:
        raise ValueError(f"labels must be a non-empty 1-D tensor of class ids, got {tuple(labels.shape)}")
    check_ids("labels", labels, model.num_classes + 1,         # on the CPU: no device sync
              f"class ids in [0, {model.num_classes}] ({model.num_classes} = null)")
    device = next(model.parameters()).device
    side, channels = model.input_size, model.in_channels
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(len(labels), channels, side, side, generator=generator)
    method = method or process.default_method
    autocast = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None
                else contextlib.nullcontext())
    out = []
    with sampling_mode(model):
        for start in range(0, len(labels), batch_size):
            z = noise[start:start + batch_size].to(device)
            y = labels[start:start + batch_size].to(device)
            with autocast:
                x = process.sample(model, z, y, steps=steps, method=method, cfg=cfg,
                                   null_class=model.num_classes, generator=generator,
                                   guidance=guidance, guided_channels=guided_channels)
            out.append(x.float().cpu())
    return torch.cat(out)
