"""Image diffusion models: DiT (attention) and DiPoM (PoM) on one AdaLN-Zero backbone, and the
text-to-video DiPoM (registered as the "VideoDiPoM" family)."""
from .backbone import (AdaLNBlock, DiffusionTransformer, FinalLayer, LabelEmbedder, PatchEmbed,
                       TimestepEmbedder, authors_sincos_2d, initialize_dit_weights, modulate,
                       patchify, sincos_1d, sincos_2d, timestep_embedding, unpatchify)
from .checkpoints import load_dit_checkpoint, load_homm_checkpoint
from .flops import count_macs, gflops, macs
from .registry import (PATCHES, SCALES, SIZES, all_names, create, default_config, names,
                       parse_name, register_family)
from .video import VideoDiPoM, sincos_3d, video_names   # registers the video family

__all__ = ["create", "names", "all_names", "register_family", "gflops", "macs", "count_macs", "default_config", "parse_name", "SCALES", "SIZES",
           "PATCHES", "DiffusionTransformer", "AdaLNBlock", "FinalLayer", "LabelEmbedder",
           "PatchEmbed", "TimestepEmbedder", "initialize_dit_weights", "modulate", "patchify",
           "unpatchify", "sincos_1d", "sincos_2d", "timestep_embedding", "VideoDiPoM",
           "video_names", "sincos_3d", "load_dit_checkpoint", "load_homm_checkpoint",
           "authors_sincos_2d"]
