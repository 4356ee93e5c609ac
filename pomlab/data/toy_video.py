"""Toy text-to-video clips made by our own code: a digit of the embedded set crosses a blank
square frame in one of four directions, captioned e.g. "a 3 moving left". Reproducible from a
seed, no download. The generic parts: pomlab.data.text (Vocabulary), pomlab.data.video."""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np
import torch

from ..checks import check_choice, check_int, check_positive_int
from .digits import NUM_CLASSES, load_digits
from .text import TOY_DIRECTION_WORDS, TOY_VOCABULARY
from .video import VideoDataset

# direction -> (row step, column step) in the frame
DIRECTIONS = dict(zip(TOY_DIRECTION_WORDS, ((0, -1), (0, 1), (-1, 0), (1, 0))))
CAPTION = "a {digit} moving {direction}"
_CAPTION_RE = re.compile(r"^a (?P<digit>\d) moving (?P<direction>left|right|up|down)$")


def toy_caption(digit: int, direction: str) -> str:
    check_choice("direction", direction, DIRECTIONS)
    check_int("digit", digit, minimum=0)
    if digit >= NUM_CLASSES:
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


def toy_trajectory(direction: str, frames: int, travel: int, cross: int) -> list[tuple[int, int]]:
    """Top-left (row, col) of the digit in each frame: it crosses ``travel`` pixels evenly
    along ``direction`` (start at the far side), at ``cross`` on the other axis."""
    steps = DIRECTIONS[check_choice("direction", direction, DIRECTIONS)]
    along = np.rint(np.linspace(0, travel, frames)).astype(int) if frames > 1 else np.zeros(1, int)
    return [tuple(int(cross if step == 0 else a if step > 0 else travel - a) for step in steps)
            for a in along]


def make_toy_videos(num_videos: int, frames: int = 8, size: int = 16, digit_size: int = 8,
                    split: str = "train", seed: int = 0,
                    captions: Sequence[str] | None = None) -> VideoDataset:
    """``num_videos`` toy clips (N, frames, 1, size, size) in [0, 1] with their captions: digits
    of ``load_digits(split, digit_size)``; image, direction and position across the motion
    drawn from ``seed`` (``captions``, one per clip, fix the digit class and direction); the
    digit moves (size - digit_size) / (frames - 1) pixels per frame, rounded."""
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
