"""Memory savers in the trainer: gradient accumulation (--accumulate N) and per-block
activation checkpointing (--checkpointing).

What "the same as the larger batch" means, precisely: with accumulation every sample sees
bit-identical inputs (noise, time, dropped label; checked with torch.equal), and the summed
gradient equals the full batch's up to the order of floating-point additions: a float64
model's SGD update agrees to relative 1e-5 (the losses square the error in float32, so float32
rounding of the per-piece weights remains; observed ~1e-7). Checkpointing recomputes the same operations on
the same inputs: gradients are checked bitwise equal on CPU.
"""
import sys
from pathlib import Path

import pytest
import torch

import pomlab.models
from pomlab.diffusion import make_process
from pomlab.train import TrainConfig, Trainer, accumulated_step, training_step

ROOT = Path(__file__).resolve().parents[1]
F64 = torch.float64


def tiny_model(mixer="DiPoM", depth=2, dtype=F64, seed=0):
    torch.manual_seed(seed)
    model = pomlab.models.create(f"{mixer}-S/2", scale="micro", depth=depth, input_size=8,
                                 in_channels=1, num_classes=10, class_dropout_prob=0.5)
    return model.to(dtype).train()


class Recorder:
    """The model as the loss sees it, recording every (x_t, t) it is called with and the
    labels its embedding table receives (after label dropout)."""

    def __init__(self, model):
        self.model, self.calls, self.labels = model, [], []
        model.y_embedder.embedding_table.register_forward_pre_hook(
            lambda _, args: self.labels.append(args[0].clone()))

    def __call__(self, x, t, y):
        self.calls.append((x.detach().clone(), t.detach().clone()))
        return self.model(x, t, y)

    def inputs(self):
        return [torch.cat(parts) for parts in zip(*self.calls)] + [torch.cat(self.labels)]


def one_step(loss_kind, micro_batches, mixer="DiPoM"):
    model = tiny_model(mixer)
    process = make_process(loss_kind)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(10, 1, 8, 8, generator=g, dtype=F64)
    y = torch.randint(0, 10, (10,), generator=g)
    forward = Recorder(model)
    torch.manual_seed(42)
    params = list(model.parameters())
    if micro_batches == 1:
        loss, _ = training_step(forward, process, opt, x, y, params=params, grad_clip=1.0)
    else:
        loss, _ = accumulated_step(forward, model, process, opt, x, y, micro_batches,
                                   params=params, grad_clip=1.0)
    assert model.y_embedder.dropout_prob == 0.5          # restored after the micro-batches
    return loss, forward.inputs(), [p.detach().clone() for p in params], len(forward.calls)


@pytest.mark.parametrize("loss_kind", ["flow", "diffusion"])
@pytest.mark.parametrize("micro_batches", [2, 3])      # 10 = 5+5 and 4+3+3 samples
def test_accumulation_equals_the_full_batch(loss_kind, micro_batches):
    full_loss, full_inputs, full_params, calls = one_step(loss_kind, 1)
    acc_loss, acc_inputs, acc_params, acc_calls = one_step(loss_kind, micro_batches)
    assert (calls, acc_calls) == (1, micro_batches)
    for a, b in zip(acc_inputs, full_inputs):            # noise, times and labels: bitwise
        assert torch.equal(a, b)
    # the losses square the error in float32 (pomlab.diffusion), so float32 rounding remains
    torch.testing.assert_close(acc_loss, full_loss, rtol=1e-6, atol=0)
    start = [p.detach() for p in tiny_model().parameters()]
    for a, b, p0 in zip(acc_params, full_params, start):
        full_update = b - p0
        torch.testing.assert_close(a - p0, full_update, rtol=1e-5,
                                   atol=1e-6 * full_update.abs().max().clamp_min(1e-12))


def saved_bytes(model, x, t, y) -> int:
    """Bytes autograd keeps for backward during one forward (what checkpointing saves)."""
    total = 0

    def pack(t_):
        nonlocal total
        total += t_.numel() * t_.element_size()
        return t_

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t_: t_):
        model(x, t, y).square().mean().backward()
    return total


@pytest.mark.parametrize("mixer", ["DiPoM", "DiT"])
def test_checkpointing_same_gradients_less_saved(mixer):
    model = tiny_model(mixer, depth=4, dtype=torch.float32)
    model.y_embedder.dropout_prob = 0.0
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(4, 1, 8, 8, generator=g), torch.rand(4, generator=g)
    y = torch.randint(0, 10, (4,), generator=g)
    grads, saved = {}, {}
    for flag in (False, True):
        model.checkpointing = flag
        model.zero_grad(set_to_none=True)
        saved[flag] = saved_bytes(model, x, t, y)
        grads[flag] = [p.grad.clone() for p in model.parameters()]
    for a, b in zip(grads[True], grads[False]):
        assert torch.equal(a, b)
    assert saved[True] < 0.5 * saved[False], saved


def test_trainer_runs_with_both_savers(tmp_path):
    config = TrainConfig(model="DiPoM-S/2", scale="micro", model_overrides={"depth": 1},
                         image_size=8, batch_size=8, steps=2, log_every=1, lr=1e-3,
                         sample_at_end=False, checkpointing=True, accumulate=3)
    trainer = Trainer(config, progress=False)
    assert trainer.model.checkpointing
    result = trainer.run()
    assert result.step == 2 and torch.isfinite(torch.tensor(result.final_loss))


def test_bad_settings_are_refused():
    base = dict(model="DiPoM-S/2", scale="micro", model_overrides={"depth": 1}, image_size=8,
                batch_size=4, steps=1)
    with pytest.raises(ValueError, match="accumulate must be >= 1"):
        TrainConfig(**base, accumulate=0).validate()
    with pytest.raises(ValueError, match="checkpointing must be a bool"):
        TrainConfig(**base, checkpointing="yes").validate()
    with pytest.raises(ValueError, match="accumulate 8 exceeds the per-rank batch 4"):
        Trainer(TrainConfig(**base, accumulate=8), progress=False)


def test_cli_flags_reach_the_configs():
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        import scaling_laws
        import train as train_cli
    finally:
        sys.path.pop(0)
    config, _ = train_cli.parse_args(["--checkpointing", "--accumulate", "4"])
    assert config.checkpointing and config.accumulate == 4
    sweep = scaling_laws.build_config(scaling_laws.parse_args(
        ["--device", "cpu", "--checkpointing", "--accumulate", "2"]))
    assert sweep.checkpointing and sweep.accumulate == 2
    from pomlab.scaling.sweep import train_config
    tc = train_config(sweep, "pom", "S")
    assert tc.checkpointing and tc.accumulate == 2
    default = scaling_laws.build_config(scaling_laws.parse_args(["--device", "cpu"]))
    assert not default.checkpointing and default.accumulate == 1


def test_accumulation_without_the_model_is_a_clear_error():
    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(4, 1, 8, 8, dtype=F64), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="micro_batches > 1 needs model="):
        training_step(model, make_process("flow"), opt, x, y, params=list(model.parameters()),
                      micro_batches=2)
