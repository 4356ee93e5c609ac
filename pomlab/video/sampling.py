"""Text-to-video sampling: all frames in parallel, or frame by frame through PoM's state.

Why the two agree (the design of the sequential sampler)
---------------------------------------------------------
The parallel sampler integrates the flow ODE for the whole clip at once: at each velocity
evaluation k (k = 0, 1, ... over the steps; Heun makes two per step) the block-causal model
lets frame f see frames <= f *as they are at evaluation k*. Frame f's trajectory therefore
depends only on frames <= f, and the clip can be produced one frame after another, provided
that frame f, at its evaluation k, sees the earlier frames at their own evaluation k.

So the sequential sampler keeps, for every evaluation index k and every layer, the PoMState
(H, n) of the frames generated so far at that evaluation. Generating frame f runs the whole
integrator for that frame alone; its evaluation k calls ``model.step`` with the states of
index k and stores the updated states (frames <= f) for the next frame. Nothing of an
earlier frame is ever recomputed, and the memory is O(evaluations x layers x state size)
(two such sets: the previous frame's and the one being built), independent of the number
of frames. Guidance (cfg != 1) doubles the batch of every call ([conditional, null]), so the
states carry both halves; both modes batch the same way.

The full noise tensor (B, frames, C, H, W) is drawn up front from ``generator`` in both
modes, so one seed gives one clip whichever way it is generated.
"""
from __future__ import annotations

import functools
from typing import Sequence

import torch
from torch import Tensor, nn

from ..data.toy_video import TOY_VOCABULARY, Vocabulary
from ..diffusion import FlowMatching, sampling_mode
from ..diffusion.samplers import ODE_METHODS
from ..checks import check_positive_int

MODES = ("sequential", "parallel")
FRAME_RANGE = "pomlab.video.frame "      # profiler range of each sequential frame


def model_vocabulary(model: nn.Module, vocab: Vocabulary | None = None) -> Vocabulary:
    """The vocabulary that turns captions into the model's word ids: ``vocab`` when given,
    else ``model.vocab``, else the toy one; its size must be the model's vocab_size."""
    if vocab is None:
        vocab = getattr(model, "vocab", None) or TOY_VOCABULARY
    if len(vocab) != model.vocab_size:
        raise ValueError(f"the model has vocab_size {model.vocab_size} but its vocabulary has "
                         f"{len(vocab)} words; set model.vocab (or pass vocab=) to the "
                         "Vocabulary it was trained with")
    return vocab


def encode_captions(model: nn.Module, captions: Sequence[str], vocab: Vocabulary | None = None,
                    text_encoder=None, on_frame=None) -> Tensor:
    """What the model reads for ``captions``: word ids (B, L) through its vocabulary, or,
    for a model with ``text_dim`` (a frozen encoder's path), the embeddings (B, L, text_dim)
    of ``text_encoder`` (default ``model.text_encoder``), from its per-caption cache."""
    if getattr(model, "text_dim", None) is None:
        return model_vocabulary(model, vocab).encode(captions)
    encoder = text_encoder if text_encoder is not None else getattr(model, "text_encoder", None)
    if encoder is None:
        raise ValueError(f"this model reads text-encoder embeddings (text_dim={model.text_dim}); "
                         "pass text_encoder= (a pomlab.video.text.TextEncoder) or set "
                         "model.text_encoder")
    if encoder.dim != model.text_dim:
        raise ValueError(f"text_encoder gives {encoder.dim}-dim embeddings but the model has "
                         f"text_dim={model.text_dim}")
    return encoder.encode(captions)


def draw_noise(model: nn.Module, batch: int, frames: int,
               generator: torch.Generator | None = None) -> Tensor:
    """Standard normal (batch, frames, C, H, W) in the model's dtype, on its device."""
    param = next(model.parameters())
    shape = (batch, frames, model.in_channels, model.input_size, model.input_size)
    where = generator.device if generator is not None else param.device
    return torch.randn(shape, generator=generator, dtype=param.dtype, device=where).to(param.device)


@torch.no_grad()
def sample(model: nn.Module, captions: str | Sequence[str], frames: int, noise: Tensor | None = None,
           mode: str = "sequential", steps: int = 50, cfg: float = 1.0,
           generator: torch.Generator | None = None, *, method: str = "heun",
           vocab: Vocabulary | None = None, process: FlowMatching | None = None,
           text_encoder=None, on_frame=None, guidance: str = "standard") -> Tensor:
    """Generate one clip per caption: (B, frames, C, H, W) in the model's range.

    model: a VideoDiPoM (``pomlab.models.create("VideoDiPoM-S/2", ...)``); "sequential"
    needs its block-causal form (the default). captions: strings of the model's vocabulary.
    noise: None (drawn from ``generator``) or exactly (B, frames, C, H, W). steps: ODE steps
    of ``method`` ("heun": 2 model calls per step, "euler": 1) from t = 1 to 0. cfg:
    classifier-free guidance scale in the `guidance` convention ("standard": 1 = none;
    "authors": 0 = none; the null caption is all pad). vocab: the
    captions' Vocabulary (default ``model_vocabulary(model)``). process: the FlowMatching the
    model was trained with (its time shift sets the sampling grid; default no shift). The
    model runs in eval mode (no caption dropout) without its input range check (no host
    sync per call) and is restored afterwards. text_encoder: for a model with ``text_dim``,
    the ``pomlab.video.text.TextEncoder`` that encodes the captions (default
    ``model.text_encoder``). on_frame: sequential mode only, called as ``on_frame(f, frame)``
    with each finished frame (B, C, H, W) as soon as it is made (stream or time the frames);
    each frame's work runs inside ``torch.profiler.record_function("pomlab.video.frame f")``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if method not in ODE_METHODS:
        raise ValueError(f"method must be one of {ODE_METHODS}, got {method!r}")
    check_positive_int("frames", frames)
    check_positive_int("steps", steps)
    process = FlowMatching() if process is None else process
    if not isinstance(process, FlowMatching):
        raise TypeError(f"process must be a pomlab.diffusion.FlowMatching (the video samplers "
                        f"integrate the flow ODE), got {type(process).__name__}")
    captions = [captions] if isinstance(captions, str) else captions
    if isinstance(captions, Sequence) and len(captions) == 0:
        raise ValueError("captions must be a non-empty list of strings, got []")
    tokens = encode_captions(model, captions, vocab, text_encoder)
    param = next(model.parameters())
    tokens = tokens.to(param.device, param.dtype if tokens.is_floating_point() else tokens.dtype)
    batch = tokens.shape[0]
    if noise is None:
        noise = draw_noise(model, batch, frames, generator)
    else:
        expected = (batch, frames, model.in_channels, model.input_size, model.input_size)
        if not isinstance(noise, Tensor) or tuple(noise.shape) != expected:
            got = tuple(noise.shape) if isinstance(noise, Tensor) else type(noise).__name__
            raise ValueError(f"noise must have shape (captions, frames, C, H, W) = {expected}, "
                             f"got {got}")
        noise = noise.to(device=param.device, dtype=param.dtype)
    if mode == "sequential" and not model.causal:
        raise ValueError("mode='sequential' needs the block-causal model (causal=True); this one "
                         "mixes all frames both ways, use mode='parallel'")
    # the all-pad caption is the null input of classifier-free guidance
    integrate = functools.partial(process.sample, steps=steps, method=method, cfg=cfg,
                                  null_class=model.null_token, guidance=guidance)
    # ids come from a vocabulary of the model's size and t from the grid: no range checks
    with sampling_mode(model):
        if mode == "parallel":
            if on_frame is not None:
                raise ValueError("on_frame is called per finished frame: mode='sequential' only")
            return integrate(model, noise, tokens)
        return _sequential(model, tokens, noise, integrate, on_frame)


def _sequential(model, tokens: Tensor, noise: Tensor, integrate, on_frame=None) -> Tensor:
    """integrate(denoiser, noise, tokens): one frame's whole ODE solve (``process.sample``)."""
    previous: list | None = None        # previous[k]: per-layer states of frames < f at call k
    out = torch.empty_like(noise)
    for f in range(noise.shape[1]):
        current: list = []

        def frame_model(x, t, text):
            k = len(current)             # which model call of this frame's integration this is
            v, states = model.step(x, t, text, f, None if previous is None else previous[k])
            current.append(states)
            return v

        with torch.profiler.record_function(f"{FRAME_RANGE}{f}"):
            out[:, f] = integrate(frame_model, noise[:, f], tokens)
        previous = current
        if on_frame is not None:
            on_frame(f, out[:, f])
    return out
