"""Captioned video clips: ``VideoDataset`` (any clips, in memory) and ``load_video_latents``
(a folder of per-clip tensors with a ``captions.csv``). The toy generator is pomlab.data.toy_video."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..checks import check_choice
from .images import to_model_range
from .text import Vocabulary

LATENT_SUFFIXES = (".npy", ".pt")


@dataclass(eq=False)
class VideoDataset(Dataset):
    """Videos (N, T, C, H, W) float32 with one caption each; items are (video, word ids) as the
    model sees them (kind "pixels": [0, 1] seen as 2x - 1; "latents": as they are), so the image
    trainer's in-memory path (``tensors``) works unchanged. digits/directions: the toy set's."""

    videos: Tensor
    captions: list[str]
    vocab: Vocabulary
    kind: str = "pixels"
    digits: Tensor | None = None
    directions: list[str] | None = None
    name: str = "videos"
    tokens: Tensor = field(init=False, repr=False)

    def __post_init__(self):
        videos = self.videos
        if not isinstance(videos, Tensor) or not videos.dtype.is_floating_point:
            got = videos.dtype if isinstance(videos, Tensor) else type(videos).__name__
            raise TypeError(f"videos must be a float tensor (N, T, C, H, W), got {got}")
        if videos.dim() != 5:
            raise ValueError(f"videos must be (N, T, C, H, W), got {tuple(videos.shape)}")
        if not isinstance(self.vocab, Vocabulary):
            raise TypeError(f"vocab must be a Vocabulary, got {type(self.vocab).__name__}")
        if len(self.captions) != len(self.videos):
            raise ValueError(f"{len(self.videos)} videos but {len(self.captions)} captions")
        check_choice("kind", self.kind, ("pixels", "latents"))
        self.tokens = self.vocab.encode(self.captions)   # word ids in range by construction

    def __len__(self) -> int:
        return len(self.videos)

    frames = property(lambda self: self.videos.shape[1])
    channels = property(lambda self: self.videos.shape[2])
    size = property(lambda self: self.videos.shape[3])

    def model_inputs(self, index: Tensor | slice = slice(None)) -> tuple[Tensor, Tensor]:
        """(videos in model range, word ids) for the items ``index``."""
        x = self.videos[index]
        return (to_model_range(x) if self.kind == "pixels" else x), self.tokens[index]

    __getitem__ = model_inputs

    @property
    def tensors(self) -> tuple[Tensor, Tensor]:
        """(all videos in model range, all word ids): the whole set is in memory."""
        return self.model_inputs()

    def describe(self) -> str:
        return (f"{self.name}: {len(self)} {self.kind} clips, {self.frames} frames of "
                f"{self.channels}x{self.size}x{self.size}, {len(self.vocab)}-word vocabulary")


def load_video_latents(root: str | os.PathLike, captions_file: str = "captions.csv",
                       vocab: Vocabulary | None = None) -> VideoDataset:
    """User latents: ``root/captions.csv`` (columns file, caption) lists the clips, each a
    .npy/.pt file holding a float (T, C, H, W) tensor of one shape; vocab: default the captions'."""
    import pandas as pd

    root = Path(root)
    table_path = root / captions_file
    if not table_path.is_file():
        raise FileNotFoundError(f"no captions file {str(table_path)!r}: expected a CSV with "
                                "columns file,caption listing the clips in the folder")
    table = pd.read_csv(table_path, dtype=str, keep_default_na=False)
    if not {"file", "caption"} <= set(table.columns):
        raise ValueError(f"{str(table_path)!r} must have columns file,caption, got "
                         f"{list(table.columns)}")
    if len(table) == 0:
        raise ValueError(f"{str(table_path)!r} lists no clips")
    clips = []
    for name in table["file"]:
        path = root / name
        if path.suffix not in LATENT_SUFFIXES:
            raise ValueError(f"clip {name!r}: expected a {' or '.join(LATENT_SUFFIXES)} file")
        if not path.is_file():
            raise FileNotFoundError(f"clip {name!r} listed in {captions_file} is missing from "
                                    f"{str(root)!r}")
        clip = (torch.from_numpy(np.load(path, allow_pickle=False)) if path.suffix == ".npy"
                else torch.load(path, map_location="cpu", weights_only=True))
        if not isinstance(clip, Tensor) or clip.dim() != 4 or not clip.dtype.is_floating_point:
            got = (f"{clip.dtype} of shape {tuple(clip.shape)}" if isinstance(clip, Tensor)
                   else type(clip).__name__)
            raise ValueError(f"{str(path)!r} must hold a float (T, C, H, W) clip, got {got}")
        clips.append(clip.float())
        if clips[-1].shape != clips[0].shape:
            raise ValueError(f"clip {name!r} has shape {tuple(clips[-1].shape)}, but the first "
                             f"clip has {tuple(clips[0].shape)}; every clip must be (T, C, H, W) "
                             "of one shape")
    captions = table["caption"].tolist()
    vocab = Vocabulary.from_captions(captions) if vocab is None else vocab
    return VideoDataset(torch.stack(clips), captions, vocab, kind="latents", name=f"latents:{root}")
