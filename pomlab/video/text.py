"""Captions through a frozen Hugging Face text encoder (T5, ByT5, CLIP text), cached per caption:
each caption is encoded alone, once (its embedding never depends on its batch), and a batch is
the cached rows padded with exact zeros (all zeros: the null caption). Needs the "text" extra
(transformers); usage in docs/video.md, "Captions through a frozen text encoder"."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from ..checks import check_positive_int
from ..data.text import check_captions

# tokenizers without a length limit report a huge model_max_length
_NO_LIMIT = 1_000_000


def _encoder_limit(tokenizer, model: nn.Module) -> int | None:
    """The tokenizer's length limit, else the model config's; None when neither sets one."""
    config = getattr(model, "config", None)
    limits = (getattr(tokenizer, "model_max_length", None),
              getattr(config, "max_position_embeddings", None), getattr(config, "n_positions", None))
    return next((n for n in limits if isinstance(n, int) and 0 < n < _NO_LIMIT), None)


class TextEncoder:
    """A frozen encoder (a transformers model with ``last_hidden_state``) and its tokenizer:
    ``encode(captions)`` -> (B, L, dim) float32 on the CPU, padding rows exactly zero.
    max_length: the longest caption in tokens; default the tokenizer's or the model's limit,
    required when neither sets one (T5, ByT5). name: the hub name kept in checkpoints."""

    def __init__(self, model: nn.Module, tokenizer, *, max_length: int | None = None,
                 name: str | None = None):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a transformers encoder (torch.nn.Module), got "
                            f"{type(model).__name__}")
        if not callable(tokenizer):
            raise TypeError(f"tokenizer must be a transformers tokenizer, got "
                            f"{type(tokenizer).__name__}")
        limit = _encoder_limit(tokenizer, model) if max_length is None else max_length
        if limit is None:
            raise ValueError("max_length must be given (the encoder's limit in tokens): this "
                             "tokenizer and model set none")
        check_positive_int("max_length", limit)
        self.model = model.eval().requires_grad_(False)
        self.tokenizer, self.max_length, self.name = tokenizer, limit, name
        config = getattr(model, "config", None)
        self.dim = getattr(config, "d_model", None) or getattr(config, "hidden_size", None)
        if not isinstance(self.dim, int):
            raise ValueError("the model's config names no width (d_model or hidden_size)")
        self.cache: dict[str, Tensor] = {}

    @classmethod
    def from_pretrained(cls, name: str, *, max_length: int | None = None,
                        device: str | torch.device = "cpu") -> "TextEncoder":
        """A hub model (or local folder): T5/mT5/ByT5 -> their encoder, CLIP -> its text
        model, anything else -> ``AutoModel``; ByT5 and T5 default to 512 tokens."""
        try:
            import transformers as tf
        except ImportError as err:                  # pragma: no cover - depends on the install
            raise ImportError("the text-encoder path needs transformers: pip install "
                              "'pomlab[text]' (or pip install transformers)") from err
        kind = getattr(tf.AutoConfig.from_pretrained(name), "model_type", "")
        model = (tf.T5EncoderModel.from_pretrained(name) if kind == "t5" else
                 tf.AutoModel.from_pretrained(name).get_encoder() if kind in ("mt5", "umt5") else
                 tf.CLIPTextModel.from_pretrained(name) if kind == "clip" else
                 tf.AutoModel.from_pretrained(name))
        if kind in ("t5", "mt5", "umt5") and max_length is None:
            max_length = 512
        return cls(model.to(device), tf.AutoTokenizer.from_pretrained(name),
                   max_length=max_length, name=name)

    def spec(self) -> dict:
        """What a checkpoint keeps: the hub name (None for an in-memory model), the limit, the width."""
        return {"name": self.name, "max_length": self.max_length, "dim": self.dim}

    def __repr__(self) -> str:
        return (f"TextEncoder({self.name or type(self.model).__name__}, dim {self.dim}, "
                f"max_length {self.max_length}, {len(self.cache)} cached captions)")

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
        captions = check_captions(captions)
        if not cache:
            rows = [self._encode_one(caption, i) for i, caption in enumerate(captions)]
            return nn.utils.rnn.pad_sequence(rows, batch_first=True)
        for i, caption in enumerate(captions):
            if caption not in self.cache:
                self.cache[caption] = self._encode_one(caption, i)
        return nn.utils.rnn.pad_sequence([self.cache[c] for c in captions], batch_first=True)
