"""The text-encoder path: a frozen (tiny, randomly initialised) T5 encoder with ByT5's tokenizer."""
import pytest
import torch

transformers = pytest.importorskip("transformers")

import pomlab.models as M  # noqa: E402
from _models_helpers import randomize_  # noqa: E402
from pomlab.data.toy_video import make_toy_videos  # noqa: E402
from pomlab.train import TrainConfig  # noqa: E402
from pomlab.video import TextEncoder, VideoTrainer, load_video_model, sample  # noqa: E402

pytestmark = pytest.mark.slow         # importing transformers takes seconds
CAPTIONS = ["a 3 moving left", "a 7 moving up"]
WIDTH = 24


def tiny_encoder(max_length=48, seed=0) -> TextEncoder:
    """A 2-layer T5 encoder of width 24 with random weights; ByT5's tokenizer (bytes: no
    vocabulary file), so nothing is downloaded."""
    torch.manual_seed(seed)
    config = transformers.T5Config(vocab_size=384, d_model=WIDTH, d_kv=8, d_ff=48, num_layers=2,
                                   num_heads=3, relative_attention_num_buckets=8)
    return TextEncoder(transformers.T5EncoderModel(config), transformers.ByT5Tokenizer(),
                       max_length=max_length)


def text_model(**overrides):
    torch.manual_seed(1)
    return randomize_(M.create("VideoDiPoM-S/8", scale="micro", depth=2, text_dim=WIDTH,
                               **overrides).double(), std=0.2)


def test_embeddings_are_zero_padded_and_cached_per_caption():
    encoder = tiny_encoder()
    emb = encoder.encode(CAPTIONS)
    lengths = [len(c.encode()) + 1 for c in CAPTIONS]            # bytes + </s>
    assert emb.shape == (2, max(lengths), WIDTH) and emb.dtype == torch.float32
    assert (emb[1, lengths[1]:] == 0).all() and (emb[:, :lengths[1]].abs().amax(-1) > 0).all()
    assert set(encoder.cache) == set(CAPTIONS)
    assert all(not p.requires_grad for p in encoder.model.parameters())


@pytest.mark.parametrize("text_modulation", [False, True])
def test_cached_and_uncached_embeddings_give_the_same_model_output(text_modulation):
    encoder, model = tiny_encoder(), text_model(text_modulation=text_modulation)
    x = torch.randn(2, 3, 1, 16, 16, dtype=torch.float64)
    t = torch.rand(2, dtype=torch.float64)
    fresh = model(x, t, encoder.encode(CAPTIONS, cache=False).double())
    assert not encoder.cache
    encoder.encode(CAPTIONS)                                       # fills the cache
    cached = model(x, t, encoder.encode(CAPTIONS).double())        # reads it
    torch.testing.assert_close(cached, fresh, rtol=0, atol=0)
    # a caption batched with a longer one (zero padding) reads as it does alone: float64
    alone = model(x[1:], t[1:], encoder.encode(CAPTIONS[1:]).double())
    torch.testing.assert_close(cached[1:], alone, rtol=1e-12, atol=1e-12)


def test_trains_a_few_steps_and_samples_in_both_modes(tmp_path):
    encoder = tiny_encoder()
    data = make_toy_videos(24, frames=4, seed=0)
    config = TrainConfig(model="VideoDiPoM-S/8", scale="micro", model_overrides={"depth": 1},
                         dataset=data.name, steps=3, batch_size=8, lr=1e-3, out=str(tmp_path),
                         log_every=1, sample_steps=2, sample_method="euler", samples_per_class=2)
    trainer = VideoTrainer(config, data, progress=False, text_encoder=encoder)
    assert trainer.model.text_dim == WIDTH and len(encoder.cache) == len(set(data.captions))
    before = trainer.model.text_embedder.proj.weight.detach().clone()
    frozen = [p.detach().clone() for p in encoder.model.parameters()]
    result = trainer.run()
    assert result.step == 3 and all(torch.isfinite(torch.tensor(r["loss"])) for r in trainer.history)
    assert not torch.equal(trainer.model.text_embedder.proj.weight, before)     # it learns
    assert all(torch.equal(a, b) for a, b in zip(encoder.model.parameters(), frozen))
    clips = {mode: trainer.generate_for_captions(CAPTIONS, frames=3, steps=2, mode=mode, cfg=2.0)
             for mode in ("sequential", "parallel")}
    assert clips["sequential"].shape == (2, 3, 1, 16, 16)
    torch.testing.assert_close(clips["sequential"], clips["parallel"], rtol=1e-4, atol=1e-4)
    # the checkpoint keeps the encoder's spec; an in-memory encoder is handed back by the caller
    with pytest.raises(ValueError, match="in-memory text encoder"):
        load_video_model(tmp_path)
    model, process, _, _ = load_video_model(tmp_path, text_encoder=encoder)
    again = sample(model, CAPTIONS, 3, steps=2, cfg=2.0, method="euler", process=process,
                   generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(again.float(), clips["sequential"], rtol=1e-5,   # model space
                               atol=1e-5)


def test_bad_input_is_named():
    encoder, model = tiny_encoder(max_length=10), text_model()
    with pytest.raises(ValueError, match="16 tokens long.*max_length=10"):
        encoder.encode(["a 3 moving left"])                        # 15 bytes + </s>
    with pytest.raises(ValueError, match="non-empty list"):
        encoder.encode([])
    with pytest.raises(ValueError, match="non-empty list"):
        sample(model, [], 4, text_encoder=encoder)
    with pytest.raises(ValueError, match="frames must be"):
        sample(model, ["a 3"], 0, text_encoder=encoder)
    with pytest.raises(ValueError, match="pass text_encoder="):
        sample(model, ["a 3"], 2, steps=1)
    with pytest.raises(ValueError, match="text_dim=24"):
        model(torch.zeros(1, 2, 1, 16, 16, dtype=torch.float64), 0.5, torch.zeros(1, 3, 7))
    with pytest.raises(ValueError, match="max_length must be given"):
        TextEncoder(encoder.model, transformers.ByT5Tokenizer())   # ByT5 sets no limit
    wide = TextEncoder(encoder.model, encoder.tokenizer, max_length=10)
    with pytest.raises(ValueError, match="24-dim embeddings but the model has text_dim=12"):
        sample(M.create("VideoDiPoM-S/8", scale="micro", text_dim=12), ["a"], 2,
               text_encoder=wide)
