"""Forward cost in the DiT paper's convention: batch 1, one multiply-add = one FLOP.

Counted exactly from the shapes that one forward pass sees (run on the meta device, so
nothing is computed and paper-size models cost no time):

- every nn.Linear and nn.Conv2d: one FLOP per multiply-add;
- attention (MHA): QK^T and AV, 2·M·N·D multiply-adds (torch's FlopCounterMode does not see
  ``scaled_dot_product_attention`` on CPU), plus MHA's context projections, which bypass
  its qkv module;
- PoM's elementwise work: the polynomial products (k-1)·e·D per context token ("powers":
  the powers and their alpha-weighted sum), the mean (one add per state entry per context
  token, or M·N·S multiply-adds under a per-query mask) and the gating product per query.

Nonlinearities, LayerNorm, modulation and residual adds are not counted, in either mixer:
the DiT paper counts multiply-adds only (its published Gflops are reproduced this way, see
tests/test_models_flops.py).
"""
from __future__ import annotations

from collections import Counter

import torch
from torch import Tensor, nn

from ..nn.attention import MHA
from ..nn.pom import PoM


def _pom_elementwise(pom: PoM, x: Tensor, context: Tensor | None, mask) -> int:
    b, m = x.shape[0], x.shape[1]
    n = m if context is None else context.shape[1]
    chunk = pom.expand * pom.dim                      # e·D
    s = pom.state_dim
    if pom.polynomial == "products":
        per_token = (pom.degree - 1) * chunk          # u_1*u_2, (u_1*u_2)*u_3, ...
    else:
        per_token = (pom.degree - 1) * chunk + pom.degree * chunk   # a^p, then sum_p alpha_p a^p
    # A 3-D tensor mask is an arbitrary per-query mask: its mean is the (M, N) product w @ h.
    # "causal" and BlockCausal are prefix sums (one add per state entry), as pom_fast runs
    # them; a plain or padding mean is one sum. Tensors are never inspected (meta in counts).
    dense = isinstance(mask, Tensor) and mask.dim() == 3
    mean = m * n * s if dense else n * s
    return b * (n * per_token + mean + m * s)         # + gate * H


def _attention(mha: MHA, x: Tensor, context: Tensor | None) -> int:
    b, m, d = x.shape
    n = m if context is None else context.shape[1]
    macs = 2 * b * m * n * d                          # QK^T and AV over all heads
    if context is not None:                           # q, k, v through F.linear, not mha.qkv
        macs += b * (m * d * d + n * 2 * d * d)
    return macs


def count_macs(model: nn.Module, *args, **kwargs) -> Counter:
    """Multiply-adds of ``model(*args, **kwargs)`` by kind, without computing anything.

    Arguments may be real or meta tensors; the parameters are swapped for meta tensors, so
    the count costs no compute at any model size. Returns a Counter with keys "linear",
    "conv", "attention", "pom_elementwise".
    """
    counts: Counter = Counter()

    def hook(module, hook_args, hook_kwargs, output):
        x = hook_args[0] if hook_args else hook_kwargs["x"]
        if isinstance(module, nn.Linear):
            counts["linear"] += x.numel() // module.in_features * module.in_features \
                * module.out_features
        elif isinstance(module, nn.Conv2d):
            kernel = module.in_channels // module.groups * module.kernel_size[0] \
                * module.kernel_size[1]
            counts["conv"] += output.numel() * kernel
        elif isinstance(module, (MHA, PoM)):
            context = hook_kwargs.get("context", hook_args[1] if len(hook_args) > 1 else None)
            if isinstance(module, MHA):
                counts["attention"] += _attention(module, x, context)
            else:
                mask = hook_kwargs.get("mask", hook_args[2] if len(hook_args) > 2 else None)
                counts["pom_elementwise"] += _pom_elementwise(module, x, context, mask)

    def to_meta(v):
        return v.to("meta") if isinstance(v, Tensor) else v

    handles = [m.register_forward_hook(hook, with_kwargs=True) for m in model.modules()
               if isinstance(m, (nn.Linear, nn.Conv2d, MHA, PoM))]
    meta_state = {k: torch.empty_like(v, device="meta")
                  for k, v in [*model.named_parameters(), *model.named_buffers()]}
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            torch.func.functional_call(model, meta_state, tuple(map(to_meta, args)),
                                       {k: to_meta(v) for k, v in kwargs.items()})
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return counts


def image_side(model: nn.Module, image_size: int | None) -> int:
    """The model-input side for an image of ``image_size`` pixels (None: configured input)."""
    if image_size is None:
        return model.input_size
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int (pixels) or None, got {image_size!r}")
    scale = getattr(model, "latent_scale", 1)
    if image_size % scale:
        raise ValueError(f"image_size {image_size} is not divisible by the model's latent_scale "
                         f"{scale} (its inputs are {scale}x smaller than the images)")
    side = image_size // scale
    if side % model.patch_size:
        raise ValueError(f"image_size {image_size} gives a {side}x{side} model input, not "
                         f"divisible by patch_size {model.patch_size}")
    return side


VIDEO_CAPTION_WORDS = 16     # text tokens of the caption when counting a video model


def macs(model: nn.Module, image_size: int | None = None) -> Counter:
    """Multiply-adds by kind of one forward at batch 1 (see count_macs): one image, or for a
    video model one clip of ``model.num_frames`` frames with a VIDEO_CAPTION_WORDS caption."""
    side = image_side(model, image_size)
    t = torch.empty(1, device="meta")
    if hasattr(model, "num_frames"):
        x = torch.empty(1, model.num_frames, model.in_channels, side, side, device="meta")
        text = torch.zeros(1, VIDEO_CAPTION_WORDS, dtype=torch.long, device="meta")
        return count_macs(model, x, t, text)
    x = torch.empty(1, model.in_channels, side, side, device="meta")
    y = torch.zeros(1, dtype=torch.long, device="meta")
    return count_macs(model, x, t, y)


def gflops(model: nn.Module, image_size: int | None = None) -> float:
    """GFLOPs of one forward pass, DiT convention (batch 1, one multiply-add = one FLOP);
    per clip for video models (see ``macs``).

    image_size is in pixels: paper-scale models see latents at 1/8 of it (latent_scale 8),
    micro models the pixels themselves (latent_scale 1). None = the model's configured input.
    """
    return sum(macs(model, image_size).values()) / 1e9
