"""The small CNN behind the "digits" metric backend (16x16 grey input; 64 penultimate features
give digits-FID, 10 logits digits-IS) and the code that trains it (docs/metrics.md)."""
from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.digits import NUM_CLASSES, load_digits
from ..io import atomic_write, file_sha256

INPUT_SIZE = 16
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "digits_classifier.pt"
DEFAULT_INFO = DEFAULT_WEIGHTS.with_suffix(".json")                  # its training record


class DigitsClassifier(nn.Module):
    """conv-conv-pool x2 -> Linear -> ReLU (the features) -> dropout -> Linear (the logits)."""

    def __init__(self, width: int = 16, num_features: int = 64, num_classes: int = NUM_CLASSES,
                 dropout: float = 0.3):
        super().__init__()
        self.config = {"width": width, "num_features": num_features, "num_classes": num_classes,
                       "dropout": dropout}
        self.num_features, self.num_classes, w = num_features, num_classes, width
        self.body = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1), nn.ReLU(), nn.Conv2d(w, w, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),                                              # 16 -> 8
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.Conv2d(2 * w, 2 * w, 3, padding=1),
            nn.ReLU(), nn.MaxPool2d(2),                                   # 8 -> 4
            nn.Flatten(), nn.Linear(2 * w * (INPUT_SIZE // 4) ** 2, num_features), nn.ReLU())
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(num_features, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """(N, 1, 16, 16) in [0, 1] -> (N, num_features) penultimate activations."""
        return self.body(x - 0.5)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.dropout(self.features(x)))


def load_classifier(path: str | os.PathLike | None = None) -> DigitsClassifier:
    """The classifier in eval mode with weights from `path` (default: the committed file)."""
    path = Path(path) if path is not None else DEFAULT_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"digits classifier weights not found at {path}; train them with "
                                "`python -m pomlab.metrics.train_digits_classifier`")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model = DigitsClassifier(**checkpoint["config"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


@dataclass
class TrainSettings:
    steps: int = 1500
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 5e-4
    seed: int = 0
    max_shift: float = 2.0            # pixels at 16x16 (one native 8x8 pixel)
    max_rotation_deg: float = 12.0
    scale_range: float = 0.1          # zoom in [1 - r, 1 + r]
    width: int = 16
    num_features: int = 64
    dropout: float = 0.3


def augment(x: Tensor, settings: TrainSettings, generator: torch.Generator) -> Tensor:
    """Random small affine maps (shift, rotation, zoom) of a batch, bilinear, zero padding."""
    n = x.shape[0]

    def uniform(low: float, high: float) -> Tensor:
        return low + (high - low) * torch.rand(n, generator=generator)

    angle = uniform(-1, 1) * math.radians(settings.max_rotation_deg)
    zoom = uniform(1 - settings.scale_range, 1 + settings.scale_range)
    shift = 2 * settings.max_shift / x.shape[-1]                     # pixels -> [-1, 1] grid units
    tx, ty = uniform(-shift, shift), uniform(-shift, shift)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@torch.no_grad()
def accuracy(model: DigitsClassifier, images: Tensor, labels: Tensor) -> float:
    return float((model.eval()(images).argmax(1) == labels).float().mean())


def train_classifier(settings: TrainSettings = TrainSettings(), progress: bool = True
                     ) -> tuple[DigitsClassifier, dict]:
    """Trains on the digits training split (seeded); returns the model and a record of the run."""
    from tqdm.auto import tqdm

    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    x_train, y_train = load_digits("train", size=INPUT_SIZE)
    model = DigitsClassifier(settings.width, settings.num_features, dropout=settings.dropout)
    optimiser = torch.optim.AdamW(model.parameters(), lr=settings.lr,
                                  weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=settings.lr,
                                                   total_steps=settings.steps, pct_start=0.1)
    start = time.perf_counter()
    model.train()
    for _ in tqdm(range(settings.steps), disable=not progress, desc="digits classifier"):
        idx = torch.randint(len(x_train), (settings.batch_size,), generator=generator)
        loss = F.cross_entropy(model(augment(x_train[idx], settings, generator)), y_train[idx])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
    seconds = time.perf_counter() - start
    x_held, y_held = load_digits("heldout", size=INPUT_SIZE)
    record = {"settings": asdict(settings), "train_split_images": len(x_train),
              "heldout_images": len(x_held), "train_accuracy": accuracy(model, x_train, y_train),
              "heldout_accuracy": accuracy(model, x_held, y_held), "final_loss": loss.item(),
              "input": f"grey {INPUT_SIZE}x{INPUT_SIZE} in [0, 1] (digits upsampled bilinearly "
                       "from 8x8)", "parameters": sum(p.numel() for p in model.parameters()),
              "train_seconds": round(seconds, 1),
              "device": f"cpu x{torch.get_num_threads()} threads ({platform.machine()})",
              "torch": torch.__version__}
    return model.eval(), record


def save_classifier(model: DigitsClassifier, record: dict, weights_path: str | os.PathLike,
                    info_path: str | os.PathLike) -> None:
    """Write weights then the JSON record (with the weights' sha256), each atomically."""
    weights_path, info_path = Path(weights_path), Path(info_path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(weights_path, lambda f: torch.save({"config": model.config, "state_dict": state}, f))
    record = {**record, "weights_file": weights_path.name, "weights_sha256": file_sha256(weights_path)}
    atomic_write(info_path, lambda f: f.write(json.dumps(record, indent=2).encode() + b"\n"))
