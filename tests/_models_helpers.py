"""Helpers shared by tests/test_models*.py (not collected: no test_ prefix)."""
import torch


def randomize_(model, std=0.1):
    """Fill every parameter with fresh noise (the zero-initialised gates included)."""
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, std)
    return model
