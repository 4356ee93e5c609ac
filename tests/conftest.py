import os

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
