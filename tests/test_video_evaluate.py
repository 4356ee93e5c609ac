"""pomlab.video.evaluate: caption following and the temporal-consistency measures."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pomlab.models as M
from _models_helpers import randomize_
from pomlab.data.digits import load_digits
from pomlab.data.toy_video import DIRECTIONS, make_toy_videos, toy_caption, toy_trajectory
from pomlab.video.evaluate import (MEASURES, caption_following, centre_jerk, compare_modes,
                                   frame_change, motion_errors, summarize)


def clip_with_cross_jitter(direction: str, jitter: int, digit: int = 0, frames: int = 8):
    """A 16x16 toy clip following ``direction`` whose digit is moved +jitter / -jitter pixels
    across the motion on alternate frames (cross position 4, so it stays in the frame)."""
    images, labels = load_digits("heldout")
    image = images[(labels == digit).nonzero()[0, 0]]
    clip = torch.zeros(frames, 1, 16, 16)
    across = 0 if DIRECTIONS[direction][0] == 0 else 1        # the axis the digit does not move on
    for f, (r, c) in enumerate(toy_trajectory(direction, frames, 8, 4)):
        offset = jitter if f % 2 == 0 else -jitter
        r, c = (r + offset, c) if across == 0 else (r, c + offset)
        clip[f, :, r:r + 8, c:c + 8] = image
    return clip, toy_caption(digit, direction)


def test_real_clips_follow_their_captions_exactly():
    data = make_toy_videos(24, split="heldout", seed=3)
    table = caption_following(data.videos, data.captions)
    assert list(table.columns[-len(MEASURES):]) == list(MEASURES)
    assert table["digit_accuracy"].mean() > 0.9                # the classifier on real digits
    assert (table["direction_correct"] == 1).all()
    # the digit is translated rigidly along the caption's trajectory: float64 rounding only
    assert table["motion_error_px"].max() < 1e-9
    # whole-pixel rounding of 8 px over 7 frames: steps 1,1,1,2,1,1,1 -> |2nd diff| 1 twice of 6
    assert table["centre_jerk_px"].tolist() == pytest.approx([1 / 3] * 24, abs=1e-9)


@settings(max_examples=12, deadline=None)
@given(direction=st.sampled_from(sorted(DIRECTIONS)), jitter=st.integers(0, 4),
       digit=st.integers(0, 9))
def test_motion_error_equals_a_known_shift(direction, jitter, digit):
    """Alternate frames moved +-k pixels off the line: every frame is k from the trajectory
    (after the mean offset, which is 0 for 8 frames), so the error is exactly k."""
    clip, caption = clip_with_cross_jitter(direction, jitter, digit)
    error = motion_errors(clip[None], [caption])
    assert error.item() == pytest.approx(jitter, abs=1e-9)


def test_motion_error_grows_with_the_shift_and_wrong_direction_is_large():
    errors = [motion_errors(clip_with_cross_jitter("left", k)[0][None], ["a 0 moving left"]).item()
              for k in range(5)]
    assert errors == sorted(errors) and errors[0] < 1e-9 and errors[-1] == pytest.approx(4)
    clip, _ = clip_with_cross_jitter("left", 0)
    # going right instead of left: |trajectory - mirrored| averaged, far above 1 pixel
    assert motion_errors(clip[None], ["a 0 moving right"]).item() > 3


def test_smoothness_measures():
    still = torch.zeros(1, 5, 1, 16, 16)
    still[..., 4:12, 4:12] = 1.0
    assert centre_jerk(still).item() == 0 and frame_change(still).item() == 0
    clip, _ = clip_with_cross_jitter("up", 2)
    # rows: 8,7,6,5,3,2,1,0 (the motion) ; cols alternate 6,2: second differences ~ 8 px
    assert centre_jerk(clip[None]).item() > 7
    assert frame_change(clip[None]).item() > frame_change(clip_with_cross_jitter("up", 0)[0][None]).item()


def test_digit_consistency_counts_the_modal_class():
    data = make_toy_videos(2, split="heldout", seed=0, captions=["a 3 moving left", "a 7 moving up"])
    mixed = data.videos.clone()
    mixed[0, 4:] = data.videos[1, 4:]           # half of clip 0 shows the other clip's 7
    table = caption_following(mixed, data.captions)
    assert table.loc[0, "digit_consistency"] == pytest.approx(0.5)
    assert table.loc[1, "digit_consistency"] == 1.0


def test_summarize_means_and_standard_errors():
    data = make_toy_videos(6, split="heldout", seed=0)
    table = caption_following(data.videos, data.captions).assign(variant="real", model="none")
    summary = summarize(table, ["variant"])
    assert summary.loc[0, "clips"] == 6 and summary.loc[0, "model"] == "none"
    assert summary.loc[0, "motion_error_px"] < 1e-9
    assert summary.loc[0, "frame_change_se"] == pytest.approx(table["frame_change"].sem())


def test_compare_modes_reports_both_modes_on_the_same_clips():
    torch.manual_seed(0)
    model = randomize_(M.create("VideoDiPoM-S/8", scale="micro", depth=1), std=0.1)
    captions = ["a 3 moving left", "a 7 moving up"]
    table = compare_modes(model, captions, 4, steps=2, method="euler", seed=1)
    assert table["mode"].tolist() == ["sequential"] * 2 + ["parallel"] * 2
    by_mode = table.set_index(["mode", "caption"])[list(MEASURES)]
    # the two samplers give one clip (1e-6, tests/test_video_sampling.py): same measures
    torch.testing.assert_close(torch.tensor(by_mode.loc["sequential"].values),
                               torch.tensor(by_mode.loc["parallel"].values), rtol=0, atol=1e-3)


def test_bad_inputs_are_named():
    clips = torch.zeros(2, 4, 1, 16, 16)
    with pytest.raises(ValueError, match="captions must be a list of 2"):
        caption_following(clips, ["a 3 moving left"])
    with pytest.raises(ValueError, match="clips must be grey"):
        motion_errors(torch.zeros(2, 4, 3, 16, 16), ["a 3 moving left"] * 2)
    with pytest.raises(ValueError, match="not a toy caption"):
        motion_errors(clips, ["a cat", "a 3 moving left"])
    with pytest.raises(ValueError, match="at least one frame"):
        motion_errors(torch.zeros(2, 0, 1, 16, 16), ["a 3 moving left"] * 2)
