"""Text-to-video with the video DiPoM: sampling (parallel or frame by frame), training, memory.

    model = pomlab.models.create("VideoDiPoM-S/2", scale="micro")
    clips = pomlab.video.sample(model, ["a 3 moving left"], frames=8, mode="sequential")
"""
from .sampling import MODES, draw_noise, model_vocabulary, sample
from .train import VideoTrainer, load_video_model

__all__ = ["sample", "draw_noise", "model_vocabulary", "MODES",
           "VideoTrainer", "load_video_model"]
