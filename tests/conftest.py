import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

# Hypothesis: a quick local profile, a deterministic and slightly larger one in CI.
settings.register_profile("dev", max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")

# One thread per test process: every model in the tests is tiny, where OpenMP hand-offs dominate
# each op (measured ~50x slower with 2 threads on a loaded 2-core machine), and pytest-xdist
# already runs one worker per core.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_torch():
    """Every test starts from a fixed torch seed (hypothesis draws its own seeds)."""
    torch.manual_seed(0)
    yield


@pytest.fixture
def tiny_vae(tmp_path):
    """A small randomly initialised diffusers AutoencoderKL saved to tmp_path/vae (2x down):
    (vae, path). Stands in for the real VAE weights, which are never downloaded in tests."""
    diffusers = pytest.importorskip("diffusers")
    vae = diffusers.AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1, norm_num_groups=8, sample_size=16)
    vae.save_pretrained(tmp_path / "vae")
    return vae, tmp_path / "vae"


@pytest.fixture(scope="session")
def experiment_script():
    """load(name): experiments/<name>.py as a module (its main(argv) runs in this process)."""
    folder = Path(__file__).resolve().parents[1] / "experiments"

    def load(name: str):
        sys.path.insert(0, str(folder))             # for the scripts' own `import _bootstrap`
        try:
            spec = importlib.util.spec_from_file_location(f"{name}_cli", folder / f"{name}.py")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        finally:
            sys.path.remove(str(folder))
        return module
    return load
