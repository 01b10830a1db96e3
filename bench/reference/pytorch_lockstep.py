#!/usr/bin/env python3
"""Replays genmod's recorded GAN steps in PyTorch, for `genmod bench lockstep`.

genmod wrote into --dir: its initial weights (init.safetensors), every random input of its
run (x.npy: the batches as tanh-range pixels; z_d.npy and z_g.npy: the noise of the
discriminator's and of the generator's step; labels.npy and g_labels.npy for the conditional
GAN; masks.npy, for the MLP GANs with dropout: 1 where dropout keeps an activation, per
step D's two hidden activations over the 2n rows of its step, then G's step's two over n
rows), its losses (losses.npy) and
its weights after some steps (genmod-K.safetensors). This script runs the same steps twice,
in float32 and in float64, with the model classes of pytorch_quality.py, and prints one JSON
line: the first step's losses and, per checkpoint, how far the weights are apart.
"""

import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pytorch_quality import Dcgan, MlpGan, load_init, trainable  # noqa: E402

torch.set_num_threads(int(os.environ.get("GENMOD_THREADS", "2")))


class Run:
    """One replay: the model, its optimisers and the generator's moving average."""

    def __init__(self, model, cfg, classes, init_path, dtype):
        h, latent = cfg["hidden"], cfg["latent_dim"]
        self.dtype = dtype
        if model in ("dcgan", "cdcgan"):
            self.m = Dcgan(latent, h, classes, cfg.get("d_dropout", 0.0))
        else:
            self.m = MlpGan(latent, h, classes, cfg.get("conditioning") == "projection", cfg.get("d_dropout", 0.0))
        self.convolutional = model in ("dcgan", "cdcgan")
        g_named, d_named = self.m.g_names(), self.m.d_names()
        init = load_init({**g_named, **d_named}, init_path)
        self.m.to(dtype)
        g_named, d_named = self.m.g_names(), self.m.d_names()
        self.named = {**g_named, **d_named}
        adam = dict(lr=cfg["lr"], betas=(cfg["beta1"], cfg.get("beta2", 0.999)), eps=1e-8)
        self.opt_g = torch.optim.Adam(trainable(g_named), **adam)
        self.opt_d = torch.optim.Adam(trainable(d_named), **adam)
        self.g_params = g_named
        self.decay = cfg.get("ema_decay", 0.0)
        self.ema = {n: init["ema." + n].to(dtype).clone() for n in g_named} if self.decay > 0 else {}

    def weights(self):
        """Everything genmod saves of the model: the parameters, batch norm's running
        statistics (part of `named` for the DCGANs) and the generator's moving average."""
        out = {n: p.detach() for n, p in self.named.items()}
        out.update({"ema." + n: v for n, v in self.ema.items()})
        return out


def masked(masks, p):
    """A dropout that applies the next of `masks` (inverted dropout, as genmod's)."""
    queue = list(masks)
    return lambda t: t * queue.pop(0) / (1.0 - p)


def distance(a, b):
    """The median over the tensors of b of max |a - b| / max |b|."""
    rel = []
    for n, ref in b.items():
        ref = ref.double()
        rel.append((a[n].double() - ref).abs().max().item() / max(ref.abs().max().item(), 1e-30))
    return float(np.median(rel))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, choices=["gan", "cgan", "dcgan", "cdcgan"])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--config", required=True, help="genmod's NeuralConfig as JSON")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--checkpoints", required=True, help="steps after which to compare, comma-separated")
    a = ap.parse_args()
    cfg = json.loads(a.config)
    for key, value in {"k": 1, "g_loss": "non-saturating"}.items():
        if cfg.get(key, value) != value:
            raise SystemExit(f"--config: {key} = {cfg[key]!r} is not replayed here (expected {value!r})")
    d = a.dir
    classes = 10 if a.model in ("cgan", "cdcgan") else 0
    x_all = np.load(f"{d}/x.npy")
    z_d, z_g = np.load(f"{d}/z_d.npy"), np.load(f"{d}/z_g.npy")
    labels = np.load(f"{d}/labels.npy") if classes else None
    g_labels = np.load(f"{d}/g_labels.npy") if classes else None
    losses = np.load(f"{d}/losses.npy")
    p = cfg.get("d_dropout", 0.0)
    if p > 0 and a.model in ("dcgan", "cdcgan"):
        raise SystemExit("--config: dropout in the convolutional D is not replayed here")
    masks = np.load(f"{d}/masks.npy") if p > 0 else None
    steps, bs = x_all.shape[0], x_all.shape[1]
    h = cfg["hidden"]
    checkpoints = [int(s) for s in a.checkpoints.split(",")]
    runs = [Run(a.model, cfg, classes, f"{d}/init.safetensors", dt) for dt in (torch.float32, torch.float64)]
    s = cfg.get("label_smoothing", 0.0)
    first, distances = None, []
    for step in range(steps):
        d_masks, g_masks = [], []
        if masks is not None:
            row, o = masks[step].astype(np.float32), 0
            for rows, target in ((2 * bs, d_masks), (bs, g_masks)):
                for width in (2 * h, h):
                    target.append(row[o:o + rows * width].reshape(rows, width))
                    o += rows * width
        step_losses = []
        for run in runs:
            t = lambda v: torch.from_numpy(np.asarray(v)).to(run.dtype)  # noqa: E731
            m = run.m
            x, zd, zg = t(x_all[step]), t(z_d[step]), t(z_g[step])
            y = torch.from_numpy(labels[step]) if classes else None
            gy = torch.from_numpy(g_labels[step]) if classes else None
            drop_d = masked([t(v) for v in d_masks], p) if masks is not None else None
            drop_g = masked([t(v) for v in g_masks], p) if masks is not None else None
            with torch.no_grad():
                fake = m.generate(zd, y)
            if run.convolutional:
                # With batch norm genmod passes the real batch, then the fake one, each
                # normalised by its own statistics.
                real_logits, fake_logits = m.discriminate(x, y), m.discriminate(fake, y)
            else:
                # genmod's D step: the real and the fake batch as one batch of 2n rows.
                both = m.discriminate(torch.cat([x, fake]), torch.cat([y, y]) if classes else None, drop_d)
                real_logits, fake_logits = both[:bs], both[bs:]
            real_term = (1 - s) * F.softplus(-real_logits) + s * F.softplus(real_logits)
            d_loss = real_term.mean() + F.softplus(fake_logits).mean()
            run.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            run.opt_d.step()
            g_fake = m.generate(zg, gy)
            g_logits = m.discriminate(g_fake, gy) if run.convolutional else m.discriminate(g_fake, gy, drop_g)
            g_loss = F.softplus(-g_logits).mean()
            run.opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            run.opt_g.step()
            if run.ema:
                decay = min(run.decay, (2 + step) / (11 + step))
                with torch.no_grad():
                    for n, p_ in run.g_params.items():
                        run.ema[n].mul_(decay).add_(p_.detach(), alpha=1 - decay)
            step_losses.append((d_loss.item(), g_loss.item()))
        if step == 0:
            first = {
                "genmod_d": float(losses[0, 0]),
                "genmod_g": float(losses[0, 1]),
                "pytorch_d": step_losses[0][0],
                "pytorch_g": step_losses[0][1],
            }
        if step + 1 in checkpoints:
            ref = load_file(f"{d}/genmod-{step + 1}.safetensors")
            w32, w64 = runs[0].weights(), runs[1].weights()
            ref = {n: v for n, v in ref.items() if n in w32}
            distances.append({
                "step": step + 1,
                "genmod_f32": distance(w32, ref),
                "genmod_f64": distance(w64, ref),
                "f32_f64": distance(w32, {n: w64[n] for n in ref}),
            })
    print(json.dumps({"model": a.model, "seed": a.seed, "first": first, "distances": distances}))


if __name__ == "__main__":
    main()
