"""Learned variance end to end: the hybrid loss against hand-computed Gaussians, the ancestral
DDPM sampler on respaced steps, and the guidance conventions (standard, authors, DiT's 3-channel
legacy option) against their formulas. float64 throughout; tolerances stated per check."""
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

import pomlab.models
from _models_helpers import randomize_
from pomlab.diffusion import (GaussianDiffusion, ddpm, generate, guidance_label, guided,
                              guided_prediction, make_process, respaced_steps, standard_scale)

F64 = torch.float64


@pytest.fixture(scope="module")
def sigma_model():
    torch.manual_seed(5)
    model = pomlab.models.create("DiT-S/2", scale="micro", depth=1, input_size=8, in_channels=4,
                                 learn_sigma=True)
    return randomize_(model, std=0.2).to(F64).eval()


# --- guidance conventions -------------------------------------------------------------------

@settings(max_examples=20, deadline=None)
@given(scale=st.floats(-2, 8, allow_nan=False), seed=st.integers(0, 2**16),
       convention=st.sampled_from(["standard", "authors"]), channels=st.sampled_from([None, 3]))
def test_guidance_conventions_and_channels_match_their_formulas(sigma_model, scale, seed,
                                                                convention, channels):
    model = sigma_model
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 4, 8, 8, dtype=F64, generator=g)
    t, y = torch.rand(3, dtype=F64, generator=g), torch.tensor([0, 4, 9])
    with torch.no_grad():
        c = model(x, t, y)
        u = model(x, t, torch.full_like(y, model.num_classes))
        out = guided_prediction(model, x, t, y, scale, model.num_classes, convention=convention,
                                guided_channels=channels)
    mixed = u + scale * (c - u) if convention == "standard" else c + scale * (c - u)
    expected = mixed if channels is None else torch.cat([mixed[:, :3], c[:, 3:]], dim=1)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
    assert not torch.allclose(c, u)


def test_no_op_guidance_is_skipped_per_convention(sigma_model):
    assert guided(sigma_model, 1.0, None) is sigma_model
    assert guided(sigma_model, 0.0, None, convention="authors") is sigma_model
    assert standard_scale(1.0, "authors") == 2.0 and standard_scale(4.0) == 4.0
    assert "authors" in guidance_label(1.0, "authors") and "c + w(c - u)" in guidance_label(1, "authors")
    with pytest.raises(ValueError, match="convention"):
        guided(sigma_model, 2.0, 10, convention="dit")
    with pytest.raises(ValueError, match="guided_channels"):
        guided(sigma_model, 2.0, 10, guided_channels=0)


# --- the hybrid loss ------------------------------------------------------------------------

def hand_reverse(process, t, x0, xt, eps, v):
    """Everything by hand from the betas (python floats)."""
    betas = process.betas.tolist()
    abar = math.prod(1 - b for b in betas[:t + 1])
    abar_prev = abar / (1 - betas[t])
    beta = betas[t]
    post_var = beta * (1 - abar_prev) / (1 - abar)
    if t == 0:
        abar1 = abar * (1 - betas[1])
        post_var_clipped = betas[1] * (1 - abar) / (1 - abar1)
    else:
        post_var_clipped = post_var

    def mean_from(x_start):
        return (beta * math.sqrt(abar_prev) / (1 - abar) * x_start
                + (1 - abar_prev) * math.sqrt(1 - beta) / (1 - abar) * xt)
    x0_hat = (xt - math.sqrt(1 - abar) * eps) / math.sqrt(abar)
    frac = (v + 1) / 2
    var = math.exp(frac * math.log(beta) + (1 - frac) * math.log(post_var_clipped))
    return mean_from(x0), post_var, mean_from(x0_hat), var


@pytest.mark.parametrize("t", [1, 17, 500, 999])
def test_vlb_term_is_the_closed_form_gaussian_kl(t):
    process = GaussianDiffusion()
    x0, xt, eps, v = 0.3, 0.1, -0.4, 0.2
    m_true, var_true, m, var = hand_reverse(process, t, x0, xt, eps, v)
    # KL(N(m_true, var_true) || N(m, var)) in bits
    kl = (0.5 * math.log(var / var_true) + (var_true + (m_true - m) ** 2) / (2 * var) - 0.5) / math.log(2)
    out = torch.tensor([eps, v], dtype=F64).view(1, 2, 1, 1)
    got = process.vlb_terms(out, torch.full((1, 1, 1, 1), x0, dtype=F64),
                            torch.full((1, 1, 1, 1), xt, dtype=F64), torch.tensor([t]))
    assert kl > 1e-6
    assert abs(got.item() - kl) <= 1e-9 * max(1.0, kl)


def test_vlb_term_at_t0_is_the_discretised_decoder_nll():
    process = GaussianDiffusion()
    x0, xt, eps, v = 0.3, 0.31, 0.05, -0.3
    _, _, m, var = hand_reverse(process, 0, x0, xt, eps, v)
    s = math.sqrt(var)

    def cdf(z):
        return 0.5 * (1 + math.erf(z / math.sqrt(2)))
    p = cdf((x0 + 1 / 255 - m) / s) - cdf((x0 - 1 / 255 - m) / s)
    out = torch.tensor([eps, v], dtype=F64).view(1, 2, 1, 1)
    got = process.vlb_terms(out, torch.full((1, 1, 1, 1), x0, dtype=F64),
                            torch.full((1, 1, 1, 1), xt, dtype=F64), torch.tensor([0]))
    assert abs(got.item() - (-math.log(p) / math.log(2))) < 1e-9


def test_hybrid_loss_is_mse_plus_vlb_and_the_vlb_only_trains_the_variance():
    torch.manual_seed(0)
    process = GaussianDiffusion(hybrid=True)
    assert make_process(**process.config()).config() == process.config()
    assert "hybrid" not in GaussianDiffusion().config()            # old configs unchanged
    x0 = torch.rand(3, 2, 4, 4, dtype=F64) * 2 - 1
    noise, steps = torch.randn_like(x0), torch.tensor([0, 250, 999])
    output = torch.randn(3, 4, 4, 4, dtype=F64, requires_grad=True)
    loss = process.loss(lambda x, t, y: output, x0, None, noise=noise, steps=steps)
    mse = (output[:, :2] - noise).square().mean()
    vlb = process.vlb_terms(output, x0, process.q_sample(x0, noise, steps), steps).mean()
    # lambda * T = 0.001 * 1000; the MSE is taken in float32 as for every loss (rel. 1e-6)
    torch.testing.assert_close(loss.double(), mse + vlb, rtol=1e-6, atol=0)
    loss.backward()
    grad_mse, = torch.autograd.grad(mse, output)
    torch.testing.assert_close(output.grad[:, :2], grad_mse[:, :2], rtol=1e-5, atol=1e-9)
    assert output.grad[:, 2:].abs().sum() > 0
    with pytest.raises(ValueError, match="learn_sigma"):
        process.loss(lambda x, t, y: output[:, :2], x0, None)


# --- DDPM with learned variance, respaced --------------------------------------------------

def test_respacing_matches_dits_250():
    s = respaced_steps(1000, 250)
    assert len(s) == 250 and s[0] == 0 and s[-1] == 999 and s[1] == 4 and s[2] == 8
    assert all(b > a for a, b in zip(s[:-1], s[1:]))
    assert respaced_steps(1000, 1000) == list(range(1000))


@pytest.mark.parametrize("steps", [1000, 250, 7])
def test_ddpm_with_perfect_eps_and_variance_recovers_the_data(steps):
    process = GaussianDiffusion()
    x0 = torch.rand(4, 3, 6, 6, dtype=F64) * 2 - 1

    def perfect(xt, t, y):
        s = (t * process.num_steps).round().long()
        abar = process.alpha_bars[s].view(-1, 1, 1, 1)
        eps = (xt - abar.sqrt() * x0) / (1 - abar).sqrt()
        return torch.cat([eps, -torch.ones_like(eps)], dim=1)      # v = -1: the true posterior

    out = process.sample(perfect, torch.randn_like(x0), torch.zeros(4, dtype=torch.long),
                         steps=steps, method="ddpm", generator=torch.Generator().manual_seed(0))
    # each step draws from q(x_prev | x_t, x0) exactly; the last is its noise-free mean = x0
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-9)


def test_ddpm_step_variance_is_the_learned_interpolation():
    process = GaussianDiffusion()
    steps = respaced_steps(1000, 5)[::-1]                           # 999, 749, 500, 250, 0
    chain = process.alpha_bars[torch.tensor(steps[::-1])]
    n, v = 40000, 0.5
    seen = {}

    def output(x, step):
        seen[step] = x.clone()
        return torch.cat([torch.zeros_like(x), torch.full_like(x, v)], dim=1)

    ddpm(output, torch.zeros(n, 1, 1, 1, dtype=F64), process.alpha_bars, steps,
         generator=torch.Generator().manual_seed(1))
    # from x = 0 at step 999 with eps_hat = 0 the next state is N(0, sigma^2): chain index 4 -> 3
    a_t, a_prev = chain[4].item(), chain[3].item()
    beta = 1 - a_t / a_prev
    small = beta * (1 - a_prev) / (1 - a_t)
    expected = beta ** 0.75 * small ** 0.25                          # frac = (0.5 + 1) / 2
    var = seen[749].var().item()
    assert abs(var / expected - 1) < 0.03                            # 40000 draws: sd ~0.7%
    with pytest.raises(ValueError, match="learn_sigma"):
        ddpm(lambda x, s: x, torch.zeros(2, 1, 1, 1), process.alpha_bars, steps, variance="learned")


def test_generate_ddpm_with_a_learn_sigma_model_and_legacy_guidance(sigma_model):
    import copy
    sigma_model = copy.deepcopy(sigma_model).float()
    labels = torch.tensor([0, 3, 10])
    a = generate(sigma_model, GaussianDiffusion(), labels, steps=4, method="ddpm", cfg=1.5,
                 guided_channels=3, seed=2)
    b = generate(sigma_model, GaussianDiffusion(), labels, steps=4, method="ddpm", cfg=1.5,
                 guided_channels=3, seed=2)
    assert a.shape == (3, 4, 8, 8) and torch.isfinite(a).all()
    assert torch.equal(a, b)                                          # seeded
    c = generate(sigma_model, GaussianDiffusion(), labels, steps=4, method="ddim", cfg=0.5,
                 guidance="authors", seed=2)
    assert c.shape == (3, 4, 8, 8)
