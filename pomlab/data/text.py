"""Word-level caption vocabulary (id 0 = pad) and the toy captions' fixed vocabulary."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from ..checks import check_positive_int

PAD = "<pad>"
PAD_ID = 0
# the toy grammar "a {digit} moving {direction}" (pomlab.data.toy_video)
TOY_DIRECTION_WORDS = ("left", "right", "up", "down")


def check_captions(captions, single: bool = True) -> list[str]:
    """captions must be a non-empty list of strings (or one string, when ``single``)."""
    if single and isinstance(captions, str):
        return [captions]
    if isinstance(captions, str) or not isinstance(captions, Sequence) or len(captions) == 0:
        error = ValueError if isinstance(captions, Sequence) and not captions else TypeError
        raise error(f"captions must be a non-empty list of strings, got {captions!r:.80}")
    for i, c in enumerate(captions):
        if not isinstance(c, str):
            raise TypeError(f"captions[{i}] must be a string, got {type(c).__name__}")
    return list(captions)


class Vocabulary:
    """Word-level tokenizer (ids 1..V-1, 0 = pad) of lower-cased, space-split captions: an unknown
    word is an error naming it (no silent <unk>); the empty caption is all pads (the null one)."""

    def __init__(self, words: Sequence[str]):
        words = list(words)
        bad = [w for w in words if not isinstance(w, str) or not w or w.split() != [w]
               or w != w.lower() or w == PAD]
        if bad:
            raise ValueError(f"vocabulary words must be non-empty lower-case strings without "
                             f"spaces and not {PAD!r}, got {bad[:5]}")
        if len(set(words)) != len(words):
            raise ValueError("vocabulary words must be unique")
        self.words, self.pad_id = (PAD, *words), PAD_ID
        self.ids = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def from_captions(cls, captions: Sequence[str]) -> "Vocabulary":
        """Every word of ``captions``, sorted (a stable vocabulary for a caption file)."""
        return cls(sorted({w for c in check_captions(captions, single=False)
                           for w in c.lower().split()}))

    def __len__(self) -> int:
        return len(self.words)

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocabulary) and other.words == self.words

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} words: {' '.join(self.words)})"

    def encode(self, captions: str | Sequence[str], length: int | None = None) -> Tensor:
        """Captions -> (B, L) int64 word ids padded with 0; L = the longest caption (>= 1)."""
        captions = check_captions(captions)
        rows = []
        for i, caption in enumerate(captions):
            unknown = [w for w in caption.lower().split() if w not in self.ids]
            if unknown:
                raise ValueError(f"caption {i} ({caption!r}) has the unknown word {unknown[0]!r}; "
                                 f"known words: {' '.join(self.words[1:])}")
            rows.append([self.ids[w] for w in caption.lower().split()])
        longest = max(1, max(len(r) for r in rows))
        if length is not None and check_positive_int("length", length) < longest:
            raise ValueError(f"length {length} is shorter than the longest caption ({longest} words)")
        width = length or longest
        return torch.tensor([row + [PAD_ID] * (width - len(row)) for row in rows]).long()

    def decode(self, ids: Tensor) -> list[str]:
        """(B, L) word ids -> captions (pads dropped)."""
        return [" ".join(self.words[i] for i in row if i != PAD_ID) for row in ids.tolist()]


# The toy grammar's fixed vocabulary (17 entries with the pad).
TOY_VOCABULARY = Vocabulary(["a", "moving", *map(str, range(10)), *TOY_DIRECTION_WORDS])
