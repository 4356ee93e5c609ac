"""Flow matching, diffusion, samplers, guidance and EMA, checked against analytic answers."""
import math

import pytest
import torch
from hypothesis import given, strategies as st

import pomlab.models
from _models_helpers import randomize_
from pomlab.diffusion import (EMA, FlowMatching, GaussianDiffusion, ddim, euler, generate, guided,
                              guided_prediction, heun, make_process, paper_guidance_scale,
                              shift_for_side, shift_time)


def tiny_model(dtype=torch.float64):
    """A one-block micro DiPoM with random weights everywhere (AdaLN-Zero starts at output 0,
    which would make every comparison trivially equal)."""
    model = pomlab.models.create("DiPoM-S/2", scale="micro", depth=1, input_size=8)
    return randomize_(model, std=0.2).to(dtype).eval()


@pytest.fixture(scope="module")
def model64():
    torch.manual_seed(3)
    return tiny_model()


# --- guidance -------------------------------------------------------------------------------

def test_guidance_scale_one_is_the_conditional_prediction(model64):
    model = model64
    x = torch.randn(5, 1, 8, 8, dtype=torch.float64)
    t, y = torch.rand(5, dtype=torch.float64), torch.randint(0, 10, (5,))
    with torch.no_grad():
        cond = model(x, t, y)
        out = guided_prediction(model, x, t, y, 1.0, null_class=model.num_classes)
    # float64: u + 1 * (c - u) differs from c only by rounding (~1e-16 relative)
    torch.testing.assert_close(out, cond, rtol=0, atol=1e-12)
    assert guided(model, 1.0, None) is model          # no extra batch when it is not needed


@given(scale=st.floats(-3, 10, allow_nan=False), seed=st.integers(0, 2**16))
def test_guidance_is_the_linear_extrapolation(model64, scale, seed):
    model = model64
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64, generator=g)
    t, y = torch.rand(3, dtype=torch.float64, generator=g), torch.tensor([0, 4, 9])
    with torch.no_grad():
        cond = model(x, t, y)
        uncond = model(x, t, torch.full_like(y, model.num_classes))
        out = guided(model, scale, model.num_classes)(x, t, y)
    torch.testing.assert_close(out, uncond + scale * (cond - uncond), rtol=1e-10, atol=1e-10)
    assert not torch.allclose(cond, uncond)            # the labels matter at all


def test_paper_guidance_rule():
    assert paper_guidance_scale(256) == 4.0
    assert paper_guidance_scale(512) == 8.0
    assert paper_guidance_scale(1024) == 16.0
    with pytest.raises(ValueError, match="image_size"):
        paper_guidance_scale(0)
    with pytest.raises(ValueError, match="null_class"):
        guided(lambda x, t, y: x, 2.0, None)
    with pytest.raises(ValueError, match="cfg"):
        guided(lambda x, t, y: x, float("nan"), 10)


# --- ODE samplers ---------------------------------------------------------------------------

@pytest.mark.parametrize("lam", [-1.3, 0.7, 2.0])
def test_heun_on_a_linear_field_reaches_the_analytic_endpoint(lam):
    x1 = torch.randn(4, 3, dtype=torch.float64)
    exact = x1 * math.exp(-lam)                    # dx/dt = lam x integrated from t = 1 to 0

    def err(method, n):
        grid = torch.linspace(1, 0, n + 1, dtype=torch.float64).tolist()
        return (method(lambda x, t: lam * x, x1, grid) - exact).abs().max().item()

    for n in (8, 32):
        h = 1.0 / n                                 # Heun's step factor: 1 - lam h + (lam h)^2 / 2
        heun_n = heun(lambda x, t: lam * x, x1, torch.linspace(1, 0, n + 1).tolist())
        torch.testing.assert_close(heun_n, x1 * (1 - lam * h + (lam * h) ** 2 / 2) ** n,
                                   rtol=1e-12, atol=1e-12)
    # Heun's global error is ~ |lam|^3 h^2 / 6 relative to the endpoint: tiny at 256 steps
    assert err(heun, 256) < 1e-4 * exact.abs().max() and err(heun, 256) < err(euler, 256) / 100
    # second order for Heun (error / 4 when steps double), first order for Euler (/ 2)
    assert 3.5 < err(heun, 64) / err(heun, 128) < 4.5
    assert 1.8 < err(euler, 64) / err(euler, 128) < 2.2


@pytest.mark.parametrize("shift", [None, 2.0, 0.5])
def test_flow_sampler_follows_straight_paths_to_the_data(shift):
    # For data concentrated at x0, the exact velocity is (x_t - x0) / t (straight lines);
    # Euler on it is exact, so sampling must land on x0 with any grid (shifted or not).
    x0 = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    oracle = lambda x, t, y: (x - x0) / t.view(-1, 1, 1, 1)
    fm = FlowMatching(shift=shift)
    out = fm.sample(oracle, torch.randn_like(x0), torch.zeros(3, dtype=torch.long), steps=7,
                    method="euler")
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-12)


def test_flow_loss_is_zero_for_the_exact_velocity():
    x0 = torch.randn(6, 1, 4, 4, dtype=torch.float64)
    fm = FlowMatching(shift=1.7)
    oracle = lambda xt, t, y: (xt - x0) / t.view(-1, 1, 1, 1)
    y = torch.zeros(6, dtype=torch.long)
    t = torch.rand(6, dtype=torch.float64) * 0.9 + 0.1
    assert fm.loss(oracle, x0, y, t=t).item() < 1e-20
    zero = lambda xt, t, y: torch.zeros_like(xt)
    noise = torch.randn_like(x0)
    torch.testing.assert_close(fm.loss(zero, x0, y, noise=noise, t=t),
                               (noise - x0).float().square().mean())


@given(t=st.floats(0, 1), s=st.floats(0.1, 10))
def test_shift_maps_the_unit_interval_monotonically(t, s):
    tt = torch.tensor([0.0, t, 1.0], dtype=torch.float64)
    out = shift_time(tt, s)
    assert out[0] == 0 and 1 - 1e-15 < out[2] <= 1 and 0 <= out[1] <= 1   # never above 1: models need t <= 1
    assert (out[1] >= t - 1e-12) == (s >= 1) or abs(out[1] - t) < 1e-12
    assert shift_for_side(32) == 1.0 and shift_for_side(128) == 2.0


# --- diffusion ------------------------------------------------------------------------------

def _perfect_noise_predictor(process, x0):
    def predict(xt, t, y):
        steps = (t * process.num_steps).round().long()
        abar = process.alpha_bars[steps].view(-1, 1, 1, 1)
        return (xt - abar.sqrt() * x0) / (1 - abar).sqrt()
    return predict


@pytest.mark.parametrize("steps, eta", [(1, 0.0), (10, 0.0), (50, 0.0), (1000, 0.0), (25, 1.0)])
def test_ddim_with_a_perfect_noise_predictor_recovers_the_data(steps, eta):
    process = GaussianDiffusion()
    x0 = torch.rand(4, 1, 6, 6, dtype=torch.float64) * 2 - 1
    out = process.sample(_perfect_noise_predictor(process, x0), torch.randn_like(x0),
                         torch.zeros(4, dtype=torch.long), steps=steps, eta=eta,
                         generator=torch.Generator().manual_seed(0))
    # float64 through up to 1000 steps; each step only re-mixes the exact x0 with eps
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-9)


def test_diffusion_schedule_and_loss():
    process = GaussianDiffusion()
    assert process.betas[0] == 1e-4 and abs(process.betas[-1] - 0.02) < 1e-15
    assert 0 < process.alpha_bars[-1] < 1e-4 < process.alpha_bars[0] < 1
    assert process.timesteps(5) == [999, 749, 500, 250, 0]
    x0 = torch.randn(5, 1, 4, 4, dtype=torch.float64)
    oracle = _perfect_noise_predictor(process, x0)
    assert process.loss(oracle, x0, torch.zeros(5, dtype=torch.long)).item() < 1e-20
    with pytest.raises(ValueError, match="steps"):
        process.timesteps(1001)
    with pytest.raises(ValueError, match="ddim"):
        process.sample(oracle, x0, torch.zeros(5, dtype=torch.long), method="heun")
    with pytest.raises(ValueError, match="decreasing"):
        ddim(lambda x, s: x, x0, process.alpha_bars, [3, 5])


def test_make_process_round_trips_and_rejects_unknown():
    for p in (FlowMatching(), FlowMatching(2.0), GaussianDiffusion(500, 1e-4, 0.03)):
        assert make_process(**p.config()).config() == p.config()
    with pytest.raises(ValueError, match="flow"):
        make_process("score")
    with pytest.raises(ValueError, match="shift"):
        FlowMatching(shift=-1.0)
    with pytest.raises(ValueError, match="euler"):
        FlowMatching().sample(lambda x, t, y: x, torch.zeros(1, 1, 2, 2), torch.zeros(1).long(),
                              method="rk4")


# --- EMA and generate -----------------------------------------------------------------------

def test_ema_follows_the_warmed_up_decay():
    model = torch.nn.Linear(3, 2).double()
    ema = EMA(model, decay=0.9)
    ema.update_parameters(model)                       # the first update copies (DiT's start)
    expected = model.weight.detach().clone()
    for n in range(1, 30):
        with torch.no_grad():
            model.weight.add_(torch.randn_like(model.weight))
        ema.update_parameters(model)
        d = min(0.9, (1 + n) / (10 + n))
        expected = d * expected + (1 - d) * model.weight.detach()
    torch.testing.assert_close(ema.module.weight, expected, rtol=1e-12, atol=1e-12)
    plain = EMA(model, decay=0.0, warmup=False)
    plain.update_parameters(model)
    with torch.no_grad():
        model.weight.mul_(2)
    plain.update_parameters(model)
    assert torch.equal(plain.module.weight, model.weight)     # decay 0 tracks the model
    assert not plain.module.training and not any(p.requires_grad for p in plain.module.parameters())
    with pytest.raises(ValueError, match="decay"):
        EMA(model, decay=1.5)


def test_generate_is_seeded_and_checks_labels():
    model = tiny_model(torch.float32)
    fm = FlowMatching()
    labels = torch.tensor([0, 3, 3, 10])
    a = generate(model, fm, labels, steps=3, seed=7, batch_size=3)
    b = generate(model, fm, labels, steps=3, seed=7)
    assert a.shape == (4, 1, 8, 8) and torch.allclose(a, b, atol=1e-6)  # chunking changes nothing
    assert not torch.equal(a, generate(model, fm, labels, steps=3, seed=8))
    c = generate(model, GaussianDiffusion(), labels, steps=3, cfg=3.0, seed=7)
    assert torch.isfinite(c).all()
    with pytest.raises(ValueError, match="labels"):
        generate(model, fm, torch.tensor([11]), steps=2)
