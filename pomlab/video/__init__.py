"""Text-to-video with the video DiPoM: sampling (parallel or frame by frame), training,
measures (pomlab.video.evaluate), a frozen text encoder (pomlab.video.text)."""
from .sampling import MODES, draw_noise, encode_captions, model_vocabulary, sample
from .text import TextEncoder
from .train import VideoTrainer, load_video_model

__all__ = ["sample", "draw_noise", "model_vocabulary", "encode_captions", "MODES", "TextEncoder",
           "VideoTrainer", "load_video_model"]
