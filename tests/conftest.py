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

# Under pytest-xdist each worker gets one thread, so workers do not fight over the cores.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed_torch():
    """Every test starts from a fixed torch seed (hypothesis draws its own seeds)."""
    torch.manual_seed(0)
    yield
