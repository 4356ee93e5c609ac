"""Helpers shared by tests/test_models*.py (not collected: no test_ prefix)."""
import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The micro models are tiny: with 2 threads OpenMP hand-offs dominate every op and, on a
    shared machine, slow a forward ~50x (measured: 10 ms vs 640 ms)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def randomize_(model, std=0.1):
    """Fill every parameter with fresh noise (the zero-initialised gates included)."""
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, std)
    return model
