"""experiments/speed.py --memory-budget on tiny resolutions: every variant is measured and
labelled, math attention keeps the N x N scores (more memory than the fused kernel), PoM's
recompute never costs memory, and the largest fitting resolution follows the measured bytes."""
import json

import pandas as pd
import pytest


@pytest.fixture(scope="module")
def speed(experiment_script):
    return experiment_script("speed")

@pytest.mark.slow
def test_memory_budget_variants(speed, tmp_path):
    """Forward + backward without the optimizer step (whose temporaries would set the peak at
    these tiny sizes), four variants at 256 and 384 px."""
    names = ["DiPoM", "DiPoM + PoM recompute", "DiT", "DiT math attention"]
    speed.main(["--memory-budget", "0.5", "--size", "S", "--depth", "1", "--resolutions",
                "256,384", "--no-optimizer", "--memory-variants", ",".join(names),
                "--threads", "1", "--out", str(tmp_path)])
    df = pd.read_csv(tmp_path / "memory_budget.csv")
    summary = json.loads((tmp_path / "memory_budget.json").read_text())
    assert list(summary["largest_resolution_px"]) == names
    assert set(df.variant) == set(names) and set(df.attention) == {"none", "sdpa", "math"}
    mib = df.set_index(["variant", "resolution"]).training_bytes / 2**20
    # 6 heads x 576^2 float32 scores at 384 px (576 tokens), kept for backward by math only
    assert mib["DiT math attention", 384] - mib["DiT", 384] > 6 * 576**2 * 4 / 2**20
    for side in (256, 384):      # never more (at these sizes the parameter gradients set the peak)
        assert mib["DiPoM + PoM recompute", side] <= mib["DiPoM", side]
    for name, best in summary["largest_resolution_px"].items():
        fits = df[(df.variant == name) & df.fits]
        assert best == (fits.resolution.max() if len(fits) else None)
    assert (tmp_path / "memory_budget.png").exists()
    with pytest.raises(SystemExit):
        speed.main(["--memory-budget", "1", "--memory-variants", "DiT,DiT flash"])
