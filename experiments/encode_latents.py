"""Encode an image dataset to VAE latents in shards (the input of paper-scale DiT/DiPoM training).

    python experiments/encode_latents.py --dataset folder --data-path imagenet/train \\
        --image-size 256 --vae stabilityai/sd-vae-ft-ema --out data/imagenet256_latents
    python experiments/train.py --scale paper --dataset latents --data-path data/imagenet256_latents ...

--vae is a Hugging Face hub id or a local folder saved with AutoencoderKL.save_pretrained
(add --vae-subfolder vae for full pipeline repositories). The latents are drawn from the
posterior (DiT's preprocessing; --mean for the posterior mean) and multiplied by the scale
factor (the VAE config's scaling_factor, 0.18215 for the SD VAEs). Needs diffusers
(pip install "pomlab[latents]"); weights are fetched from the hub on first use.
"""
import argparse
import json

import _bootstrap  # noqa: F401
import torch
from tqdm.auto import tqdm

from pomlab.cli import ConfigParser, HelpFormatter, run
from pomlab.data import (DATASETS, SD_VAE_SCALE_FACTOR, LatentShardWriter, encode_images,
                         load_dataset, load_vae)


def main(argv=None):
    p = ConfigParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--dataset", default="folder", choices=[d for d in DATASETS if d != "latents"])
    p.add_argument("--data-path", default=None)
    p.add_argument("--split", default="train", choices=["train", "heldout"])
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--vae", default="stabilityai/sd-vae-ft-ema")
    p.add_argument("--vae-subfolder", default=None)
    p.add_argument("--scale-factor", type=float, default=None,
                   help=f"default: the VAE's scaling_factor, else {SD_VAE_SCALE_FACTOR}")
    p.add_argument("--mean", action="store_true", help="posterior mean instead of a sample")
    p.add_argument("--hflip", action="store_true",
                   help="mirror each image left-right with probability 1/2 before encoding "
                   "(DiT's augmentation, drawn once per image from --seed; --dataset folder)")
    p.add_argument("--out", required=True)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--shard-size", type=int, default=4096)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="encode only the first N images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)

    torch.manual_seed(args.seed)                      # the flips (loader items, in order)
    data = load_dataset(args.dataset, root=args.data_path, split=args.split,
                        image_size=args.image_size, channels=3, hflip=args.hflip)
    vae = load_vae(args.vae, args.vae_subfolder).to(args.device).eval()
    scale = args.scale_factor or getattr(vae.config, "scaling_factor", None) or SD_VAE_SCALE_FACTOR
    count = len(data) if args.limit is None else min(args.limit, len(data))
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(data, range(count)),
                                         batch_size=args.batch_size, shuffle=False,
                                         num_workers=args.num_workers)
    writer = LatentShardWriter(args.out, num_classes=data.num_classes, scale_factor=scale,
                               shard_size=args.shard_size, vae=args.vae,
                               image_size=args.image_size, source=data.name,
                               posterior="mean" if args.mean else "sample", hflip=args.hflip,
                               class_names=getattr(data, "class_names", None))
    generator = torch.Generator(args.device).manual_seed(args.seed)
    for images, labels in tqdm(loader, desc="encode", disable=args.no_progress):
        latents = encode_images(vae, images.to(args.device), scale, sample=not args.mean,
                                generator=generator)
        writer.add(latents, labels)
    meta = writer.close()
    print(json.dumps({"out": args.out, "count": count, "latent_shape": list(writer.shape),
                      "scale_factor": scale, "shards": len(writer.shards), "meta": str(meta)}))


if __name__ == "__main__":
    run(main)
