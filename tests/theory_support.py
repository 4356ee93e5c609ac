"""Shared pieces of the theory tests (imported by tests/test_theory_*.py)."""
import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: per-op overhead dominates, and extra threads on a shared, loaded machine
    slow them down many times over; run them on one thread and restore the setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
