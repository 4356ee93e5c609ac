"""Does a generated toy clip follow its caption? Digit (classifier) and motion (centre of mass).

- Digit: in every frame, an 8x8 window around the brightest blob's centre of mass is cut out,
  resized to the digits classifier's 16x16 input and classified; the score of a clip is the
  fraction of its frames classified as the caption's digit (chance: 1/10).
- Motion: the centre of mass of the last frame minus that of the first frame; the predicted
  direction is the one of left/right/up/down with the largest dot product with that
  displacement (chance: 1/4).

The same measurement on the real toy clips gives the ceiling of the method.
"""
from __future__ import annotations

from typing import Callable, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.toy_video import DIRECTIONS, parse_toy_caption

DIRECTION_NAMES = tuple(DIRECTIONS)
BACKGROUND = 0.2          # pixel values below this are background for the centre of mass


def centre_of_mass(frames: Tensor, background: float = BACKGROUND) -> Tensor:
    """(..., H, W) grey frames in [0, 1] -> (..., 2) (row, col) centres of the bright pixels.

    Pixels under ``background`` are ignored, so faint generation noise does not pull the
    centre towards the middle; an empty frame gives the frame centre.
    """
    h, w = frames.shape[-2:]
    mass = (frames - background).clamp(min=0)
    total = mass.sum((-2, -1))
    like = dict(dtype=mass.dtype, device=mass.device)
    rows = (mass.sum(-1) * torch.arange(h, **like)).sum(-1)
    cols = (mass.sum(-2) * torch.arange(w, **like)).sum(-1)
    centre = torch.stack([rows, cols], -1) / total.clamp(min=1e-12)[..., None]
    empty = (total <= 1e-12)[..., None]
    return torch.where(empty, torch.tensor([(h - 1) / 2, (w - 1) / 2], **like), centre)


def motion_directions(clips: Tensor) -> list[str]:
    """(B, T, 1, H, W) in [0, 1] -> the direction each clip's content moves (first -> last)."""
    com = centre_of_mass(clips[:, :, 0])
    shift = com[:, -1] - com[:, 0]
    axes = torch.tensor([DIRECTIONS[d] for d in DIRECTION_NAMES], dtype=shift.dtype,
                        device=shift.device)
    return [DIRECTION_NAMES[i] for i in (shift @ axes.T).argmax(1).tolist()]


def digit_crops(clips: Tensor, digit_size: int = 8, out_size: int = 16) -> Tensor:
    """(B, T, 1, H, W) -> (B*T, 1, out_size, out_size): a digit_size window per frame around
    its centre of mass (kept inside the frame), resized for the classifier."""
    b, t, _, h, w = clips.shape
    frames = clips[:, :, 0].reshape(b * t, h, w)
    com = centre_of_mass(frames)
    half = digit_size / 2
    top = (com[:, 0] + 0.5 - half).round().clamp(0, h - digit_size).long()
    left = (com[:, 1] + 0.5 - half).round().clamp(0, w - digit_size).long()
    crops = torch.stack([frames[i, r:r + digit_size, c:c + digit_size]
                         for i, (r, c) in enumerate(zip(top.tolist(), left.tolist()))])
    return F.interpolate(crops[:, None], size=(out_size, out_size), mode="bilinear",
                         align_corners=False).clamp(0, 1)


def default_classifier() -> Callable[[Tensor], Tensor]:
    """The project's digits classifier (pomlab.metrics): (N, 1, 16, 16) in [0, 1] -> logits."""
    from ..metrics.digits_classifier import load_classifier

    return load_classifier()


@torch.no_grad()
def caption_following(clips: Tensor, captions: Sequence[str],
                      classifier: Callable[[Tensor], Tensor] | None = None) -> pd.DataFrame:
    """One row per clip: caption, digit, direction, predicted direction, fraction of frames
    classified as the caption's digit (digit_accuracy) and direction_correct (0/1).

    clips: (B, T, 1, H, W) toy-style pixels in [0, 1]; captions: toy captions.
    """
    if clips.dim() != 5 or clips.shape[2] != 1:
        raise ValueError(f"clips must be grey (B, T, 1, H, W), got {tuple(clips.shape)}")
    if len(captions) != clips.shape[0]:
        raise ValueError(f"{clips.shape[0]} clips but {len(captions)} captions")
    classifier = default_classifier() if classifier is None else classifier
    truth = [parse_toy_caption(c) for c in captions]
    b, t = clips.shape[:2]
    clips = clips.float().cpu()
    predicted_digits = classifier(digit_crops(clips)).argmax(1).view(b, t)
    moves = motion_directions(clips)
    rows = []
    for i, (caption, (digit, direction)) in enumerate(zip(captions, truth)):
        rows.append({"caption": caption, "digit": digit, "direction": direction,
                     "predicted_direction": moves[i],
                     "digit_accuracy": float((predicted_digits[i] == digit).float().mean()),
                     "direction_correct": float(moves[i] == direction)})
    return pd.DataFrame(rows)
