"""Datasets (embedded digits, image folders, CIFAR-10, latent shards), a resumable batch order."""
from .datasets import DATASETS, DATASETS_ON_DISK, ShardedBatchSampler, load_cifar10, load_dataset
from .digits import NUM_CLASSES as DIGITS_NUM_CLASSES, load_digits
from .images import (ImageDataset, ImageFolder, TensorImageDataset, from_model_range,
                     to_model_range)
from .latents import (SD_VAE_SCALE_FACTOR, LatentShards, LatentShardWriter, decode_latents,
                      encode_images, load_vae)

__all__ = ["load_digits", "DIGITS_NUM_CLASSES", "load_dataset", "DATASETS", "DATASETS_ON_DISK",
           "load_cifar10", "ImageDataset", "ImageFolder", "TensorImageDataset", "to_model_range",
           "from_model_range", "LatentShards", "LatentShardWriter", "encode_images",
           "decode_latents", "load_vae", "SD_VAE_SCALE_FACTOR", "ShardedBatchSampler"]
