"""Text-conditioned video DiPoM: PoM for text cross-mixing and for (block-causal) self-mixing.

The paper's video model, built from the image backbone's parts (``modulate``, MLP,
``TimestepEmbedder``, ``PatchEmbed``, ``FinalLayer``, sin-cos positions, DiT initialisation):

    tokens  = PatchEmbed(frame) per frame + 3-D sin-cos(frame, row, col)    # frame-major order
    text    = LN(Embedding(word ids) + 1-D sin-cos(word position))         # pad id 0 is masked
    c       = TimestepEmbedder(t)                                           # time is a modulation
    per block, with shift/scale/gate = Linear(SiLU(c)) (zero-initialised, "AdaLN-Zero"):
        x += g1 * PoM_text(mod(LN(x)), context=text, mask=text != pad)      # cross-mixing
        x += g2 * PoM_self(mod(LN(x)), mask=block_causal(frames, P))        # frame t sees <= t
        x += g3 * MLP(mod(LN(x)))
    out = unpatchify(FinalLayer(x, c)) per frame

A token is one p x p patch of one frame (the temporal patch is one frame): the frame is the
unit of causality, so the block-causal model can generate frames one at a time. ``step``
runs one frame through the network carrying each layer's ``PoMState`` (docs/pom.md §4 state
recurrence), which equals ``forward`` with the block-causal mask restricted to that frame.
Text without any word (all pad) gives a zero cross-mixing state: that is the null caption
for classifier-free guidance (caption dropout in training).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..data.text import PAD_ID, TOY_VOCABULARY
from ..nn import masks
from ..checks import check_positive_int
from ..nn.blocks import MLP
from ..nn.pom import PoM, PoMState
from .backbone import (LN_EPS, FinalLayer, PatchEmbed, TimestepEmbedder, initialize_dit_weights,
                       modulate, sincos_1d, sincos_2d, time_batch,
                       unpatchify)
from .registry import (DIPOM_DEFAULTS, DIPOM_MLP_RATIO, MICRO_SIZES, PAPER_SIZES, PATCHES,
                       SCALE_DEFAULTS, SCALES, SIZES, register_family)

# create() overrides of the video family; create(**model.config) rebuilds a model.
VIDEO_KEYS = ("input_size", "in_channels", "num_frames", "vocab_size", "hidden_size", "depth",
              "mlp_ratio", "degree", "expand", "polynomial", "causal", "caption_dropout_prob",
              "text_dim", "text_modulation")
VIDEO_SCALE_DEFAULTS = {
    # 256x256 frames as 32x32x4 VAE latents, 16 frames; a subword-sized vocabulary (set
    # vocab_size to your tokenizer's).
    "paper": dict(input_size=32, in_channels=4, num_frames=16, vocab_size=32000),
    # the toy moving-digits set: 16x16 grey pixels, 8 frames, the toy caption vocabulary.
    "micro": dict(input_size=16, in_channels=1, num_frames=8, vocab_size=len(TOY_VOCABULARY)),
}


FAMILY = "VideoDiPoM"


def video_names() -> list[str]:
    """The 12 video model names: VideoDiPoM-S/2 ... VideoDiPoM-XL/8."""
    return [f"{FAMILY}-{size}/{patch}" for size in SIZES for patch in PATCHES]


def default_video_config(size: str, scale: str) -> dict:
    """The image family's widths and depths and DiPoM's mixer settings, video inputs."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    sizes = PAPER_SIZES if scale == "paper" else MICRO_SIZES
    return {**VIDEO_SCALE_DEFAULTS[scale], "hidden_size": sizes[size]["hidden_size"],
            "depth": sizes[size]["depth"], "mlp_ratio": DIPOM_MLP_RATIO[size], **DIPOM_DEFAULTS,
            "causal": True, "caption_dropout_prob": 0.1, "text_dim": None,
            "text_modulation": False}


def create_video(name: str, scale: str = "paper", **overrides) -> "VideoDiPoM":
    """``pomlab.models.create`` for video names, e.g. ("VideoDiPoM-S/2", "micro", depth=2).

    Overrides: VIDEO_KEYS. ``create(**model.config)`` rebuilds the same architecture.
    """
    size, patch = name[len(FAMILY) + 1:].split("/")
    cfg = default_video_config(size, scale)
    for key in overrides:
        if key not in VIDEO_KEYS:
            raise TypeError(f"create() got an unknown override {key!r} for {name}; "
                            f"valid overrides: {', '.join(VIDEO_KEYS)}")
    defaults = dict(cfg)
    cfg.update(overrides)
    changed = [f"{k}={cfg[k]}" for k in cfg if cfg[k] != defaults[k]]
    model = VideoDiPoM(patch_size=int(patch), **cfg)
    model.name, model.scale, model.size, model.family = name, scale, size, FAMILY
    model.latent_scale = SCALE_DEFAULTS[scale]["latent_scale"]
    model.config = {"name": name, "scale": scale, **cfg}
    model.label = f"{name} ({', '.join([scale] + changed)})"
    return model


def sincos_3d(dim: int, frames: int, rows: int, cols: int, first_frame: int = 0) -> Tensor:
    """(frames*rows*cols, dim) float64 positions, frame-major then row-major.

    A quarter of the channels (a multiple of 4, at least 4) encodes the frame index, the rest
    is the image family's 2-D embedding of (row, col). ``first_frame`` offsets the frame
    index, so one frame's rows equal the matching slice of the whole video's table.
    """
    if dim % 4 or dim < 8:
        raise ValueError(f"3-D sin-cos embedding needs dim divisible by 4 and >= 8, got {dim}")
    time_dim = max(4, 4 * (dim // 16))
    frame = torch.arange(first_frame, first_frame + frames)
    spatial = sincos_2d(dim - time_dim, rows, cols)                       # (rows*cols, .)
    temporal = sincos_1d(time_dim, frame)                                 # (frames, .)
    return torch.cat([spatial.repeat(frames, 1),
                      temporal.repeat_interleave(rows * cols, dim=0)], dim=1)


def _with_positions(norm: nn.LayerNorm, tokens: Tensor) -> Tensor:
    """LN(tokens + 1-D sin-cos position): the one recipe of both text paths."""
    pos = sincos_1d(tokens.shape[-1], torch.arange(tokens.shape[1]))
    return norm(tokens + pos.to(tokens))


class TextEmbedder(nn.Module):
    """Word ids (B, L) -> text tokens (B, L, D): embedding + 1-D sin-cos position, then LN.

    PoM's state is a symmetric function of its context, so word order reaches the video
    only through these positions.
    """

    def __init__(self, vocab_size: int, hidden_size: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, hidden_size)
        self.norm = nn.LayerNorm(hidden_size, eps=LN_EPS)

    def forward(self, ids: Tensor) -> Tensor:
        return _with_positions(self.norm, self.embedding(ids))


class TextProjection(nn.Module):
    """Frozen-encoder embeddings (B, L, E) -> text tokens (B, L, D): Linear + 1-D sin-cos
    position, then LN (the word path's recipe, so both reach the blocks alike).

    Padding rows are exactly zero (``pomlab.video.text.TextEncoder`` writes them so); the
    all-zero caption is the null caption, as the all-pad one is for word ids.
    """

    def __init__(self, text_dim: int, hidden_size: int):
        super().__init__()
        self.proj = nn.Linear(text_dim, hidden_size)
        self.norm = nn.LayerNorm(hidden_size, eps=LN_EPS)

    def forward(self, embeddings: Tensor) -> Tensor:
        return _with_positions(self.norm, self.proj(embeddings.to(self.proj.weight)))


class VideoBlock(nn.Module):
    """Text cross-mixing, video self-mixing and an MLP, each AdaLN-Zero modulated by time."""

    def __init__(self, hidden_size: int, mlp_ratio: float, degree: int, expand: int,
                 polynomial: str):
        super().__init__()
        def pom():
            return PoM(hidden_size, degree=degree, expand=expand, polynomial=polynomial)

        def norm():
            return nn.LayerNorm(hidden_size, elementwise_affine=False, eps=LN_EPS)

        self.norm_text, self.text_mixer = norm(), pom()
        self.norm_self, self.self_mixer = norm(), pom()
        self.norm_mlp = norm()
        self.mlp = MLP(hidden_size, int(hidden_size * mlp_ratio), approximate="tanh")
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 9 * hidden_size))

    def _mix_all(self, x: Tensor, c: Tensor, text: Tensor, text_mask: Tensor, self_mix) -> Tensor:
        (shift1, scale1, gate1, shift2, scale2, gate2,
         shift3, scale3, gate3) = self.adaLN_modulation(c).chunk(9, dim=1)
        x = x + gate1.unsqueeze(1) * self.text_mixer(
            modulate(self.norm_text(x), shift1, scale1), context=text, mask=text_mask)
        x = x + gate2.unsqueeze(1) * self_mix(modulate(self.norm_self(x), shift2, scale2))
        return x + gate3.unsqueeze(1) * self.mlp(modulate(self.norm_mlp(x), shift3, scale3))

    def forward(self, x: Tensor, c: Tensor, text: Tensor, text_mask: Tensor,
                video_mask: Tensor | None) -> Tensor:
        return self._mix_all(x, c, text, text_mask, lambda h: self.self_mixer(h, mask=video_mask))

    def step(self, x: Tensor, c: Tensor, text: Tensor, text_mask: Tensor,
             state: PoMState | None) -> tuple[Tensor, PoMState]:
        """One frame's tokens; ``state`` holds the self-mixing state of the earlier frames."""
        carried = {}

        def self_mix(h):
            y, carried["state"] = self.self_mixer.step(h, state)
            return y

        return self._mix_all(x, c, text, text_mask, self_mix), carried["state"]


class VideoDiPoM(nn.Module):
    """Text-to-video flow/diffusion transformer with PoM mixing.

    ``forward(x, t, text)``: x (B, T, C, H, W) with H, W multiples of ``patch_size`` and any
    T >= 1 (positions are recomputed); t (B,) in [0, 1]; text (B, L) int64 word ids, 0 = pad.
    Returns (B, T, out_channels, H, W). With ``causal=True`` (default) frame t sees frames
    <= t only (block-causal self-mixing), which ``step`` reproduces frame by frame.
    """

    def __init__(self, *, input_size: int, patch_size: int, in_channels: int, hidden_size: int,
                 depth: int, vocab_size: int, num_frames: int, mlp_ratio: float,
                 degree: int = 2, expand: int = 2, polynomial: str = "products",
                 causal: bool = True, caption_dropout_prob: float = 0.1,
                 text_dim: int | None = None, text_modulation: bool = False):
        super().__init__()
        for arg, value in [("input_size", input_size), ("patch_size", patch_size),
                           ("in_channels", in_channels), ("hidden_size", hidden_size),
                           ("depth", depth), ("vocab_size", vocab_size),
                           ("num_frames", num_frames)]:
            check_positive_int(arg, value)
        if input_size % patch_size:
            raise ValueError(f"input_size {input_size} is not divisible by patch_size {patch_size}")
        if hidden_size % 4 or hidden_size < 8:
            raise ValueError(f"hidden_size must be divisible by 4 and >= 8 (3-D sin-cos "
                             f"positions), got {hidden_size}")
        if vocab_size < 2:
            raise ValueError(f"vocab_size must be >= 2 (pad + at least one word), got {vocab_size}")
        if isinstance(mlp_ratio, bool) or not isinstance(mlp_ratio, (int, float)) or mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be a number > 0, got {mlp_ratio!r}")
        for arg, value in (("causal", causal), ("text_modulation", text_modulation)):
            if not isinstance(value, bool):
                raise TypeError(f"{arg} must be a bool, got {type(value).__name__}")
        if text_dim is not None:
            check_positive_int("text_dim", text_dim)
        if not 0.0 <= caption_dropout_prob < 1.0:
            raise ValueError(f"caption_dropout_prob must be in [0, 1), got {caption_dropout_prob}")
        self.input_size, self.patch_size, self.in_channels = input_size, patch_size, in_channels
        self.out_channels, self.hidden_size, self.depth = in_channels, hidden_size, depth
        self.vocab_size, self.num_frames, self.causal = vocab_size, num_frames, causal
        self.caption_dropout_prob = caption_dropout_prob
        # text_dim: captions arrive as a frozen encoder's embeddings (B, L, text_dim), not ids
        self.text_dim, self.text_modulation = text_dim, text_modulation
        self.mixer = "pom"
        self.null_token = PAD_ID          # an all-pad caption is the unconditional input
        self.vocab = None                 # captions -> word ids for pomlab.video.sample (None: toy)
        self.text_encoder = None          # captions -> embeddings when text_dim is set

        self.x_embedder = PatchEmbed(patch_size, in_channels, hidden_size)
        grid = input_size // patch_size
        # The default clip's positions (float64, cast per call), made once like DiT's pos_embed
        # rather than on the host at every call; forward and step slice the same table.
        self.register_buffer("pos_embed", sincos_3d(hidden_size, num_frames, grid, grid)[None],
                             persistent=False)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.text_embedder = (TextEmbedder(vocab_size, hidden_size) if text_dim is None
                              else TextProjection(text_dim, hidden_size))
        # text_modulation: the caption's mean token also enters the time modulation c (as a
        # class label does in DiT), so every block's shift/scale/gate see it, not only the
        # cross-mixing
        self.text_pool = nn.Linear(hidden_size, hidden_size) if text_modulation else None
        self.blocks = nn.ModuleList([VideoBlock(hidden_size, mlp_ratio, degree, expand, polynomial)
                                     for _ in range(depth)])
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT's initialisation, plus zero video-block modulations and N(0, 1) word vectors."""
        initialize_dit_weights(self)
        if self.text_dim is None:
            # on the scale of the sin-cos positions they are added to (entries of size ~1):
            # DiT's 0.02 left a word 2% of its token, so captions were read last and slowly
            nn.init.normal_(self.text_embedder.embedding.weight, std=1.0)
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)

    # --- inputs ----------------------------------------------------------------------------

    def _check_frames(self, x, name: str, frame_dims: int) -> None:
        shape = "(batch, frames, C, H, W)" if frame_dims == 5 else "(batch, C, H, W)"
        if not isinstance(x, Tensor) or not x.dtype.is_floating_point or x.dim() != frame_dims:
            raise TypeError(f"{name} must be a float tensor {shape}, got "
                            + (f"{x.dtype} of shape {tuple(x.shape)}" if isinstance(x, Tensor)
                               else type(x).__name__))
        c, h, w = x.shape[-3:]
        if c != self.in_channels:
            raise ValueError(f"{name} has {c} channels, expected in_channels={self.in_channels}")
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"{name} frame size {h}x{w} is not divisible by patch_size "
                             f"{self.patch_size}")
        if frame_dims == 5 and x.shape[1] < 1:
            raise ValueError(f"{name} must hold at least one frame, got shape {tuple(x.shape)}")

    def _check_condition(self, x: Tensor, t, text) -> Tensor:
        """Shapes and dtypes only: no host sync here. The values (t in [0, 1], word ids below
        vocab_size) are checked where they enter: pomlab.video.sample, VideoDataset, the trainer."""
        b = x.shape[0]
        t = time_batch(t, b, x.device, per="video")
        if self.text_dim is not None:
            if (not isinstance(text, Tensor) or not text.dtype.is_floating_point
                    or text.dim() != 3 or text.shape[0] != b or text.shape[1] < 1
                    or text.shape[2] != self.text_dim):
                got = (f"{text.dtype} of shape {tuple(text.shape)}" if isinstance(text, Tensor)
                       else type(text).__name__)
                raise ValueError(f"text must be float caption embeddings ({b}, tokens >= 1, "
                                 f"text_dim={self.text_dim}) (pomlab.video.text.TextEncoder), "
                                 f"got {got}")
            return t
        if not isinstance(text, Tensor) or text.dtype not in (torch.int64, torch.int32):
            raise TypeError("text must be an int64 tensor of word ids (batch, words), got "
                            + (str(text.dtype) if isinstance(text, Tensor)
                               else type(text).__name__))
        if text.dim() != 2 or text.shape[0] != b or text.shape[1] < 1:
            raise ValueError(f"text must have shape ({b}, words >= 1), got {tuple(text.shape)}")
        return t

    def condition(self, t: Tensor, text: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(c, text tokens, text padding mask); captions are dropped to the null caption
        (all pad ids, or all-zero embeddings) in train()."""
        if self.text_dim is None:
            text = text.long()
        if self.training and self.caption_dropout_prob > 0:
            drop = torch.rand(text.shape[0], device=text.device) < self.caption_dropout_prob
            drop = drop.view(-1, *([1] * (text.dim() - 1)))
            text = torch.where(drop, torch.full_like(text, self.null_token), text)
        # padding: pad ids, or the all-zero rows of the embeddings
        mask = text != self.null_token if self.text_dim is None else text.abs().amax(-1) > 0
        tokens = self.text_embedder(text)
        c = self.t_embedder(t)
        if self.text_pool is not None:
            weights = mask.to(tokens.dtype)[..., None]
            pooled = (tokens * weights).sum(1) / weights.sum(1).clamp(min=1)
            # the null caption pools to 0 and adds only the bias
            c = c + self.text_pool(pooled)
        return c, tokens, mask

    def positions(self, frames: int, rows: int, cols: int, first_frame: int = 0) -> Tensor:
        """(1, frames*rows*cols, D) positions of frames first_frame.. (a slice of ``pos_embed``
        inside the default clip, computed beyond it)."""
        grid = self.input_size // self.patch_size
        if rows == grid and cols == grid and first_frame + frames <= self.num_frames:
            per_frame = rows * cols
            return self.pos_embed[:, first_frame * per_frame:(first_frame + frames) * per_frame]
        return sincos_3d(self.hidden_size, frames, rows, cols, first_frame).to(self.pos_embed)[None]

    def _embed(self, frames: Tensor, first_frame: int) -> Tensor:
        """(B, T, C, H, W) -> (B, T*P, D) tokens with positions, frame-major."""
        b, n, c, h, w = frames.shape
        p = self.patch_size
        tokens = self.x_embedder(frames.reshape(b * n, c, h, w)).reshape(b, -1, self.hidden_size)
        return tokens + self.positions(n, h // p, w // p, first_frame).to(tokens)

    def _unembed(self, tokens: Tensor, c: Tensor, frames: int, h: int, w: int) -> Tensor:
        b, p = tokens.shape[0], self.patch_size
        out = self.final_layer(tokens, c).reshape(b * frames, -1, p * p * self.out_channels)
        return unpatchify(out, p, self.out_channels, h // p, w // p).reshape(
            b, frames, self.out_channels, h, w)

    # --- the two ways through the network --------------------------------------------------

    def forward(self, x: Tensor, t, text: Tensor) -> Tensor:
        """All frames in parallel (training and the parallel sampler)."""
        self._check_frames(x, "x", 5)
        t = self._check_condition(x, t, text)
        b, frames, _, h, w = x.shape
        c, text_tokens, text_mask = self.condition(t, text)
        tokens = self._embed(x, 0)
        p = self.patch_size
        # a description, not an (N, N) tensor: PoM's fast path never materialises it
        video_mask = (masks.BlockCausal(frames, (h // p) * (w // p))
                      if self.causal and frames > 1 else None)
        for block in self.blocks:
            tokens = block(tokens, c, text_tokens, text_mask, video_mask)
        return self._unembed(tokens, c, frames, h, w)

    def step(self, frame: Tensor, t, text: Tensor, frame_index: int,
             states: list[PoMState] | None = None) -> tuple[Tensor, list[PoMState]]:
        """One frame (B, C, H, W) at position ``frame_index``, after the frames behind ``states``.

        states: None for the first frame, else the list (one PoMState per block) returned
        by the previous frame's ``step``. Returns (output frame (B, C, H, W), new states).
        Equal to ``forward`` of the whole clip with the block-causal mask, frame by frame.
        """
        if not self.causal:
            raise ValueError("step() generates frame by frame, which needs the block-causal "
                             "model (causal=True); this model mixes all frames both ways")
        self._check_frames(frame, "frame", 4)
        if isinstance(frame_index, bool) or not isinstance(frame_index, int) or frame_index < 0:
            raise ValueError(f"frame_index must be an int >= 0, got {frame_index!r}")
        if states is not None and (not isinstance(states, (list, tuple))
                                   or len(states) != self.depth
                                   or not all(isinstance(s, PoMState) for s in states)):
            raise ValueError(f"states must be None or the list of {self.depth} PoMStates "
                             "returned by the previous step()")
        _, _, h, w = frame.shape
        seen = 0 if states is None else states[0].n
        per_frame = (h // self.patch_size) * (w // self.patch_size)
        if seen != frame_index * per_frame:
            raise ValueError(f"frame_index {frame_index} does not follow the states, which have "
                             f"seen {seen // per_frame} frame(s) of {per_frame} tokens; the "
                             "first frame (index 0) starts with states=None")
        t = self._check_condition(frame, t, text)
        c, text_tokens, text_mask = self.condition(t, text)
        tokens = self._embed(frame[:, None], frame_index)
        new_states = []
        for i, block in enumerate(self.blocks):
            tokens, state = block.step(tokens, c, text_tokens, text_mask,
                                       None if states is None else states[i])
            new_states.append(state)
        return self._unembed(tokens, c, 1, h, w)[:, 0], new_states


register_family(FAMILY, create_video, video_names())
