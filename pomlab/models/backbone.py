"""One class-conditional diffusion transformer with a mixer slot (docs/models.md).

DiT puts multi-head attention in the slot, DiPoM puts PoM there; nothing else differs.
The pieces (``modulate``, ``TimestepEmbedder``, ``LabelEmbedder``, ``AdaLNBlock``,
``FinalLayer``, sin-cos positions, ``patchify``/``unpatchify``) are public so that other
models (the video DiPoM) build on exactly the same parts.

Layout and initialisation follow the DiT paper (Peebles & Xie, arXiv 2212.09748):

    tokens = Conv2d(patch, stride=patch)(x) + pos          # fixed 2-D sin-cos positions
    c = TimestepEmbedder(1000 t) + LabelEmbedder(y)         # y == num_classes is the null class
    per block: shift/scale/gate = Linear(SiLU(c)) (zero-initialised, "AdaLN-Zero")
               x += gate_1 * mixer(LN(x) (1 + scale_1) + shift_1)
               x += gate_2 * MLP(LN(x) (1 + scale_2) + shift_2)
    out = unpatchify(Linear(LN(x) (1 + scale) + shift))    # zero-initialised Linear

variant="authors" swaps in the three parts where the PoM authors' DiH code (HoMM,
``ClassConditionalDiH``) differs from DiT, so that parameter counts and forwards equal theirs:
the time embedding (D frequencies of n_timesteps * t with max period n_timesteps, then
Linear(D, 4D)-SiLU-Linear(4D, D)), their 2-D positions (``authors_sincos_2d``) and the exact-erf
GELU in the MLP. Their blocks' (scale, shift) order and ``1 + gate`` are a relabelling of the
same AdaLN block (see ``load_homm_checkpoint``).
"""
from __future__ import annotations

import math

import torch
import torch.utils.checkpoint
from torch import Tensor, nn

from ..checks import check_ids, check_positive_int
from ..nn.blocks import MLP, make_mixer

LN_EPS = 1e-6
FREQUENCY_SIZE = 256        # sinusoidal frequencies of the timestep embedding
MAX_PERIOD = 10000
TIME_SCALE = 1000.0         # t in [0, 1] is embedded as 1000 t, DiT's integer-timestep range
POS_MAX_PERIOD = 10000.0
VARIANTS = ("dit", "authors")
AUTHORS_TIMESTEPS = 1000    # n_timesteps of the authors' DiH-S/B/L/XL configurations


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """AdaLN modulation of tokens x (B, N, D) by per-sample shift, scale (B, D)."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


# --- input checks shared by every diffusion model -----------------------------------------

def time_batch(t, batch: int, device, per: str = "image", dtype: torch.dtype = torch.float32
               ) -> Tensor:
    """t as a float tensor of shape (batch,); a scalar (a python number: made `dtype`) is
    broadcast to the batch."""
    if not isinstance(t, Tensor):
        t = torch.as_tensor(t, dtype=dtype, device=device)
    if t.dim() == 0:
        t = t.expand(batch)
    if not t.dtype.is_floating_point or tuple(t.shape) != (batch,):
        raise ValueError(f"t must be a float tensor of shape ({batch},) (one time per {per}), "
                         f"got {t.dtype} of shape {tuple(t.shape)}")
    return t


def check_time_and_ids(t: Tensor, ids: Tensor, ids_name: str, n_ids: int, ids_what: str) -> None:
    """t in [0, 1] and integer ids in [0, n_ids), with one host sync for both checks: for entry
    points (``check_batch``, the samplers), never for every model call."""
    if torch.compiler.is_compiling():
        return
    bad_t, bad_ids = torch.stack([((t < 0) | (t > 1) | t.isnan()).any(),
                                  ((ids < 0) | (ids >= n_ids)).any()]).tolist()
    if bad_t:
        raise ValueError(f"t must lie in [0, 1] (diffusion/flow time), got values in "
                         f"[{t.min().item():.4g}, {t.max().item():.4g}]")
    if bad_ids:
        check_ids(ids_name, ids, n_ids, ids_what)           # raises, naming the range


# --- conditioning ------------------------------------------------------------------------

def timestep_embedding(t: Tensor, dim: int, max_period: float = MAX_PERIOD,
                       dtype: torch.dtype = torch.float32) -> Tensor:
    """Sinusoidal embedding [cos, sin] of (possibly fractional) timesteps t (B,) -> (B, dim),
    computed in float32 (float64 if asked: float64 models use it)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period)
                      * torch.arange(half, dtype=dtype, device=t.device) / half)
    args = t.to(dtype)[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class TimestepEmbedder(nn.Module):
    """t (B,) in [0, 1] -> (B, D): sinusoid of ``time_scale`` * t (``frequency_size`` channels,
    ``max_period``), then Linear(frequency_size, width)-SiLU-Linear(width, D), width = D by
    default (DiT); the authors' variant uses D frequencies, max period 1000 and width 4D."""

    def __init__(self, hidden_size: int, frequency_size: int = FREQUENCY_SIZE,
                 time_scale: float = TIME_SCALE, max_period: float = MAX_PERIOD,
                 width: int | None = None):
        super().__init__()
        self.frequency_size, self.time_scale, self.max_period = frequency_size, time_scale, max_period
        width = width or hidden_size
        self.mlp = nn.Sequential(nn.Linear(frequency_size, width), nn.SiLU(),
                                 nn.Linear(width, hidden_size))

    def forward(self, t: Tensor) -> Tensor:
        dtype = torch.float64 if self.mlp[0].weight.dtype == torch.float64 else torch.float32
        freq = timestep_embedding(self.time_scale * t.to(dtype), self.frequency_size,
                                  self.max_period, dtype)
        return self.mlp(freq.to(self.mlp[0].weight.dtype))


class LabelEmbedder(nn.Module):
    """Class labels (B,) in [0, num_classes] -> (B, D); index num_classes is the null class.

    In train() mode each label is replaced by the null class with probability
    ``dropout_prob`` (torch's global RNG), which trains the unconditional model that
    classifier-free guidance needs.
    """

    def __init__(self, num_classes: int, hidden_size: int, dropout_prob: float = 0.1):
        super().__init__()
        if not 0.0 <= dropout_prob < 1.0:
            raise ValueError(f"class_dropout_prob must be in [0, 1), got {dropout_prob}")
        self.num_classes, self.dropout_prob = num_classes, dropout_prob
        self.embedding_table = nn.Embedding(num_classes + 1, hidden_size)

    def drop_labels(self, y: Tensor) -> Tensor:
        drop = torch.rand(y.shape[0], device=y.device) < self.dropout_prob
        return torch.where(drop, torch.full_like(y, self.num_classes), y)

    def forward(self, y: Tensor) -> Tensor:
        if self.training and self.dropout_prob > 0:
            y = self.drop_labels(y)
        return self.embedding_table(y)


# --- positions and patches ---------------------------------------------------------------

def sincos_1d(dim: int, positions: Tensor) -> Tensor:
    """Fixed [sin, cos] embedding (N, dim) of float positions (N,); dim must be even."""
    if dim % 2:
        raise ValueError(f"sin-cos embedding needs an even dim, got {dim}")
    omega = 1.0 / POS_MAX_PERIOD ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    args = positions.to(torch.float64)[:, None] * omega[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


def sincos_2d(dim: int, rows: int, cols: int) -> Tensor:
    """(rows*cols, dim) float64 positions, tokens in row-major order.

    As in DiT/MAE: the first half of the channels encodes the column, the second the row.
    """
    if dim % 4:
        raise ValueError(f"2-D sin-cos embedding needs dim divisible by 4, got {dim}")
    row, col = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    return torch.cat([sincos_1d(dim // 2, col.flatten()), sincos_1d(dim // 2, row.flatten())],
                     dim=1)


def authors_sincos_2d(dim: int, rows: int, cols: int) -> Tensor:
    """The PoM authors' 2-D positions (rows*cols, dim), float64, tokens in row-major order:
    [sin, cos](pi f x) for the column x in linspace(0, 1, cols), then the same for the row,
    with the odd frequencies f = 1, 3, ..., dim/2 - 1 (dim/4 of them)."""
    if dim % 4:
        raise ValueError(f"the authors' 2-D embedding needs dim divisible by 4, got {dim}")
    f = (torch.arange(dim // 4, dtype=torch.float64) * 2 + 1) * math.pi

    def one_axis(n: int) -> Tensor:
        args = torch.linspace(0, 1, n, dtype=torch.float64)[:, None] * f[None]
        return torch.cat([args.sin(), args.cos()], dim=1)

    x = one_axis(cols)[None].expand(rows, cols, dim // 2)
    y = one_axis(rows)[:, None].expand(rows, cols, dim // 2)
    return torch.cat([x, y], dim=-1).reshape(rows * cols, dim)


class PatchEmbed(nn.Module):
    """(B, C, H, W) -> (B, H/p * W/p, D) tokens in row-major patch order (Conv2d, stride p)."""

    def __init__(self, patch_size: int, in_channels: int, hidden_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


def patchify(x: Tensor, patch_size: int) -> Tensor:
    """(B, C, H, W) -> (B, H/p * W/p, p*p*C), each token laid out (p, p, C) like ``unpatchify``."""
    b, c, h, w = x.shape
    p = patch_size
    x = x.reshape(b, c, h // p, p, w // p, p)
    return torch.einsum("bchpwq->bhwpqc", x).reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(tokens: Tensor, patch_size: int, channels: int, rows: int, cols: int) -> Tensor:
    """(B, rows*cols, p*p*C) -> (B, C, rows*p, cols*p); the inverse of ``patchify``."""
    b, p = tokens.shape[0], patch_size
    x = tokens.reshape(b, rows, cols, p, p, channels)
    return torch.einsum("bhwpqc->bchpwq", x).reshape(b, channels, rows * p, cols * p)


# --- blocks ------------------------------------------------------------------------------

class AdaLNBlock(nn.Module):
    """AdaLN-Zero block with a mixer slot (PoM, MHA, or any module with their signature).

    ``forward(x, c, **mixer_kwargs)`` passes ``context``/``mask`` through to the mixer.
    """

    def __init__(self, hidden_size: int, mixer: nn.Module, mlp_ratio: float = 4.0,
                 gelu: str = "tanh"):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=LN_EPS)
        self.mixer = mixer
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=LN_EPS)
        self.mlp = MLP(hidden_size, int(hidden_size * mlp_ratio), approximate=gelu)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))

    def forward(self, x: Tensor, c: Tensor, **mixer_kwargs) -> Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate1.unsqueeze(1) * self.mixer(modulate(self.norm1(x), shift1, scale1),
                                                **mixer_kwargs)
        return x + gate2.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift2, scale2))


class FinalLayer(nn.Module):
    """LN + AdaLN (shift, scale) + Linear(D, p*p*C_out), zero-initialised."""

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=LN_EPS)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


def initialize_dit_weights(model: nn.Module) -> None:
    """DiT's initialisation (docs/models.md), applied to any model built from these pieces.

    Every Linear xavier-uniform with zero bias (mixers included); patch projection
    xavier-uniform on its flattened kernel; timestep MLP and label table normal(0, 0.02);
    every AdaLN modulation output and the final Linear zero, so a fresh model is the
    identity in each block and outputs exactly zero.
    """
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    for module in model.modules():
        if isinstance(module, PatchEmbed):
            w = module.proj.weight
            nn.init.xavier_uniform_(w.view(w.shape[0], -1))
            nn.init.zeros_(module.proj.bias)
        elif isinstance(module, TimestepEmbedder):
            nn.init.normal_(module.mlp[0].weight, std=0.02)
            nn.init.normal_(module.mlp[2].weight, std=0.02)
        elif isinstance(module, LabelEmbedder):
            nn.init.normal_(module.embedding_table.weight, std=0.02)
        elif isinstance(module, (AdaLNBlock, FinalLayer)):
            nn.init.zeros_(module.adaLN_modulation[-1].weight)
            nn.init.zeros_(module.adaLN_modulation[-1].bias)
            if isinstance(module, FinalLayer):
                nn.init.zeros_(module.linear.weight)
                nn.init.zeros_(module.linear.bias)


# --- the model ---------------------------------------------------------------------------

class DiffusionTransformer(nn.Module):
    """Class-conditional diffusion transformer on (B, C, H, W) inputs; mixer "mha" or "pom".

    ``forward(x, t, y)``: x (B, in_channels, H, W) with H, W multiples of ``patch_size``
    (positions are recomputed for sizes other than ``input_size``); t (B,) in [0, 1];
    y (B,) int64 in [0, num_classes] (num_classes = null class). Returns
    (B, out_channels, H, W).

    ``checkpointing = True``: each block's activations are recomputed in backward instead of
    kept (torch.utils.checkpoint), trading one more forward per block for memory.
    """

    checkpointing: bool = False

    def __init__(self, *, mixer: str, input_size: int, patch_size: int, in_channels: int,
                 hidden_size: int, depth: int, num_classes: int, mlp_ratio: float,
                 num_heads: int = 1, degree: int = 2, expand: int = 2,
                 polynomial: str = "products", learn_sigma: bool = False,
                 class_dropout_prob: float = 0.1, variant: str = "dit"):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        for arg, value in [("input_size", input_size), ("patch_size", patch_size),
                           ("in_channels", in_channels), ("hidden_size", hidden_size),
                           ("depth", depth), ("num_classes", num_classes)]:
            check_positive_int(arg, value)
        if input_size % patch_size:
            raise ValueError(f"input_size {input_size} is not divisible by patch_size {patch_size}")
        if isinstance(mlp_ratio, bool) or not isinstance(mlp_ratio, (int, float)) or mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be a number > 0, got {mlp_ratio!r}")
        if not isinstance(learn_sigma, bool):
            raise TypeError(f"learn_sigma must be a bool, got {type(learn_sigma).__name__}")
        self.mixer, self.input_size, self.patch_size = mixer, input_size, patch_size
        self.in_channels, self.hidden_size, self.depth = in_channels, hidden_size, depth
        self.num_classes, self.learn_sigma, self.variant = num_classes, learn_sigma, variant
        self.out_channels = 2 * in_channels if learn_sigma else in_channels

        self.x_embedder = PatchEmbed(patch_size, in_channels, hidden_size)
        if variant == "authors":
            self.t_embedder = TimestepEmbedder(hidden_size, frequency_size=hidden_size,
                                               time_scale=AUTHORS_TIMESTEPS,
                                               max_period=AUTHORS_TIMESTEPS, width=4 * hidden_size)
        else:
            self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size, class_dropout_prob)
        self._positions = authors_sincos_2d if variant == "authors" else sincos_2d
        grid = input_size // patch_size
        self.register_buffer("pos_embed", self._positions(hidden_size, grid, grid).float()[None],
                             persistent=False)
        self.blocks = nn.ModuleList([
            AdaLNBlock(hidden_size,
                       make_mixer(mixer, hidden_size, heads=num_heads, degree=degree,
                                  expand=expand, polynomial=polynomial),
                       mlp_ratio=mlp_ratio, gelu="none" if variant == "authors" else "tanh")
            for _ in range(depth)])
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)
        initialize_dit_weights(self)

    @property
    def class_dropout_prob(self) -> float:
        return self.y_embedder.dropout_prob

    @class_dropout_prob.setter
    def class_dropout_prob(self, p: float) -> None:
        if not 0.0 <= p < 1.0:
            raise ValueError(f"class_dropout_prob must be in [0, 1), got {p}")
        self.y_embedder.dropout_prob = p

    # --- input checks ----------------------------------------------------------------------

    def check_batch(self, x, t, y) -> tuple[Tensor, Tensor]:
        """Every check of ``forward`` plus the value ranges (t in [0, 1], y a class id or the
        null class): one host sync, so entry points (samplers, user code) call it once per
        batch; ``forward`` itself checks shapes and dtypes only. Returns (t, y) as forward
        uses them."""
        t, y = self._check(x, t, y)
        if not x.is_meta:
            check_time_and_ids(t, y, "y", self.num_classes + 1, f"class ids in [0, "
                               f"{self.num_classes}] ({self.num_classes} = null class)")
        return t, y

    def _check(self, x, t, y) -> tuple[Tensor, Tensor]:
        """Shapes and dtypes (no host sync)."""
        if not isinstance(x, Tensor) or not x.dtype.is_floating_point or x.dim() != 4:
            raise TypeError(f"x must be a float tensor (batch, {self.in_channels}, H, W), got "
                            + (f"{x.dtype} of shape {tuple(x.shape)}" if isinstance(x, Tensor)
                               else type(x).__name__))
        b, c, h, w = x.shape
        if c != self.in_channels:
            raise ValueError(f"x has {c} channels, expected in_channels={self.in_channels}")
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"x image size {h}x{w} is not divisible by patch_size "
                             f"{self.patch_size}")
        t = time_batch(t, b, x.device, per="image", dtype=x.dtype)
        if not isinstance(y, Tensor) or y.dtype not in (torch.int64, torch.int32):
            raise TypeError("y must be an int64 tensor of class ids, got "
                            + (str(y.dtype) if isinstance(y, Tensor) else type(y).__name__))
        if tuple(y.shape) != (b,):
            raise ValueError(f"y must have shape ({b},) (one class per image), got "
                             f"{tuple(y.shape)}")
        return t, y.long()

    # --- forward ---------------------------------------------------------------------------

    def positions(self, rows: int, cols: int) -> Tensor:
        grid = self.input_size // self.patch_size
        if rows == grid and cols == grid and self.pos_embed.dtype != torch.float64:
            return self.pos_embed             # (float64 models recompute: the buffer was float32)
        return self._positions(self.hidden_size, rows, cols).to(self.pos_embed)[None]

    def condition(self, t: Tensor, y: Tensor) -> Tensor:
        """c = t_emb + y_emb (B, D); label dropout applies in train() mode."""
        return self.t_embedder(t) + self.y_embedder(y)

    def forward_tokens(self, x: Tensor, t, y: Tensor, add_positions: bool = True) -> Tensor:
        """The trunk: (B, N, p*p*out_channels) tokens before unpatchify (row-major patches)."""
        t, y = self._check(x, t, y)
        tokens = self.x_embedder(x)
        if add_positions:
            tokens = tokens + self.positions(x.shape[2] // self.patch_size,
                                             x.shape[3] // self.patch_size)
        c = self.condition(t, y)
        for block in self.blocks:
            if self.checkpointing and torch.is_grad_enabled():   # recompute in backward
                tokens = torch.utils.checkpoint.checkpoint(block, tokens, c, use_reentrant=False)
            else:
                tokens = block(tokens, c)
        return self.final_layer(tokens, c)

    def forward(self, x: Tensor, t, y: Tensor) -> Tensor:
        tokens = self.forward_tokens(x, t, y)
        p = self.patch_size
        return unpatchify(tokens, p, self.out_channels, x.shape[2] // p, x.shape[3] // p)
