import pytest
import torch

from pomlab.data import load_digits


def test_split_is_fixed_disjoint_and_complete():
    xa, ya = load_digits("all")
    xt, yt = load_digits("train")
    xh, yh = load_digits("heldout")
    assert len(xt) == 1437 and len(xh) == 360 and len(xa) == 1797
    assert torch.equal(torch.sort(torch.cat([yt, yh])).values, torch.sort(ya).values)
    # no held-out image appears in the training split
    flat_t = {tuple(r.tolist()) for r in xt.flatten(1)}
    assert sum(tuple(r.tolist()) in flat_t for r in xh.flatten(1)) <= 2   # sklearn has a few exact duplicates
    assert set(yh.tolist()) == set(range(10))
    assert torch.equal(load_digits("train")[0], xt)             # deterministic


def test_resize_and_channels():
    x, y = load_digits("heldout", size=16, channels=3)
    assert x.shape == (360, 3, 16, 16) and x.dtype == torch.float32
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.9
    assert torch.equal(x[:, 0], x[:, 2])


@pytest.mark.parametrize("kwargs, words", [({"split": "test"}, "split"), ({"size": 0}, "size"),
                                           ({"channels": 2}, "channels")])
def test_bad_arguments(kwargs, words):
    with pytest.raises(ValueError, match=words):
        load_digits(**kwargs)
