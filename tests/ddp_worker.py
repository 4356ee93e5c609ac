"""Run by test_train.py under `torchrun --nproc_per_node 2` (gloo on CPU): a tiny DDP run whose
ranks dump their final weights and the data they saw, so the test can compare replicas."""
import sys

import torch

from pomlab.train import TrainConfig, Trainer

out = sys.argv[1]
config = TrainConfig(model="DiPoM-S/2", scale="micro", model_overrides={"depth": 1},
                     image_size=8, batch_size=8, steps=4, log_every=2, lr=1e-3, sample_steps=2,
                     samples_per_class=1, device="cpu", out=out)
trainer = Trainer(config, progress=False)
seen = [trainer.sampler.remaining()[:4].flatten()]       # this rank's first 4 batches of epoch 0
result = trainer.run()
torch.save({"model": trainer.model.state_dict(), "ema": trainer.ema.state_dict(),
            "seen": torch.cat(seen), "world_size": trainer.world_size, "step": result.step},
           f"{out}/rank{trainer.rank}.pt")
trainer.close()
