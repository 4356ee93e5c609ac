"""Captions through a frozen Hugging Face text encoder (T5, ByT5, CLIP text), cached per caption.

    encoder = TextEncoder.from_pretrained("google/byt5-small")        # on your machine
    model = pomlab.models.create("VideoDiPoM-S/4", scale="micro", text_dim=encoder.dim)
    clips = pomlab.video.sample(model, ["a 3 moving left"], 8, text_encoder=encoder)

The encoder never trains (``requires_grad`` off, eval mode, ``torch.no_grad``); the video
model's ``TextProjection`` (Linear to the model width) is what learns. Each caption is encoded
once, alone, and its (tokens, dim) output kept in ``cache``; a batch is the cached rows padded
with exact zeros, which the video model reads as padding (the all-zero caption is its null
caption for guidance). Encoding alone means a caption's embedding never depends on what it is
batched with. Needs the optional extra ``pip install "pomlab[text]"`` (transformers).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

# tokenizers without a length limit report a huge model_max_length
_NO_LIMIT = 1_000_000


def _transformers():
    try:
        import transformers
    except ImportError as err:                      # pragma: no cover - depends on the install
        raise ImportError("the text-encoder path needs transformers: pip install "
                          "'pomlab[text]' (or pip install transformers)") from err
    return transformers


def _encoder_limit(tokenizer, model: nn.Module) -> int | None:
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < _NO_LIMIT:
        return limit
    config = getattr(model, "config", None)
    for key in ("max_position_embeddings", "n_positions"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


class TextEncoder:
    """A frozen encoder and its tokenizer: ``encode(captions)`` -> (B, L, dim) float32 on the
    CPU, real tokens first, padding rows exactly zero; L = the longest caption's tokens.

    model: a transformers encoder (``T5EncoderModel``, ``CLIPTextModel``, ...) whose output
    has ``last_hidden_state``; tokenizer: its tokenizer. max_length: the longest caption in
    tokens (special tokens included); default the tokenizer's ``model_max_length`` or the
    model's position limit, required when neither is set (ByT5 and T5 have none). name: the
    hub name, kept in checkpoints so ``load_video_model`` can rebuild the encoder.
    """

    def __init__(self, model: nn.Module, tokenizer, *, max_length: int | None = None,
                 name: str | None = None):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a transformers encoder (torch.nn.Module), got "
                            f"{type(model).__name__}")
        if not callable(tokenizer):
            raise TypeError(f"tokenizer must be a transformers tokenizer, got "
                            f"{type(tokenizer).__name__}")
        limit = _encoder_limit(tokenizer, model) if max_length is None else max_length
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError("max_length must be a positive int (the encoder's limit in tokens); "
                             f"this tokenizer and model set none, got {max_length!r}")
        self.model = model.eval().requires_grad_(False)
        self.tokenizer, self.max_length, self.name = tokenizer, limit, name
        config = getattr(model, "config", None)
        dim = getattr(config, "d_model", None) or getattr(config, "hidden_size", None)
        if not isinstance(dim, int):
            raise ValueError("the model's config names no width (d_model or hidden_size)")
        self.dim = dim
        self.cache: dict[str, Tensor] = {}

    @classmethod
    def from_pretrained(cls, name: str, *, max_length: int | None = None,
                        device: str | torch.device = "cpu") -> "TextEncoder":
        """A hub model (or local folder): T5/mT5/ByT5 -> their encoder, CLIP -> its text
        model, anything else -> ``AutoModel``; ByT5 and T5 default to 512 tokens."""
        tf = _transformers()
        config = tf.AutoConfig.from_pretrained(name)
        kind = getattr(config, "model_type", "")
        if kind in ("t5", "mt5", "umt5"):
            model = tf.T5EncoderModel.from_pretrained(name) if kind == "t5" else \
                tf.AutoModel.from_pretrained(name).get_encoder()
            max_length = 512 if max_length is None else max_length
        elif kind == "clip":
            model = tf.CLIPTextModel.from_pretrained(name)
        else:
            model = tf.AutoModel.from_pretrained(name)
        return cls(model.to(device), tf.AutoTokenizer.from_pretrained(name),
                   max_length=max_length, name=name)

    def spec(self) -> dict:
        """What a checkpoint keeps: the hub name (None for an in-memory model), the limit, the width."""
        return {"name": self.name, "max_length": self.max_length, "dim": self.dim}

    def __repr__(self) -> str:
        return (f"TextEncoder({self.name or type(self.model).__name__}, dim {self.dim}, "
                f"max_length {self.max_length}, {len(self.cache)} cached captions)")

    def _check(self, captions) -> list[str]:
        if isinstance(captions, str):
            captions = [captions]
        if not isinstance(captions, Sequence) or len(captions) == 0:
            raise ValueError(f"captions must be a non-empty list of strings, got {captions!r:.80}")
        for i, caption in enumerate(captions):
            if not isinstance(caption, str):
                raise TypeError(f"captions[{i}] must be a string, got {type(caption).__name__}")
        return list(captions)

    @torch.no_grad()
    def _encode_one(self, caption: str, index: int) -> Tensor:
        ids = self.tokenizer(caption, return_tensors="pt")["input_ids"]
        if ids.shape[1] > self.max_length:
            raise ValueError(f"caption {index} ({caption:.60}...) is {ids.shape[1]} tokens long; "
                             f"the encoder takes at most max_length={self.max_length}")
        device = next(self.model.parameters()).device
        out = self.model(input_ids=ids.to(device), attention_mask=torch.ones_like(ids).to(device))
        return out.last_hidden_state[0].float().cpu()

    def encode(self, captions: str | Sequence[str], *, cache: bool = True) -> Tensor:
        """(B, L, dim) embeddings, zero-padded to the longest caption. cache=False encodes
        every caption again (and stores nothing); cache=True reuses and fills ``cache``."""
        captions = self._check(captions)
        rows = []
        for i, caption in enumerate(captions):
            row = self.cache.get(caption) if cache else None
            if row is None:
                row = self._encode_one(caption, i)
                if cache:
                    self.cache[caption] = row
            rows.append(row)
        return nn.utils.rnn.pad_sequence(rows, batch_first=True)     # pads with exact zeros
