"""Text-to-video with the video DiPoM: sampling (parallel or frame by frame), training, memory.

    model = pomlab.models.create("VideoDiPoM-S/2", scale="micro")
    clips = pomlab.video.sample(model, ["a 3 moving left"], frames=8, mode="sequential")
"""
from .sampling import MODES, draw_noise, encode_captions, model_vocabulary, sample
from .text import TextEncoder
from .train import VideoTrainer, load_video_model

__all__ = ["sample", "draw_noise", "model_vocabulary", "encode_captions", "MODES", "TextEncoder",
           "VideoTrainer", "load_video_model"]
