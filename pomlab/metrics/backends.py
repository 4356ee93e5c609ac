"""Feature backends: nn.Modules mapping float images (N, C, H, W) in [0, 1] (any size, 1 or 3
channels) to the features that give FID; `head` maps them to the logits of IS (docs/metrics.md)."""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from unittest import mock

import torch
from torch import Tensor, nn

from ..checks import check_choice
from ..io import atomic_torch_save, file_sha256
from .digits_classifier import DEFAULT_WEIGHTS, INPUT_SIZE, load_classifier
from ..data.images import resize_square
from .images import to_grey, to_rgb

BACKENDS = ("digits", "inception")

# torch-fidelity's release of the InceptionV3 FID weights; torch.hub caches them under this name.
INCEPTION_WEIGHTS_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                         "weights-inception-2015-12-05-6726825d.pth")
INCEPTION_WEIGHTS_FILE = INCEPTION_WEIGHTS_URL.rsplit("/", 1)[1]


class FeatureBackend(nn.Module):
    """Base class. Subclasses set the attributes below, `head`, and implement forward."""

    name: str                  # "digits" | "inception"
    fid_name: str              # how its FID is labelled, e.g. "digits-FID"
    is_name: str
    num_features: int          # torchmetrics reads this instead of probing with a dummy image
    num_classes: int
    default_batch_size: int
    preprocess_version = 1     # bump when preprocessing changes: invalidates cached statistics
    weights_path: Path
    weights_sha256: str        # hashed when loaded, so a later change of the file cannot mislabel
    head: nn.Module

    def train(self, mode: bool = True) -> "FeatureBackend":
        return super().train(False)           # a metric network never leaves eval mode

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def cache_tag(self) -> str:
        """Identifies the exact feature map: name, preprocessing version, weights' sha256."""
        return f"{self.name}-p{self.preprocess_version}-{self.weights_sha256[:16]}"

    def classifier(self) -> nn.Module:
        """images -> logits, e.g. for torchmetrics' InceptionScore(feature=...)."""
        return nn.Sequential(self, self.head)

    @property
    def labels(self) -> dict:
        """What every result says about the backend that produced its numbers."""
        return {"fid_name": self.fid_name, "is_name": self.is_name, "backend": self.name,
                "backend_tag": self.cache_tag, "feature_dim": self.num_features}


class DigitsBackend(FeatureBackend):
    name, fid_name, is_name = "digits", "digits-FID", "digits-IS"
    default_batch_size = 512

    def __init__(self, weights: str | os.PathLike | None = None):
        super().__init__()
        self.weights_path = Path(weights) if weights is not None else DEFAULT_WEIGHTS
        self.model = load_classifier(self.weights_path).requires_grad_(False)
        self.weights_sha256 = file_sha256(self.weights_path)
        self.num_features, self.num_classes = self.model.num_features, self.model.num_classes
        self.head = self.model.head
        self.eval()

    def forward(self, images: Tensor) -> Tensor:
        return self.model.features(resize_square(to_grey(images), INPUT_SIZE))


class InceptionBackend(FeatureBackend):
    name, fid_name, is_name = "inception", "Inception-FID", "Inception-IS"
    num_features, num_classes, default_batch_size = 2048, 1008, 64

    def __init__(self, weights: str | os.PathLike | None = None):
        super().__init__()
        require_torch_fidelity()
        self.weights_path = inception_weights_path(weights)
        self.weights_sha256 = file_sha256(self.weights_path)
        from torchmetrics.image.fid import NoTrainInceptionV3

        self.net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                      feature_extractor_weights_path=str(self.weights_path),
                                      antialias=False)
        # fc without its bias: the "logits_unbiased" of torchmetrics/torch-fidelity's IS
        self.head = nn.utils.skip_init(nn.Linear, self.num_features, self.num_classes, bias=False)
        self.head.weight = self.net.fc.weight
        self.eval()

    def forward(self, images: Tensor) -> Tensor:
        # Quantise as saving to PNG would; the network resizes to 299 itself (TF1 bilinear).
        pixels = (to_rgb(images) * 255).round().to(torch.uint8)
        return self.net(pixels)


def require_torch_fidelity() -> None:
    """Import torch-fidelity (and so torchvision), or say which extra to install."""
    try:
        import torch_fidelity  # noqa: F401
    except Exception as error:      # ImportError, or torchvision failing against this torch build
        raise ImportError(
            "the 'inception' metric backend needs the optional extra: pip install 'pomlab[inception]' "
            "(torch-fidelity and a torchvision matching your torch build); importing torch_fidelity "
            f"failed with {type(error).__name__}: {error}") from error


def inception_weights_path(weights: str | os.PathLike | None = None) -> Path:
    """The InceptionV3 weights file: `weights` if given, else torch hub's checkpoints cache
    (torch.hub.get_dir()/checkpoints, i.e. $TORCH_HOME/hub/checkpoints). Never downloads."""
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    path = Path(weights).expanduser() if weights is not None else folder / INCEPTION_WEIGHTS_FILE
    if path.is_file():
        return path
    if weights is not None:
        raise FileNotFoundError(f"InceptionV3 weights file not found: {path} (get it from "
                                f"{INCEPTION_WEIGHTS_URL})")
    raise FileNotFoundError(
        f"InceptionV3 FID weights not found: expected {INCEPTION_WEIGHTS_FILE} in {folder} (torch."
        f"hub.get_dir()/checkpoints; TORCH_HOME moves it). pomlab never downloads them: on a "
        f"connected machine fetch {INCEPTION_WEIGHTS_URL} to {path}, or pass weights= / --weights")


def write_random_inception_weights(path: str | os.PathLike, seed: int = 0) -> Path:
    """Save a random InceptionV3 (torch-fidelity's layout; scores mean nothing) to exercise the
    Inception path without its weights; BatchNorm statistics of one batch keep features O(1)."""
    require_torch_fidelity()
    import torch_fidelity.feature_extractor_inceptionv3 as tf_inception

    extractor = tf_inception.FeatureExtractorInceptionV3
    with mock.patch.object(tf_inception, "load_state_dict_from_url", lambda *a, **k: {}), \
            mock.patch.object(extractor, "load_state_dict", lambda *a, **k: None):   # no weights
        torch.manual_seed(seed)
        net = extractor("inception-v3-compat", ["2048"])
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None                  # cumulative average: one batch's statistics
    net.train()
    with torch.no_grad():
        net(torch.randint(0, 256, (4, 3, 75, 75), dtype=torch.uint8))
    return atomic_torch_save(net.eval().state_dict(), path)


def get_backend(backend: str | FeatureBackend = "digits", *, weights: str | os.PathLike | None = None,
                device: str | torch.device | None = None) -> FeatureBackend:
    """A ready (eval-mode, cached per name/weights/device) backend; instances pass through
    (moved to `device` when one is given)."""
    if isinstance(backend, FeatureBackend):
        if weights is not None:
            raise ValueError("weights= applies to a backend name; this backend instance already "
                             f"has its weights ({backend.weights_path})")
        return backend if device is None else backend.to(device)
    check_choice("backend", backend, BACKENDS)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and device.index is None:
        # "cuda" and "cuda:0" (the current device) must share one cached copy of the weights
        device = torch.device("cuda", torch.cuda.current_device())
    if backend == "inception":
        require_torch_fidelity()                     # first: the extra, then the weights file
        weights = inception_weights_path(weights)
    else:
        weights = Path(weights).expanduser() if weights is not None else DEFAULT_WEIGHTS
    return _load_backend(backend, str(Path(weights).resolve()), str(device))


@lru_cache(maxsize=8)
def _load_backend(name: str, weights: str, device: str) -> FeatureBackend:
    cls = DigitsBackend if name == "digits" else InceptionBackend
    return cls(weights).to(device)
