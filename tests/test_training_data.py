"""Training data: image folders, CIFAR-10 errors, latent shards, the sharded sampler, VAE encoding."""
import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, strategies as st

from pomlab.data import (ImageFolder, LatentShards, LatentShardWriter, ShardedBatchSampler,
                         load_dataset)

ROOT = Path(__file__).resolve().parents[1]


def make_folder(root: Path, classes=("b_dogs", "a_cats"), per_class=3, mode="RGB"):
    from PIL import Image
    g = torch.Generator().manual_seed(0)
    for name in classes:
        (root / name / "nested").mkdir(parents=True)
        for i in range(per_class):
            size = (20 + 3 * i, 14)
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            pixels = (torch.rand(shape, generator=g) * 255).to(torch.uint8).numpy()
            where = root / name / ("nested" if i == 0 else "")
            Image.fromarray(pixels, mode=mode).save(where / f"img{i}.{'png' if i % 2 else 'jpg'}")
    (root / "a_cats" / "notes.txt").write_text("not an image")
    return root


def test_image_folder_labels_sizes_and_range(tmp_path):
    data = ImageFolder(make_folder(tmp_path), size=12, channels=3)
    assert len(data) == 6 and data.num_classes == 2 and data.class_names == ["a_cats", "b_dogs"]
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1]
    x, y = data[4]
    assert x.shape == (3, 12, 12) and x.dtype == torch.float32 and y == 1
    assert -1.0 <= x.min() < 0 < x.max() <= 1.0
    grey = load_dataset("folder", root=tmp_path, image_size=8, channels=1)
    assert grey[0][0].shape == (1, 8, 8) and grey.tensors is None


def test_folder_errors(tmp_path):
    (tmp_path / "empty" / "class0").mkdir(parents=True)
    (tmp_path / "empty" / "class0" / "readme.md").write_text("x")
    with pytest.raises(ValueError, match="no images found"):
        ImageFolder(tmp_path / "empty", size=8)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolder(tmp_path / "nowhere", size=8)
    with pytest.raises(ValueError, match="root"):
        load_dataset("folder")
    with pytest.raises(ValueError, match="dataset"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="one split"):       # not silently the whole folder
        load_dataset("folder", root=tmp_path / "empty", split="heldout")
    with pytest.raises(ValueError, match="channels must be one of 1, 3"):   # before any file is read
        load_dataset("cifar10", root=tmp_path, channels=2)


def test_digits_dataset_is_in_memory_in_model_range():
    data = load_dataset("digits", image_size=16)
    x, y = data.tensors
    assert x.shape == (1437, 1, 16, 16) and data.num_classes == 10 and data.kind == "pixels"
    assert x.min() == -1.0 and x.max() <= 1.0


def test_cifar10_without_files_or_torchvision_is_a_clear_error(tmp_path):
    with pytest.raises((ImportError, FileNotFoundError), match="(torchvision|CIFAR-10 files)"):
        load_dataset("cifar10", root=tmp_path)


def test_latent_shards_round_trip(tmp_path):
    g = torch.Generator().manual_seed(0)
    latents, labels = torch.randn(23, 4, 4, 4, generator=g), torch.randint(0, 5, (23,), generator=g)
    writer = LatentShardWriter(tmp_path / "z", num_classes=5, scale_factor=0.5, shard_size=10,
                               vae="test")
    for start in range(0, 23, 7):
        writer.add(latents[start:start + 7], labels[start:start + 7])
    writer.close()
    assert [s["count"] for s in writer.shards] == [10, 10, 3]
    for preload in (True, False):
        data = LatentShards(tmp_path / "z", preload=preload)
        assert len(data) == 23 and (data.channels, data.size, data.num_classes) == (4, 4, 5)
        assert data.kind == "latents" and data.scale_factor == 0.5
        got = torch.stack([data[i][0] for i in range(23)])
        # stored as float16: relative rounding 2^-11
        torch.testing.assert_close(got, latents, rtol=1e-3, atol=1e-3)
        assert [int(data[i][1]) for i in range(23)] == labels.tolist()
    with pytest.raises(FileExistsError):
        LatentShardWriter(tmp_path / "z", num_classes=5, scale_factor=1.0)
    with pytest.raises(ValueError, match="square"):            # refused before any shard is written
        LatentShardWriter(tmp_path / "w", num_classes=5, scale_factor=1.0).add(
            torch.zeros(2, 4, 4, 6), torch.zeros(2, dtype=torch.long))
    (tmp_path / "z" / "shard_00001.pt").write_bytes(b"broken")
    with pytest.raises(ValueError, match="corrupt"):
        LatentShards(tmp_path / "z", preload=False)[15]
    with pytest.raises(FileNotFoundError, match="encode_latents"):
        LatentShards(tmp_path)


@given(size=st.integers(8, 60), batch=st.integers(1, 4), world=st.integers(1, 3),
       seed=st.integers(0, 1000))
def test_sampler_shards_are_disjoint_and_resume_exactly(size, batch, world, seed):
    if size // world // batch < 1:
        with pytest.raises(ValueError, match="smaller than one batch"):
            ShardedBatchSampler(size, batch, world_size=world)
        return
    ranks = [ShardedBatchSampler(size, batch, rank=r, world_size=world, seed=seed)
             for r in range(world)]
    per_epoch = ranks[0].batches_per_epoch
    epoch0 = [torch.cat([s.next_batch() for _ in range(per_epoch)]) for s in ranks]
    seen = torch.cat(epoch0)
    assert len(set(seen.tolist())) == len(seen)                      # disjoint, no repeats
    assert ranks[0].epoch == 1 and ranks[0].position == 0
    s = ranks[0]
    for _ in range(per_epoch // 2 + 1):
        s.next_batch()
    state = s.state_dict()
    expected = [s.next_batch() for _ in range(2 * per_epoch)]
    fresh = ShardedBatchSampler(size, batch, rank=0, world_size=world, seed=seed)
    fresh.load_state_dict(state)
    assert all(torch.equal(a, fresh.next_batch()) for a in expected)
    with pytest.raises(ValueError, match="dataset_size"):
        ShardedBatchSampler(size + 1, batch, world_size=world, seed=seed).load_state_dict(state)


def test_encode_latents_with_a_small_random_vae_then_train_on_them(tmp_path, tiny_vae):
    vae, _ = tiny_vae
    spec = importlib.util.spec_from_file_location("encode_cli", ROOT / "experiments" / "encode_latents.py")
    sys.path.insert(0, str(ROOT / "experiments"))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    cli.main(["--dataset", "digits", "--image-size", "16", "--vae", str(tmp_path / "vae"),
              "--out", str(tmp_path / "z"), "--limit", "50", "--batch-size", "16",
              "--shard-size", "20", "--no-progress", "--device", "cpu"])
    data = LatentShards(tmp_path / "z")
    assert len(data) == 50 and (data.channels, data.size) == (4, 8)        # VAE downsamples 2x
    assert data.scale_factor == 0.18215 and len(data.meta["shards"]) == 3
    with torch.no_grad():           # the stored latents are the VAE's (posterior sample) x 0.18215
        from pomlab.data import load_digits
        images = load_digits("train", 16, channels=3)[0][:4] * 2 - 1
        mean = vae.encode(images).latent_dist.mean * 0.18215
    std = vae.encode(images).latent_dist.std * 0.18215
    assert ((data.tensors[0][:4] - mean).abs() < 6 * std + 1e-2).all()
    from pomlab.train import TrainConfig, train
    result = train(TrainConfig(model="DiT-S/2", scale="micro", dataset="latents",
                               data_path=str(tmp_path / "z"), steps=2, batch_size=8, log_every=1,
                               model_overrides={"depth": 1}, sample_steps=2,
                               samples_per_class=1, out=str(tmp_path / "run")), progress=False)
    assert result.step == 2 and result.samples.is_file()


def test_image_folder_hflip_mirrors_half_the_items_and_only_folders_take_it(tmp_path):
    root = make_folder(tmp_path)
    plain = ImageFolder(root, size=12)
    flipped = ImageFolder(root, size=12, hflip=True)
    torch.manual_seed(0)
    draws = [flipped[i % 6] for i in range(400)]
    mirrored = [torch.equal(x, plain[i % 6][0].flip(-1)) for i, (x, _) in enumerate(draws)]
    same = [torch.equal(x, plain[i % 6][0]) for i, (x, _) in enumerate(draws)]
    assert all(m or s for m, s in zip(mirrored, same))              # each item: as is or mirrored
    assert 150 < sum(mirrored) < 250                                  # p = 1/2 (sd 10 of 400)
    assert "hflip" in flipped.name
    torch.manual_seed(0)
    assert all(torch.equal(flipped[i % 6][0], x) for i, (x, _) in enumerate(draws[:12]))  # seeded
    with pytest.raises(ValueError, match="hflip .* image folders"):
        load_dataset("digits", hflip=True)
