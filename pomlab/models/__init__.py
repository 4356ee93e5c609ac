"""Image diffusion models: DiT (attention) and DiPoM (PoM) on one AdaLN-Zero backbone."""
from .backbone import (AdaLNBlock, DiffusionTransformer, FinalLayer, LabelEmbedder, PatchEmbed,
                       TimestepEmbedder, initialize_dit_weights, modulate, patchify, sincos_1d,
                       sincos_2d, timestep_embedding, unpatchify)
from .flops import gflops, macs
from .registry import (PATCHES, SCALES, SIZES, create, default_config, names, parse_name,
                       video_names)
from .video import VideoDiPoM, sincos_3d

__all__ = ["create", "names", "video_names", "VideoDiPoM", "sincos_3d", "gflops", "macs", "default_config", "parse_name", "SCALES", "SIZES",
           "PATCHES", "DiffusionTransformer", "AdaLNBlock", "FinalLayer", "LabelEmbedder",
           "PatchEmbed", "TimestepEmbedder", "initialize_dit_weights", "modulate", "patchify",
           "unpatchify", "sincos_1d", "sincos_2d", "timestep_embedding"]
