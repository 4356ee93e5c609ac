"""Toy moving-digit videos, the word vocabulary, and the user video-latent loader."""
import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings, strategies as st

from pomlab.data.text import TOY_VOCABULARY, Vocabulary
from pomlab.data.toy_video import (DIRECTIONS, all_toy_captions, make_toy_videos,
                                   parse_toy_caption, toy_caption, toy_trajectory)
from pomlab.data.video import VideoDataset, load_video_latents


def centre_of_mass(frames):
    """(T, 1, H, W) -> (T, 2) row, col centres."""
    h, w = frames.shape[-2:]
    mass = frames[:, 0]
    total = mass.sum((1, 2))
    rows = (mass.sum(2) * torch.arange(h)).sum(1) / total
    cols = (mass.sum(1) * torch.arange(w)).sum(1) / total
    return torch.stack([rows, cols], 1)


def test_toy_vocabulary_is_the_grammar():
    assert TOY_VOCABULARY.words == ("<pad>", "a", "moving", *map(str, range(10)),
                                    "left", "right", "up", "down")
    assert TOY_VOCABULARY.pad_id == 0 and len(TOY_VOCABULARY) == 17
    captions = all_toy_captions()
    assert len(set(captions)) == 40
    ids = TOY_VOCABULARY.encode(captions)
    assert ids.shape == (40, 4) and ids.dtype == torch.int64 and (ids > 0).all()
    assert TOY_VOCABULARY.decode(ids) == captions
    assert [parse_toy_caption(c) for c in captions[:5]] == [
        (0, "left"), (0, "right"), (0, "up"), (0, "down"), (1, "left")]


def test_encode_pads_and_rejects_unknown_words_by_name():
    ids = TOY_VOCABULARY.encode(["a 3 moving left", "A 3", ""])
    assert ids.tolist()[1:] == [[1, 6, 0, 0], [0, 0, 0, 0]]          # lower-cased; "" = null
    assert TOY_VOCABULARY.encode("a 3", length=6).shape == (1, 6)
    with pytest.raises(ValueError, match=r"caption 1 \('a 3 moving sideways'\) has the unknown "
                                         r"word 'sideways'; known words: a moving 0"):
        TOY_VOCABULARY.encode(["a 3 moving left", "a 3 moving sideways"])
    with pytest.raises(ValueError, match="length 2 is shorter than the longest caption"):
        TOY_VOCABULARY.encode(["a 3 moving left"], length=2)
    with pytest.raises(ValueError, match="captions must be a non-empty list of strings"):
        TOY_VOCABULARY.encode([])
    with pytest.raises(TypeError, match=r"captions\[1\] must be a string"):
        TOY_VOCABULARY.encode(["a", 3])
    with pytest.raises(ValueError, match="not a toy caption"):
        parse_toy_caption("a 3 moving sideways")
    with pytest.raises(ValueError, match="direction must be one of"):
        toy_caption(3, "sideways")
    with pytest.raises(ValueError, match="unique"):
        Vocabulary(["a", "a"])
    with pytest.raises(ValueError, match="direction must be one of"):
        toy_trajectory("sideways", 3, 8, 0)
    with pytest.raises(TypeError, match=r"videos must be a float tensor \(N, T, C, H, W\)"):
        VideoDataset(np.zeros((1, 2, 1, 4, 4)), ["a"], TOY_VOCABULARY)
    with pytest.raises(TypeError, match="vocab must be a Vocabulary"):
        VideoDataset(torch.zeros(1, 2, 1, 4, 4), ["a"], ["a"])


def test_vocabulary_from_captions_is_sorted_and_stable():
    vocab = Vocabulary.from_captions(["A red ball", "a blue ball"])
    assert vocab.words == ("<pad>", "a", "ball", "blue", "red")
    assert vocab == Vocabulary.from_captions(["a blue ball", "a red ball"])


@settings(max_examples=8)
@given(frames=st.integers(2, 10), size=st.sampled_from([12, 16, 20]), seed=st.integers(0, 999))
def test_toy_digits_move_as_the_caption_says(frames, size, seed):
    data = make_toy_videos(12, frames=frames, size=size, seed=seed)
    assert data.videos.shape == (12, frames, 1, size, size)
    assert 0 <= data.videos.min() and data.videos.max() <= 1
    assert data.tokens.shape == (12, 4) and data.kind == "pixels"
    for video, caption, digit, direction in zip(data.videos, data.captions, data.digits,
                                                data.directions):
        assert parse_toy_caption(caption) == (int(digit), direction)
        step = centre_of_mass(video)[-1] - centre_of_mass(video)[0]
        expected = torch.tensor(DIRECTIONS[direction], dtype=step.dtype) * (size - 8)
        torch.testing.assert_close(step, expected, atol=1e-4, rtol=0)   # the full crossing


def test_toy_set_is_reproducible_and_uses_the_split():
    a, b = make_toy_videos(6, seed=3), make_toy_videos(6, seed=3)
    assert torch.equal(a.videos, b.videos) and a.captions == b.captions
    assert not torch.equal(a.videos, make_toy_videos(6, seed=4).videos)
    held = make_toy_videos(6, split="heldout", seed=3)
    assert held.name.startswith("toy-video-heldout") and not torch.equal(held.videos, a.videos)
    x, tokens = a.model_inputs(slice(0, 2))
    assert x.min() >= -1 and x.max() <= 1 and torch.equal(tokens, a.tokens[:2])
    assert toy_trajectory("left", 3, 8, 2) == [(2, 8), (2, 4), (2, 0)]
    with pytest.raises(ValueError, match="digit_size 20 must not exceed size 16"):
        make_toy_videos(2, digit_size=20)
    with pytest.raises(ValueError, match="frames must be >= 1"):
        make_toy_videos(2, frames=0)


def _write_clips(root, shapes, suffixes):
    rows = []
    for i, (shape, suffix) in enumerate(zip(shapes, suffixes)):
        clip = np.random.default_rng(i).standard_normal(shape).astype(np.float32)
        name = f"clip{i}{suffix}"
        if suffix == ".npy":
            np.save(root / name, clip)
        else:
            torch.save(torch.from_numpy(clip), root / name)
        rows.append({"file": name, "caption": f"a clip number {'one two'.split()[i % 2]}"})
    pd.DataFrame(rows).to_csv(root / "captions.csv", index=False)
    return rows


def test_video_latents_load_npy_and_pt(tmp_path):
    rows = _write_clips(tmp_path, [(3, 4, 8, 8)] * 3, [".npy", ".pt", ".npy"])
    data = load_video_latents(tmp_path)
    assert data.videos.shape == (3, 3, 4, 8, 8) and data.kind == "latents"
    assert data.captions == [r["caption"] for r in rows]
    assert data.vocab.words == ("<pad>", "a", "clip", "number", "one", "two")
    np.testing.assert_array_equal(data.videos[0].numpy(), np.load(tmp_path / "clip0.npy"))
    x, _ = data.model_inputs()
    assert torch.equal(x, data.videos)                           # latents are used as they are
    with pytest.raises(ValueError, match="unknown word 'clip'"):
        load_video_latents(tmp_path, vocab=TOY_VOCABULARY)


def test_video_latents_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="captions file"):
        load_video_latents(tmp_path)
    _write_clips(tmp_path, [(3, 4, 8, 8), (2, 4, 8, 8)], [".npy", ".pt"])
    with pytest.raises(ValueError, match=r"clip 'clip1.pt' has shape \(2, 4, 8, 8\)"):
        load_video_latents(tmp_path)
    pd.DataFrame([{"file": "gone.npy", "caption": "x"}]).to_csv(tmp_path / "captions.csv")
    with pytest.raises(FileNotFoundError, match="clip 'gone.npy' listed in captions.csv is missing"):
        load_video_latents(tmp_path)
    pd.DataFrame([{"name": "clip0.npy"}]).to_csv(tmp_path / "captions.csv", index=False)
    with pytest.raises(ValueError, match="must have columns file,caption"):
        load_video_latents(tmp_path)
    np.save(tmp_path / "flat.npy", np.zeros((4, 8), np.float32))
    pd.DataFrame([{"file": "flat.npy", "caption": "x"}]).to_csv(tmp_path / "captions.csv")
    with pytest.raises(ValueError, match=r"must hold a float \(T, C, H, W\) clip"):
        load_video_latents(tmp_path)
