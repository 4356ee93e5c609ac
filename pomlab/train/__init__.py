"""The training loop every experiment uses: flow matching or diffusion, EMA, checkpoints, DDP.

    result = train(TrainConfig(model="DiPoM-S/2", scale="micro", steps=2000, out="runs/s2"))
    trainer = Trainer(config, resume=True)      # sweeps: run(until=N), evaluate, run(until=M)

Modules: config, checkpoints (with RNG states, load_trained), loop, loggers. See docs/training.md.
"""
from .checkpoints import (CHECKPOINT_DIR, CHECKPOINT_FORMAT, checkpoint_path, list_checkpoints,
                          load_checkpoint, load_trained)
from .config import DEFAULT_LR, LOGGERS, PRECISIONS, TrainConfig
from .loggers import Logger, grid_image, save_png
from .loop import (Callback, NonFiniteLossError, Trainer, TrainResult, accumulated_step,
                   distributed_env, draw_training_noise, join_process_group, pick_device, train,
                   training_step)

__all__ = ["TrainConfig", "Trainer", "TrainResult", "train", "load_trained", "load_checkpoint",
           "list_checkpoints", "checkpoint_path", "NonFiniteLossError", "training_step",
           "accumulated_step", "draw_training_noise", "distributed_env", "pick_device",
           "join_process_group", "grid_image", "save_png", "Logger", "DEFAULT_LR", "PRECISIONS",
           "LOGGERS", "CHECKPOINT_FORMAT", "CHECKPOINT_DIR"]
