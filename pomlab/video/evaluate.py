"""Does a generated toy clip follow its caption, and is it one coherent clip? The per-clip
MEASURES are defined in docs/video.md, "Measuring a toy clip"; the same measurement on real toy
clips is its ceiling."""
from __future__ import annotations

import time
from typing import Callable, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.images import from_model_range
from ..data.toy_video import DIRECTIONS, parse_toy_caption, toy_trajectory
from .sampling import sample

DIRECTION_NAMES = tuple(DIRECTIONS)
BACKGROUND = 0.2          # pixel values below this are background for the centre of mass
DIGIT_SIZE = 8            # the toy clips' digit side (make_toy_videos' default)
# per-clip measures of caption_following, averaged by summarize()
MEASURES = ("digit_accuracy", "direction_correct", "digit_consistency", "motion_error_px",
            "centre_jerk_px", "frame_change")


def centre_of_mass(frames: Tensor, background: float = BACKGROUND) -> Tensor:
    """(..., H, W) grey frames in [0, 1] -> (..., 2) (row, col) centres of the pixels above
    ``background`` (faint noise does not pull the centre); an empty frame gives its centre."""
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
    axes = shift.new_tensor([DIRECTIONS[d] for d in DIRECTION_NAMES])
    return [DIRECTION_NAMES[i] for i in (shift @ axes.T).argmax(1).tolist()]


def caption_trajectories(captions: Sequence[str], frames: int, size: int,
                         digit_size: int = DIGIT_SIZE) -> Tensor:
    """(B, frames, 2) float (row, col) positions of each caption's digit box (``toy_trajectory``
    with the cross position 0: only the motion is fixed by a caption)."""
    travel = size - digit_size
    if travel < 0:
        raise ValueError(f"digit_size {digit_size} must not exceed the frame size {size}")
    return torch.tensor([toy_trajectory(parse_toy_caption(c)[1], frames, travel, 0)
                         for c in captions], dtype=torch.float64)


def motion_errors(clips: Tensor, captions: Sequence[str], digit_size: int = DIGIT_SIZE) -> Tensor:
    """(B,) mean distance in pixels between each frame's centre of mass and the caption's
    trajectory, after removing the clip's mean gap (one constant offset per clip)."""
    _check_clips(clips, captions)
    com = centre_of_mass(clips[:, :, 0].double())
    gap = com - caption_trajectories(captions, clips.shape[1], clips.shape[-1], digit_size)
    return (gap - gap.mean(1, keepdim=True)).norm(dim=-1).mean(1)


def centre_jerk(clips: Tensor) -> Tensor:
    """(B,) mean |c[f+1] - 2 c[f] + c[f-1]| of the centre of mass, pixels per frame^2 (0 for
    clips shorter than 3 frames)."""
    com = centre_of_mass(clips[:, :, 0].double())
    if com.shape[1] < 3:
        return com.new_zeros(com.shape[0])
    return (com[:, 2:] - 2 * com[:, 1:-1] + com[:, :-2]).norm(dim=-1).mean(1)


def frame_change(clips: Tensor) -> Tensor:
    """(B,) mean absolute pixel change between consecutive frames (0 for one frame)."""
    if clips.shape[1] < 2:
        return clips.new_zeros(clips.shape[0])
    return (clips[:, 1:] - clips[:, :-1]).abs().flatten(1).mean(1)


def _check_clips(clips, captions) -> None:
    if not isinstance(clips, Tensor) or clips.dim() != 5 or clips.shape[2] != 1:
        got = tuple(clips.shape) if isinstance(clips, Tensor) else type(clips).__name__
        raise ValueError(f"clips must be grey (B, T, 1, H, W), got {got}")
    if isinstance(captions, str) or len(captions) != clips.shape[0]:
        raise ValueError(f"captions must be a list of {clips.shape[0]} toy captions (one per "
                         f"clip), got {captions!r:.80}")
    if clips.shape[1] < 1:
        raise ValueError(f"clips must hold at least one frame, got {tuple(clips.shape)}")


def digit_crops(clips: Tensor, digit_size: int = DIGIT_SIZE, out_size: int = 16) -> Tensor:
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
                      classifier: Callable[[Tensor], Tensor] | None = None,
                      digit_size: int = DIGIT_SIZE) -> pd.DataFrame:
    """One row per clip of (B, T, 1, H, W) pixels in [0, 1] and its toy caption: caption,
    digit, direction, predicted direction and the MEASURES."""
    _check_clips(clips, captions)
    classifier = default_classifier() if classifier is None else classifier
    truth = [parse_toy_caption(c) for c in captions]
    clips = clips.float().cpu()
    predicted = classifier(digit_crops(clips, digit_size)).argmax(1).view(clips.shape[:2])
    consistency = (predicted == predicted.mode(1).values[:, None]).float().mean(1)
    moves = motion_directions(clips)
    digits = torch.tensor([d for d, _ in truth])
    return pd.DataFrame({
        "caption": list(captions), "digit": digits.numpy(),
        "direction": [direction for _, direction in truth], "predicted_direction": moves,
        "digit_accuracy": (predicted == digits[:, None]).float().mean(1).double().numpy(),
        "direction_correct": [float(m == d) for m, (_, d) in zip(moves, truth)],
        "digit_consistency": consistency.double().numpy(),
        "motion_error_px": motion_errors(clips, captions, digit_size).numpy(),
        "centre_jerk_px": centre_jerk(clips).numpy(),
        "frame_change": frame_change(clips).double().numpy()})


def summarize(table: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Means and standard errors (``<measure>_se``) of the MEASURES per group of ``by``, with
    the number of clips; columns of ``table`` constant within a group (labels) are kept."""
    groups = table.groupby(list(by), dropna=False, sort=False)
    means = groups[list(MEASURES)].mean()
    errors = groups[list(MEASURES)].sem(ddof=1).add_suffix("_se")
    out = means.join(errors).join(groups.size().rename("clips"))
    labels = [c for c in table.columns if c not in by and c not in MEASURES
              and (groups[c].nunique(dropna=False) <= 1).all()]
    return out.join(groups[labels].first()).reset_index()


def compare_modes(model, captions: Sequence[str], frames: int, *, seed: int = 0,
                  classifier: Callable[[Tensor], Tensor] | None = None,
                  modes: Sequence[str] = ("sequential", "parallel"), **sample_kwargs
                  ) -> pd.DataFrame:
    """caption_following of ``pomlab.video.sample``'s clips (toy pixels) in each of ``modes``
    from the same noise (``seed``), rows tagged with ``mode`` and its generation ``seconds``;
    sample_kwargs go to ``sample``."""
    classifier = default_classifier() if classifier is None else classifier
    tables = []
    for mode in modes:
        tick = time.perf_counter()
        clips = sample(model, list(captions), frames, mode=mode,
                       generator=torch.Generator().manual_seed(seed), **sample_kwargs)
        seconds = time.perf_counter() - tick
        table = caption_following(from_model_range(clips.float().cpu()), captions, classifier)
        tables.append(table.assign(mode=mode, seconds=seconds))
    return pd.concat(tables, ignore_index=True)
