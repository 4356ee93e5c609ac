"""Short diagnostic runs of the toy video model: train one configuration N steps, measure it.

    python experiments/video_ablation.py --model VideoDiPoM-S/4 --ov text_modulation=True \
        --steps 1000 --tag S4-mod --results runs/video_ablation.jsonl

    python experiments/video_ablation.py --model DiPoM-S/4 --image --frames 1 --steps 400 --tag img

Trains VideoTrainer on 8192 toy clips of --frames frames (batch 32, warm-up 100, EMA, no
checkpoints) and evaluates 40 captions x 2 clips generated in parallel (20 Euler steps, cfg 1
and 3) with pomlab.video.evaluate; appends one JSON line (labels, CPU seconds of training per
step, final loss, the measures) to --results. CPU time is process time, 1 thread.
--image: the conditioning-path control: an image model (--model DiPoM-S/4) trained on the
first frames with the digit as its class label (DiT's AdaLN label path), 8 samples per digit
at cfg 1, the same digit measure. --word-std: re-initialise the word vectors N(0, std).
"""
import argparse
import json
import time
from pathlib import Path

import _bootstrap  # noqa: F401
import torch

from pomlab.cli import ConfigParser, HelpFormatter, run
from pomlab.data.images import TensorImageDataset, from_model_range
from pomlab.data.toy_video import all_toy_captions, make_toy_videos, toy_caption
from pomlab.diffusion import generate
from pomlab.train import TrainConfig, Trainer
from pomlab.video import VideoTrainer, sample
from pomlab.video.evaluate import MEASURES, caption_following


def main():
    p = ConfigParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--model", default="VideoDiPoM-L/8"); p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--lr", type=float, default=2e-3); p.add_argument("--bs", type=int, default=32)
    p.add_argument("--ov", action="append", default=[]); p.add_argument("--tag", default="")
    p.add_argument("--shift", type=float, default=None); p.add_argument("--sample-steps", type=int, default=20)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--results", default="runs/video_ablation.jsonl")
    p.add_argument("--frames", type=int, default=8); p.add_argument("--image", action="store_true")
    p.add_argument("--word-std", type=float, default=None)
    a = p.parse_args()
    torch.set_num_threads(1)
    ov = {}
    for kv in a.ov:
        k, v = kv.split("=")
        ov[k] = json.loads(v.lower() if v in ("True", "False") else v)
    data = make_toy_videos(8192, frames=a.frames)
    cfg = TrainConfig(model=a.model, scale="micro", model_overrides=ov, dataset=data.name, steps=a.steps,
                      batch_size=a.bs, lr=a.lr, warmup=100, ema_decay=a.ema, shift=a.shift, out=None, log_every=50,
                      sample_at_end=False)
    if a.image:
        tr = Trainer(cfg, dataset=TensorImageDataset(data.videos[:, 0], data.digits, 10, data.name), progress=False)
    else:
        tr = VideoTrainer(cfg, data, progress=False)
        if a.word_std is not None:
            for m in (tr.model, tr.ema.module):
                torch.nn.init.normal_(m.text_embedder.embedding.weight, std=a.word_std)
    t0 = time.process_time(); res = tr.run(); cpu = time.process_time() - t0
    out = {"device": "cpu, 1 thread", "tag": a.tag, "model": a.model, "ov": ov, "frames": a.frames,
           "image": a.image, "word_std": a.word_std, "steps": a.steps, "lr": a.lr, "train_cpu_s": round(cpu, 1),
           "cpu_s_per_step": round(cpu / a.steps, 4), "loss": round(res.final_loss, 4)}
    for c in ((1.0,) if a.image else (1.0, 3.0)):
        if a.image:
            digits = torch.arange(10).repeat_interleave(8)
            x = generate(tr.ema.module, tr.process, digits, steps=a.sample_steps, method="euler", cfg=c, seed=0)
            caps = [toy_caption(int(d), "left") for d in digits]
            x = x[:, None]
        else:
            caps = [c_ for c_ in all_toy_captions() for _ in range(2)]
            x = sample(tr.ema.module, caps, a.frames, mode="parallel", steps=a.sample_steps, cfg=c,
                       method="euler", generator=torch.Generator().manual_seed(0), process=tr.process)
        t = caption_following(from_model_range(x.float()), caps)
        for m in MEASURES:
            out[f"{m}@{c:g}"] = round(float(t[m].mean()), 3)
    print(json.dumps(out), flush=True)
    Path(a.results).parent.mkdir(parents=True, exist_ok=True)
    with open(a.results, "a") as f:              # one line per run: appending loses nothing
        f.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    run(main)
