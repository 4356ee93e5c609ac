"""Run by test_scaling.py under `torchrun --nproc_per_node 2` (gloo on CPU): the latent-data
Evaluator of an untrained model (the same weights for any rank count), its reference statistics
and sample scores shared by the ranks; each rank writes what it did (rank 0: the scores)."""
import json
import sys

import pomlab.scaling.evaluation as evaluation
from pomlab.scaling import Evaluator, SweepConfig, train_config
from pomlab.train import TrainConfig, Trainer


def latent_config(latents: str, out: str) -> SweepConfig:
    """Tiny latent sweep settings with the digits backend (validate() would want Inception)."""
    return SweepConfig(sizes=("S",), mixers=("pom",), backend="digits", eval_steps=(2,),
                       fid_samples=72, eval_chunk=24, out=out,
                       train=TrainConfig(dataset="latents", data_path=latents, steps=2,
                                         batch_size=8, model_overrides={"depth": 1},
                                         sample_steps=2, device="cpu", sample_at_end=False))


if __name__ == "__main__":
    latents, out = sys.argv[1], sys.argv[2]
    config = latent_config(latents, out)
    trainer = Trainer(train_config(config, "pom", "S"), progress=False)
    extracted, extract = [], evaluation.extract        # count this rank's reference chunks
    evaluation.extract = lambda *a, **k: extracted.append(1) or extract(*a, **k)
    evaluator = Evaluator(config, trainer, cache_dir=f"{out}/reference")
    evaluation.extract = extract
    result = evaluator(trainer)
    with open(f"{out}/rank{trainer.rank}.json", "w") as f:
        json.dump({"reference_chunks": len(extracted), **(result or {}), "reference_mu":
                   evaluator.reference.mu.tolist() if trainer.rank == 0 else None}, f)
    if trainer.rank != 0:
        assert result is None and evaluator.reference is None
    trainer.close()
