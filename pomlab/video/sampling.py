"""Text-to-video sampling: all frames in parallel, or frame by frame through PoM's state (each
frame's k-th velocity call steps from the earlier frames' states at their k-th call, so it sees
what the parallel block-causal model shows it; docs/video.md, "the design of the sequential
sampler"). Both modes draw the whole noise (B, frames, C, H, W) up front: one seed, one clip."""
from __future__ import annotations

import functools
from typing import Sequence

import torch
from torch import Tensor, nn

from ..data.text import TOY_VOCABULARY, Vocabulary, check_captions
from ..diffusion import FlowMatching, sampling_mode
from ..diffusion.samplers import ODE_METHODS
from ..checks import check_choice, check_positive_int

MODES = ("sequential", "parallel")
FRAME_RANGE = "pomlab.video.frame "      # profiler range of each sequential frame


def model_vocabulary(model: nn.Module, vocab: Vocabulary | None = None) -> Vocabulary:
    """The vocabulary that turns captions into the model's word ids: ``vocab`` when given,
    else ``model.vocab``, else the toy one; its size must be the model's vocab_size."""
    if vocab is None:
        vocab = getattr(model, "vocab", None) or TOY_VOCABULARY
    if len(vocab) != model.vocab_size:
        raise ValueError(f"the model has vocab_size {model.vocab_size} but its vocabulary has "
                         f"{len(vocab)} words; set model.vocab (or vocab=) to its training one")
    return vocab


def encode_captions(model: nn.Module, captions: Sequence[str], vocab: Vocabulary | None = None,
                    text_encoder=None) -> Tensor:
    """What the model reads: word ids (B, L) through its vocabulary, or for a model with
    ``text_dim`` the (B, L, text_dim) embeddings of ``text_encoder`` (or model.text_encoder)."""
    if getattr(model, "text_dim", None) is None:
        return model_vocabulary(model, vocab).encode(captions)
    encoder = text_encoder if text_encoder is not None else getattr(model, "text_encoder", None)
    if encoder is None:
        raise ValueError(f"this model reads text-encoder embeddings (text_dim={model.text_dim}); "
                         "pass text_encoder= (a TextEncoder) or set model.text_encoder")
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
    """One clip per caption: (B, frames, C, H, W) in model space ([-1, 1] pixels or latents).
    "sequential" needs the block-causal model; noise: None (from ``generator``) or (B, frames,
    C, H, W); process: the FlowMatching the model was trained with (its shift sets the grid);
    on_frame(f, frame): sequential only, each finished frame. More in docs/video.md."""
    check_choice("mode", mode, MODES)
    check_choice("method", method, ODE_METHODS)
    check_positive_int("frames", frames)
    check_positive_int("steps", steps)
    process = FlowMatching() if process is None else process
    if not isinstance(process, FlowMatching):
        raise TypeError(f"process must be a pomlab.diffusion.FlowMatching (the video samplers "
                        f"integrate the flow ODE), got {type(process).__name__}")
    captions = check_captions(captions)
    tokens = encode_captions(model, captions, vocab, text_encoder)
    param = next(model.parameters())
    tokens = tokens.to(param.device, param.dtype if tokens.is_floating_point() else tokens.dtype)
    expected = (len(tokens), frames, model.in_channels, model.input_size, model.input_size)
    if noise is None:
        noise = draw_noise(model, len(tokens), frames, generator)
    elif not isinstance(noise, Tensor) or tuple(noise.shape) != expected:
        got = tuple(noise.shape) if isinstance(noise, Tensor) else type(noise).__name__
        raise ValueError(f"noise must have shape (captions, frames, C, H, W) = {expected}, got {got}")
    noise = noise.to(device=param.device, dtype=param.dtype)
    if mode == "sequential" and not model.causal:
        raise ValueError("mode='sequential' needs the block-causal model (causal=True); this one "
                         "mixes all frames both ways, use mode='parallel'")
    integrate = functools.partial(process.sample, steps=steps, method=method, cfg=cfg,
                                  null_class=model.null_token, guidance=guidance)
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
        current: list = []              # this frame's states, one entry per model call

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
