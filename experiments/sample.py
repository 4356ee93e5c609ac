"""Draw a labelled sample set for FID: PNG folder + samples_N.npz (arr_0, uint8 NHWC) as ADM's
evaluator (openai/guided-diffusion evaluations/evaluator.py) reads it; sharded over torchrun ranks,
resumable.

    python experiments/sample.py --run runs/s2 --num-samples 500 --out samples/s2      # micro, CPU
    torchrun --nproc_per_node 2 experiments/sample.py --run-dir runs/s2 --num-samples 500 --out samples/s2
    torchrun --nproc_per_node 8 experiments/sample.py --dit-checkpoint DiT-XL-2-256x256.pt \\
        --vae stabilityai/sd-vae-ft-ema --num-samples 50000 --cfg 1.5 --guided-channels 3 \\
        --sample-method ddpm --sample-steps 250 --out samples/dit_xl2_cfg1.5

Sample i has class i % num_classes and belongs to block i // block_size, whose noise comes from
its own seed (seed, block): the set depends on --seed and --block-size, never on the number of
processes. Blocks go round-robin to the ranks; each finished block is one file under
OUT/blocks/ (written atomically, with its PNGs first), so a rerun of the same command skips what
is there and completes the set. Rank 0 then writes OUT/samples_N.npz (grey images repeated to
RGB: the evaluator expects 3 channels). OUT/sample.json records everything that made the set;
a rerun with other settings into the same OUT fails. The sampler flags carry TrainConfig's field
names (--cfg, --cfg-guidance, --sample-steps, --sample-method); the older --guidance, --steps and
--method still work. See docs/metrics.md.
"""
import argparse
import json
from pathlib import Path

import _bootstrap  # noqa: F401

import numpy as np
import torch
import torch.distributed as dist

from pomlab.cli import ConfigParser, HelpFormatter, run
from pomlab.diffusion import CONVENTIONS, GaussianDiffusion, generate, guidance_label
from pomlab.io import atomic_write, atomic_write_json

BLOCKS_DIR, IMAGES_DIR, SETTINGS = "blocks", "images", "sample.json"


def parse_args(argv=None) -> argparse.Namespace:
    p = ConfigParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", "--run-dir", dest="run",
                     help="a pomlab training run folder (or checkpoint file); EMA weights. Under "
                     "torchrun write --run-dir (torchrun reads --run as its own --run-path)")
    src.add_argument("--dit-checkpoint", help="DiT's released weights (e.g. DiT-XL-2-256x256.pt)")
    p.add_argument("--num-samples", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--cfg", type=float, default=None,
                   help="guidance scale (default: 1.5 for --dit-checkpoint, else 1 = none)")
    p.add_argument("--cfg-guidance", "--guidance", dest="cfg_guidance", choices=CONVENTIONS,
                   default="standard",
                   help="how --cfg reads: standard u + w(c - u), authors c + w(c - u)")
    p.add_argument("--guided-channels", type=int, default=None,
                   help="guide only the first K channels (DiT's forward_with_cfg: 3)")
    p.add_argument("--sample-steps", "--steps", dest="sample_steps", type=int, default=None,
                   help="sampler steps (default: 250 for --dit-checkpoint, else the run's)")
    p.add_argument("--sample-method", "--method", dest="sample_method", default=None,
                   help="sampler (default: ddpm for --dit-checkpoint, else the run's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--block-size", type=int, default=32, help="samples per seeded block/file")
    p.add_argument("--vae", default=None, help="VAE for latent models (hub id or local folder; "
                   "default: the one the run's latent set names)")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    for name in ("num_samples", "block_size", "sample_steps"):
        value = getattr(args, name)
        if value is not None and value < 1:
            fail(f"--{name.replace('_', '-')} must be a positive int, got {value}")
    if args.guided_channels is not None and args.guided_channels < 1:
        fail(f"--guided-channels must be a positive int, got {args.guided_channels}")
    if args.seed < 0:
        fail(f"--seed must be >= 0, got {args.seed}")
    return args


def fail(message: str):
    """Bad input: pomlab.cli.run prints it as one line and exits with status 2."""
    raise ValueError(message)


# --- the model and how its samples become pixels ---------------------------------------------

def load_source(args, device):
    """(model, process, to_pixels, settings) for --run or --dit-checkpoint."""
    from pomlab import models
    from pomlab.data.images import from_model_range
    from pomlab.train import load_trained

    if args.dit_checkpoint:
        model = models.load_dit_checkpoint(args.dit_checkpoint).to(device)
        process, kind = GaussianDiffusion(), "latents"
        defaults = dict(cfg=1.5, sample_steps=250, sample_method="ddpm")
        source = {"dit_checkpoint": str(Path(args.dit_checkpoint).resolve())}
        vae = args.vae
        if vae is None:
            fail("--dit-checkpoint needs --vae (DiT used stabilityai/sd-vae-ft-ema or -mse)")
    else:
        model, process, config, step = load_trained(args.run, device=device)
        defaults = dict(cfg=1.0, sample_steps=config.sample_steps,
                        sample_method=config.sample_method or process.default_method)
        source = {"run": str(Path(args.run).resolve()), "step": step, "model": model.label}
        kind = "latents" if config.dataset == "latents" else "pixels"
        vae = args.vae
        if kind == "latents" and vae is None:
            meta = json.loads((Path(config.data_path) / "meta.json").read_text())
            vae = meta.get("vae") or fail("the run's latent set names no VAE: pass --vae")
    if kind == "latents":
        from pomlab.data.latents import decode_latents, load_vae
        decoder = load_vae(vae).to(device).eval()

        def to_pixels(x):
            return (decode_latents(decoder, x.to(device)).float().cpu() + 1) / 2
        source["vae"] = vae
    else:
        def to_pixels(x):
            return from_model_range(x)
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.sample_method not in process.methods:
        fail(f"--sample-method must be one of {process.methods} for this model, "
             f"got {args.sample_method!r}")
    return model.eval(), process, to_pixels, source


def to_uint8(images01: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [0, 1] -> (N, H, W, C) uint8, rounding to the nearest level."""
    x = (images01.clamp(0, 1) * 255 + 0.5).floor().to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().numpy()


def save_pngs(folder: Path, start: int, images: np.ndarray) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for offset, image in enumerate(images):
        path = folder / f"{start + offset:06d}.png"
        # in place: a block's PNGs count only once its .npy is written (atomically, after them)
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(path, format="PNG")


# --- the run ---------------------------------------------------------------------------------

def check_settings(out: Path, settings: dict) -> None:
    path = out / SETTINGS
    if path.is_file():
        old = json.loads(path.read_text())
        changed = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
        if changed:
            fail(f"{out} holds a sample set made with other settings ({', '.join(changed)}); "
                 "use another --out")
    else:
        atomic_write_json(path, settings)


def main(argv=None) -> Path | None:
    from pomlab.train import distributed_env, join_process_group, pick_device
    from tqdm.auto import tqdm

    args = parse_args(argv)
    rank, world, local_rank = distributed_env()
    device = pick_device(args.device, local_rank)
    owns_group = join_process_group(device)
    try:
        try:
            model, process, to_pixels, source = load_source(args, device)
        except TypeError as error:       # a checkpoint of the wrong kind
            fail(str(error).splitlines()[0])
        out = Path(args.out).expanduser()
        n, block = args.num_samples, args.block_size
        settings = {**source, "num_samples": n, "block_size": block, "seed": args.seed,
                    "cfg": args.cfg, "guidance": args.cfg_guidance,
                    "guided_channels": args.guided_channels, "steps": args.sample_steps,
                    "method": args.sample_method, "labels": "i % num_classes",
                    "guidance_label": guidance_label(args.cfg, args.cfg_guidance,
                                                     args.guided_channels)}
        if rank == 0:
            check_settings(out, settings)
        if world > 1:
            dist.barrier()
            if rank != 0:
                check_settings(out, settings)
        blocks = [(b, b * block, min(n, (b + 1) * block)) for b in range((n + block - 1) // block)]
        folder = out / BLOCKS_DIR
        mine = [blk for blk in blocks[rank::world] if not (folder / f"{blk[0]:06d}.npy").is_file()]
        bar = tqdm(total=sum(stop - start for _, start, stop in mine), unit="img",
                   disable=args.no_progress or rank != 0,
                   desc=f"sampling ({world} process{'es' if world > 1 else ''})")
        for index, start, stop in mine:
            labels = torch.arange(start, stop) % model.num_classes
            x = generate(model, process, labels, steps=args.sample_steps, method=args.sample_method,
                         cfg=args.cfg, guidance=args.cfg_guidance,
                         guided_channels=args.guided_channels,
                         seed=args.seed * 1_000_003 + index, batch_size=len(labels))
            images = to_uint8(to_pixels(x))
            save_pngs(out / IMAGES_DIR, start, images)
            atomic_write(folder / f"{index:06d}.npy", lambda handle: np.save(handle, images))
            bar.update(stop - start)
        bar.close()
        if world > 1:
            dist.barrier()
        if rank != 0:
            return None
        arrays = [np.load(folder / f"{b:06d}.npy") for b, _, _ in blocks]
        samples = np.concatenate(arrays)
        if samples.shape[-1] == 1:
            samples = np.repeat(samples, 3, axis=-1)
        path = out / f"samples_{n}.npz"
        atomic_write(path, lambda handle: np.savez(handle, arr_0=samples))
        print(f"{n} samples {samples.shape[1]}x{samples.shape[2]} ({settings['guidance_label']}, "
              f"{args.sample_method} {args.sample_steps} steps, seed {args.seed}) -> {path} and "
              f"{out / IMAGES_DIR}/")
        return path
    finally:
        if owns_group and dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    run(main)
