"""Training the video DiPoM with the project's Trainer (flow matching, EMA, checkpoints, resume):
clips and their word ids (or text-encoder rows) stand where the image trainer has images and
labels; the loss sees whole clips through the block-causal mask. See docs/video.md, "Training"."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

from ..data.text import Vocabulary
from ..data.video import VideoDataset
from ..train import TrainConfig, Trainer, grid_image, load_checkpoint, load_trained, save_png
from .sampling import sample
from .text import TextEncoder

VIDEO_PREFIX = "VideoDiPoM-"


class VideoTrainer(Trainer):
    """``Trainer`` for text-to-video: config.model a video name ("VideoDiPoM-S/4"), the model's
    sizes and vocabulary from the data, config.samples_per_class captions per sample strip;
    text_encoder: None (word ids) or a ``TextEncoder`` (each distinct caption encoded once)."""

    def __init__(self, config: TrainConfig, data: VideoDataset, *,
                 resume: bool | str | os.PathLike = False, progress: bool = True,
                 callbacks=(), text_encoder: TextEncoder | None = None):
        if not isinstance(data, VideoDataset):
            raise TypeError(f"data must be a pomlab.data.video.VideoDataset, got {type(data).__name__}")
        if not (isinstance(config.model, str) and config.model.startswith(VIDEO_PREFIX)):
            raise ValueError(f"config.model must be a video model name such as "
                             f"'VideoDiPoM-S/4', got {config.model!r}")
        if config.loss != "flow":
            raise ValueError(f"config.loss must be 'flow' for video (pomlab.video.sample "
                             f"integrates the flow ODE), got {config.loss!r}")
        if text_encoder is not None and not isinstance(text_encoder, TextEncoder):
            raise TypeError(f"text_encoder must be a pomlab.video.text.TextEncoder, got "
                            f"{type(text_encoder).__name__}")
        self.text_encoder = text_encoder
        super().__init__(config, dataset=data, resume=resume, progress=progress,
                         callbacks=callbacks)
        if text_encoder is not None:           # items point at their caption's row of the table
            row_of = {caption: i for i, caption in enumerate(dict.fromkeys(data.captions))}
            rows = torch.tensor([row_of[c] for c in data.captions], device=self.device)
            self._in_memory = (self._in_memory[0], rows)
            self._caption_table = text_encoder.encode(list(row_of)).to(self.device)
            self.model.text_encoder = self.ema.module.text_encoder = text_encoder

    def _next_batch(self):
        x, y = super()._next_batch()
        return (x, y) if self.text_encoder is None else (x, self._caption_table[y])

    def _build_model(self) -> nn.Module:
        from .. import models

        overrides = dict(self.config.model_overrides)
        encoder_dim = None if self.text_encoder is None else self.text_encoder.dim
        for key, value, source in (("input_size", self.data.size, "the data"),
                                   ("in_channels", self.data.channels, "the data"),
                                   ("vocab_size", len(self.data.vocab), "the data"),
                                   ("text_dim", encoder_dim, "the text encoder")):
            if overrides.get(key, value) != value:
                raise ValueError(f"model override {key}={overrides[key]} disagrees with {source} "
                                 f"({self.data.describe()}, text encoder width {encoder_dim})")
            overrides[key] = value
        model = models.create(self.config.model, scale=self.config.scale, **overrides)
        model.vocab = self.data.vocab          # copied into the EMA model too
        return model

    def _check_model_fits_data(self) -> None:
        """Nothing to check: _build_model takes the sizes from the data, load_state the vocabulary."""

    def _encoder_spec(self) -> dict | None:
        return None if self.text_encoder is None else self.text_encoder.spec()

    def state_dict(self) -> dict:
        return {**super().state_dict(), "vocab": list(self.data.vocab.words[1:]),
                "text_encoder": self._encoder_spec()}

    def load_state(self, ckpt: dict) -> None:
        if Vocabulary(ckpt.get("vocab", ())) != self.data.vocab:
            raise ValueError(f"{ckpt.get('path', 'the checkpoint')} was trained with another "
                             f"vocabulary than this data's ({self.data.vocab})")
        if ckpt.get("text_encoder") != (mine := self._encoder_spec()):
            raise ValueError(f"{ckpt.get('path', 'the checkpoint')} was trained with text "
                             f"encoder {ckpt.get('text_encoder')}, this run has {mine}")
        super().load_state(ckpt)

    def strip_captions(self) -> list[str]:
        return list(dict.fromkeys(self.data.captions))[: self.config.samples_per_class]

    def generate_for_captions(self, captions: Sequence[str], *, frames: int | None = None,
                              steps: int | None = None, method: str | None = None,
                              cfg: float | None = None, seed: int = 0, mode: str = "sequential",
                              ema: bool = True) -> Tensor:
        """Clips (B, T, C, H, W) float32 on the CPU in model space ([-1, 1] pixels or latents,
        like ``pomlab.diffusion.generate``); the config's sampler settings by default."""
        return sample(self.ema.module if ema else self.model, list(captions),
                      frames or self.data.frames, mode=mode,
                      steps=steps or self.config.sample_steps,
                      method=method or self.config.sample_method or "heun",
                      cfg=self.sample_cfg() if cfg is None else cfg,
                      generator=torch.Generator().manual_seed(seed), process=self.process,
                      text_encoder=self.text_encoder).float().cpu()

    def generate(self, labels, **kwargs):
        raise TypeError("VideoTrainer samples from captions: use generate_for_captions(captions, ...)")

    def save_samples(self) -> Path | None:
        """One row of frames per caption (EMA weights, fixed noise) at out/samples/step_N.png,
        and in TensorBoard with logger="tensorboard" (rank 0)."""
        if self.out is None or not self.is_main:
            return None
        captions = self.strip_captions()
        clips = self.generate_for_captions(captions, seed=self.config.seed)
        image = grid_image(clips.flatten(0, 1), rows=len(captions), kind=self.data.kind)
        self.logger.image("samples", self.step, image)
        return save_png(image, self.out / "samples" / f"step_{self.step:08d}.png")


def load_video_model(path: str | os.PathLike, *, ema: bool = True, device="cpu",
                     text_encoder: TextEncoder | None = None):
    """(model with its vocabulary, process (pass it to ``sample``), train config, step) from a
    VideoTrainer checkpoint or run folder; a model trained through a text encoder gets
    ``model.text_encoder``: ``text_encoder``, else the checkpoint's hub name, from_pretrained."""
    ckpt = load_checkpoint(path)
    words = ckpt.get("vocab")
    if words is None:
        raise ValueError(f"{ckpt['path']!r} holds no vocabulary: it was not written by VideoTrainer")
    model, process, config, step = load_trained(ckpt, ema=ema, device=device)
    model.vocab = Vocabulary(words)
    spec = ckpt.get("text_encoder")
    if spec is not None:
        if text_encoder is None:
            if spec["name"] is None:
                raise ValueError(f"{ckpt['path']!r} was trained with an in-memory text encoder "
                                 "(no hub name): pass text_encoder=")
            text_encoder = TextEncoder.from_pretrained(spec["name"], max_length=spec["max_length"])
        if text_encoder.dim != spec["dim"]:
            raise ValueError(f"text_encoder has width {text_encoder.dim}, the checkpoint's "
                             f"encoder had {spec['dim']}")
        model.text_encoder = text_encoder
    return model, process, config, step
