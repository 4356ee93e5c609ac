"""Toy text-to-video data made by our own code, a word-level vocabulary, and user video latents.

Toy videos: a digit of the embedded set (``load_digits``) crosses a blank square frame in one
of four directions; the caption says which digit and where it goes, e.g. "a 3 moving left".
Every video is generated from a seed, so a set is reproducible and needs no download.

User latents: a folder of per-clip tensors (T, C, H, W) as ``.npy`` or ``.pt`` files and a
``captions.csv`` with columns ``file,caption`` (see ``load_video_latents``).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..checks import check_positive_int
from .digits import NUM_CLASSES, load_digits
from .images import to_model_range

PAD = "<pad>"
PAD_ID = 0
DIGIT_WORDS = tuple(str(d) for d in range(NUM_CLASSES))
# direction -> (row step, column step) in the frame
DIRECTIONS = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}
CAPTION = "a {digit} moving {direction}"
_CAPTION_RE = re.compile(r"^a (?P<digit>\d) moving (?P<direction>left|right|up|down)$")


class Vocabulary:
    """Word-level tokenizer: word ids 1..V-1 in a fixed order, id 0 is the pad token.

    Captions are lower-cased and split on white space. An unknown word is an error that
    names it (no silent <unk>); the empty caption encodes to pads only (the null caption).
    """

    def __init__(self, words: Sequence[str]):
        words = list(words)
        bad = [w for w in words if not isinstance(w, str) or not w or w.split() != [w]
               or w != w.lower() or w == PAD]
        if bad:
            raise ValueError(f"vocabulary words must be non-empty lower-case strings without "
                             f"spaces and not {PAD!r}, got {bad[:5]}")
        if len(set(words)) != len(words):
            raise ValueError("vocabulary words must be unique")
        self.words = (PAD, *words)
        self.ids = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def from_captions(cls, captions: Sequence[str]) -> "Vocabulary":
        """Every word that occurs in ``captions``, sorted (a stable vocabulary for a caption file)."""
        return cls(sorted({w for c in _check_captions(captions) for w in c.lower().split()}))

    def __len__(self) -> int:
        return len(self.words)

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocabulary) and other.words == self.words

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} words: {' '.join(self.words)})"

    @property
    def pad_id(self) -> int:
        return PAD_ID

    def encode(self, captions: str | Sequence[str], length: int | None = None) -> Tensor:
        """Captions -> (B, L) int64 word ids padded with 0; L = the longest caption (>= 1)."""
        single = isinstance(captions, str)
        captions = _check_captions([captions] if single else captions)
        rows = []
        for i, caption in enumerate(captions):
            row = []
            for word in caption.lower().split():
                if word not in self.ids:
                    raise ValueError(f"caption {i} ({caption!r}) has the unknown word {word!r}; "
                                     f"known words: {' '.join(self.words[1:])}")
                row.append(self.ids[word])
            rows.append(row)
        longest = max(1, max(len(r) for r in rows))
        if length is None:
            length = longest
        else:
            check_positive_int("length", length)
            if length < longest:
                raise ValueError(f"length {length} is shorter than the longest caption "
                                 f"({longest} words)")
        ids = torch.full((len(rows), length), PAD_ID, dtype=torch.int64)
        for i, row in enumerate(rows):
            ids[i, :len(row)] = torch.tensor(row, dtype=torch.int64)
        return ids

    def decode(self, ids: Tensor) -> list[str]:
        """(B, L) word ids -> captions (pads dropped)."""
        return [" ".join(self.words[i] for i in row if i != PAD_ID) for row in ids.tolist()]


def _check_captions(captions) -> list[str]:
    if isinstance(captions, str) or not isinstance(captions, Sequence) or len(captions) == 0:
        raise TypeError(f"captions must be a non-empty list of strings, got {captions!r:.80}")
    for i, c in enumerate(captions):
        if not isinstance(c, str):
            raise TypeError(f"captions[{i}] must be a string, got {type(c).__name__}")
    return list(captions)


# The toy grammar's fixed vocabulary (17 entries with the pad).
TOY_VOCABULARY = Vocabulary(["a", "moving", *DIGIT_WORDS, *DIRECTIONS])


def toy_caption(digit: int, direction: str) -> str:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {tuple(DIRECTIONS)}, got {direction!r}")
    if isinstance(digit, bool) or not isinstance(digit, int) or not 0 <= digit < NUM_CLASSES:
        raise ValueError(f"digit must be an int in [0, {NUM_CLASSES - 1}], got {digit!r}")
    return CAPTION.format(digit=digit, direction=direction)


def parse_toy_caption(caption: str) -> tuple[int, str]:
    """"a 3 moving left" -> (3, "left")."""
    match = _CAPTION_RE.match(caption.strip().lower()) if isinstance(caption, str) else None
    if match is None:
        raise ValueError(f"{caption!r} is not a toy caption like {CAPTION.format(digit=3, direction='left')!r}")
    return int(match["digit"]), match["direction"]


def all_toy_captions() -> list[str]:
    """The 40 captions of the grammar, digit-major."""
    return [toy_caption(d, direction) for d in range(NUM_CLASSES) for direction in DIRECTIONS]


@dataclass(eq=False)
class VideoDataset(Dataset):
    """Videos (N, T, C, H, W) float32 with one caption each; items are (video, word ids) as
    the model sees them, so the image trainer's in-memory path (``tensors``) works unchanged.

    kind "pixels": values in [0, 1] (the model sees 2x - 1); "latents": used as they are.
    digits/directions: the toy set's ground truth (None for user data).
    """

    videos: Tensor
    captions: list[str]
    vocab: Vocabulary
    kind: str = "pixels"
    digits: Tensor | None = None
    directions: list[str] | None = None
    name: str = "videos"
    tokens: Tensor = field(init=False, repr=False)

    def __post_init__(self):
        if not isinstance(self.videos, Tensor) or not self.videos.dtype.is_floating_point:
            raise TypeError("videos must be a float tensor (N, T, C, H, W), got "
                            + (str(self.videos.dtype) if isinstance(self.videos, Tensor)
                               else type(self.videos).__name__))
        if self.videos.dim() != 5:
            raise ValueError(f"videos must be (N, T, C, H, W), got {tuple(self.videos.shape)}")
        if not isinstance(self.vocab, Vocabulary):
            raise TypeError(f"vocab must be a Vocabulary, got {type(self.vocab).__name__}")
        if len(self.captions) != len(self.videos):
            raise ValueError(f"{len(self.videos)} videos but {len(self.captions)} captions")
        if self.kind not in ("pixels", "latents"):
            raise ValueError(f"kind must be 'pixels' or 'latents', got {self.kind!r}")
        self.tokens = self.vocab.encode(self.captions)

    def __len__(self) -> int:
        return len(self.videos)

    @property
    def frames(self) -> int:
        return self.videos.shape[1]

    @property
    def channels(self) -> int:
        return self.videos.shape[2]

    @property
    def size(self) -> int:
        return self.videos.shape[3]

    def model_inputs(self, index: Tensor | slice = slice(None)) -> tuple[Tensor, Tensor]:
        """(videos in model range, word ids) for the items ``index``."""
        x = self.videos[index]
        return (to_model_range(x) if self.kind == "pixels" else x), self.tokens[index]

    def __getitem__(self, i):
        return self.model_inputs(i)

    @property
    def tensors(self) -> tuple[Tensor, Tensor]:
        """(all videos in model range, all word ids): the whole set is in memory."""
        return self.model_inputs()

    def describe(self) -> str:
        return (f"{self.name}: {len(self)} {self.kind} clips, {self.frames} frames of "
                f"{self.channels}x{self.size}x{self.size}, {len(self.vocab)}-word vocabulary")


def toy_trajectory(direction: str, frames: int, travel: int, cross: int) -> list[tuple[int, int]]:
    """Top-left (row, col) of the digit in each frame: it crosses ``travel`` pixels evenly
    along ``direction`` (start at the far side), at ``cross`` on the other axis."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {tuple(DIRECTIONS)}, got {direction!r}")
    d_row, d_col = DIRECTIONS[direction]
    along = np.rint(np.linspace(0, travel, frames)).astype(int) if frames > 1 else np.zeros(1, int)
    positions = []
    for a in along:
        row = cross if d_row == 0 else (a if d_row > 0 else travel - a)
        col = cross if d_col == 0 else (a if d_col > 0 else travel - a)
        positions.append((int(row), int(col)))
    return positions


def make_toy_videos(num_videos: int, frames: int = 8, size: int = 16, digit_size: int = 8,
                    split: str = "train", seed: int = 0,
                    captions: Sequence[str] | None = None) -> VideoDataset:
    """``num_videos`` toy clips (N, frames, 1, size, size) in [0, 1] with their captions.

    Digits come from ``load_digits(split, digit_size)``; the digit image, the direction and
    the position across the motion are drawn from ``seed``, unless ``captions`` (toy captions,
    one per clip) fix each clip's digit class and direction. The digit moves
    (size - digit_size) / (frames - 1) pixels per frame (rounded to whole pixels).
    """
    for name, value in (("num_videos", num_videos), ("frames", frames), ("size", size),
                        ("digit_size", digit_size)):
        check_positive_int(name, value)
    if digit_size > size:
        raise ValueError(f"digit_size {digit_size} must not exceed size {size}")
    images, labels = load_digits(split, size=digit_size)
    rng = np.random.default_rng(seed)
    travel = size - digit_size
    if captions is None:
        pick = rng.integers(0, len(labels), num_videos)
        directions = [list(DIRECTIONS)[i] for i in rng.integers(0, len(DIRECTIONS), num_videos)]
    else:
        if len(captions) != num_videos:
            raise ValueError(f"captions must hold num_videos={num_videos} captions, got "
                             f"{len(captions)}")
        wanted = [parse_toy_caption(c) for c in captions]
        by_class = [np.flatnonzero(labels.numpy() == d) for d in range(NUM_CLASSES)]
        pick = np.array([rng.choice(by_class[d]) for d, _ in wanted])
        directions = [direction for _, direction in wanted]
    crosses = rng.integers(0, travel + 1, num_videos)
    videos = torch.zeros(num_videos, frames, 1, size, size)
    for i, direction in enumerate(directions):
        for f, (r, c) in enumerate(toy_trajectory(direction, frames, travel, int(crosses[i]))):
            videos[i, f, :, r:r + digit_size, c:c + digit_size] = images[pick[i]]
    digits = labels[torch.from_numpy(pick)]
    captions = [toy_caption(int(d), s) for d, s in zip(digits, directions)]
    return VideoDataset(videos, captions, TOY_VOCABULARY, kind="pixels", digits=digits,
                        directions=directions, name=f"toy-video-{split}-{size}px-{frames}f")


# --- user latents -------------------------------------------------------------------------

LATENT_SUFFIXES = (".npy", ".pt")


def _load_clip(path: Path) -> Tensor:
    if path.suffix == ".npy":
        clip = torch.from_numpy(np.load(path, allow_pickle=False))
    else:
        clip = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(clip, Tensor):
            raise ValueError(f"{str(path)!r} must hold one tensor (T, C, H, W), got "
                             f"{type(clip).__name__}")
    if clip.dim() != 4 or not clip.dtype.is_floating_point:
        raise ValueError(f"{str(path)!r} must hold a float (T, C, H, W) clip, got "
                         f"{clip.dtype} of shape {tuple(clip.shape)}")
    return clip.float()


def load_video_latents(root: str | os.PathLike, captions_file: str = "captions.csv",
                       vocab: Vocabulary | None = None) -> VideoDataset:
    """User video latents: ``root/captions.csv`` (columns file, caption) names the clips.

    Each listed file (relative to root, ``.npy`` or ``.pt``) holds one float tensor
    (T, C, H, W); all clips must share that shape. ``vocab`` defaults to the captions' words
    (``Vocabulary.from_captions``); give one to encode with a model's fixed vocabulary.
    """
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
    clips, shape = [], None
    for name in table["file"]:
        path = root / name
        if path.suffix not in LATENT_SUFFIXES:
            raise ValueError(f"clip {name!r}: expected a {' or '.join(LATENT_SUFFIXES)} file")
        if not path.is_file():
            raise FileNotFoundError(f"clip {name!r} listed in {captions_file} is missing from "
                                    f"{str(root)!r}")
        clip = _load_clip(path)
        if shape is None:
            shape = tuple(clip.shape)
        elif tuple(clip.shape) != shape:
            raise ValueError(f"clip {name!r} has shape {tuple(clip.shape)}, but the first clip "
                             f"has {shape}; every clip must be (T, C, H, W) of one shape")
        clips.append(clip)
    captions = table["caption"].tolist()
    vocab = Vocabulary.from_captions(captions) if vocab is None else vocab
    return VideoDataset(torch.stack(clips), captions, vocab, kind="latents",
                        name=f"latents:{root}")
