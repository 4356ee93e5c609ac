"""Datasets: the embedded digits (default), image folders, CIFAR-10, latent shards, toy video."""
from .digits import NUM_CLASSES as DIGITS_NUM_CLASSES, load_digits

__all__ = ["load_digits", "DIGITS_NUM_CLASSES"]
