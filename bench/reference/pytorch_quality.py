#!/usr/bin/env python3
"""Trains one of genmod's neural models in PyTorch from genmod's own initial weights, for
`genmod bench quality`, and writes its samples for genmod to score.

Everything that defines the run is genmod's: the architecture (src/neural/), the initial
weights (--init, a safetensors file under genmod's parameter names, batch-norm statistics and
the generator's moving average included), the optimiser settings, the batch size, the number
of steps and the training digits (--images/--labels, NPY files genmod wrote). What differs is
the framework and the random stream (batch order, noise), which is what the comparison is
about.

Writes --out (NPY: float32 samples, N x 1 x 28 x 28; in [0, 1] for the autoencoders, the raw
tanh output in [-1, 1] for the GANs), --out-labels for the conditional GAN (the digit each
sample was asked for: i % 10), and --weights (the trained parameters under genmod's names, so
that genmod computes the VAE's likelihoods with its own code). Prints one JSON line.
"""

import argparse
import json
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

torch.set_num_threads(int(os.environ.get("GENMOD_THREADS", "2")))


def leaky(x):
    return F.leaky_relu(x, 0.2)


class Mlp(nn.Module):
    """genmod's layers::Mlp: Linear layers l0, l1, ..., LeakyReLU(0.2) between them."""

    def __init__(self, sizes):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x, last=None, drop=None):
        """`drop` (a dropout) after every hidden layer's activation, as genmod's
        Mlp::forward_dropout."""
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i + 1 < len(self.layers):
                x = leaky(x)
                if drop is not None:
                    x = drop(x)
        return last(x) if last else x

    def names(self, prefix):
        out = {}
        for i, layer in enumerate(self.layers):
            out[f"{prefix}.l{i}.weight"] = layer.weight
            out[f"{prefix}.l{i}.bias"] = layer.bias
        return out


def linear_names(prefix, layer):
    return {f"{prefix}.weight": layer.weight, f"{prefix}.bias": layer.bias}


def bn_names(prefix, bn):
    return {
        f"{prefix}.weight": bn.weight,
        f"{prefix}.bias": bn.bias,
        f"{prefix}.running_mean": bn.running_mean,
        f"{prefix}.running_var": bn.running_var,
    }


class Autoencoder(nn.Module):
    def __init__(self, h, z, fitted, denoise_std):
        super().__init__()
        self.denoise_std = denoise_std
        self.enc1, self.enc2 = nn.Linear(784, h), nn.Linear(h, z)
        self.dec1, self.dec2 = nn.Linear(z, h), nn.Linear(h, 784)
        self.fitted = (torch.zeros(z), torch.zeros(z, z)) if fitted else None

    def names(self):
        out = {}
        for n in ["enc1", "enc2", "dec1", "dec2"]:
            out.update(linear_names(n, getattr(self, n)))
        return out

    def decode(self, z):
        return self.dec2(F.relu(self.dec1(z)))

    def codes(self, x):
        return self.enc2(F.relu(self.enc1(x)))

    def loss(self, x, step):
        # Denoising as genmod's --denoise: the encoder reads the image plus Gaussian noise,
        # clamped to [0, 1]; the target stays the clean image.
        noisy = (x + self.denoise_std * torch.randn_like(x)).clamp(0, 1) if self.denoise_std > 0 else x
        codes = self.codes(noisy)
        if self.fitted is not None:
            # genmod's fitted code distribution: moving averages of E[z] and E[zz^T].
            with torch.no_grad():
                t = step + 1
                d = min(0.99, (1 + t) / (10 + t))
                z = codes.detach()
                self.fitted[0].mul_(d).add_(z.mean(0), alpha=1 - d)
                self.fitted[1].mul_(d).add_(z.T @ z / z.shape[0], alpha=1 - d)
        logits = self.decode(codes)
        return F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / x.shape[0]

    def sample_codes(self, eps):
        if self.fitted is None:
            return eps
        mean, moment = self.fitted
        cov = moment - torch.outer(mean, mean) + 1e-5 * torch.eye(mean.shape[0])
        return mean + eps @ torch.linalg.cholesky(cov).T


def mixture_codes(codes, components, seed, n):
    """n draws from a mixture of full-covariance Gaussians fitted to the training codes, as
    genmod's --code-sampling mixture (its EM from k-means++, regularised by 1e-4, to a
    change of 1e-3 in the mean log-likelihood; here scikit-learn's, from k-means)."""
    try:
        from sklearn.mixture import GaussianMixture
    except ImportError:
        raise SystemExit("--config: code_sampling = 'mixture' needs scikit-learn (pip install scikit-learn)")
    gm = GaussianMixture(components, covariance_type="full", reg_covar=1e-4, tol=1e-3,
                         max_iter=100, init_params="kmeans", random_state=seed)
    gm.fit(codes.double().numpy())
    draws, _ = gm.sample(n)
    # sample() returns the draws grouped by component; the order carries no meaning here.
    return torch.from_numpy(draws).float()


class Vae(nn.Module):
    def __init__(self, h, z, warmup):
        super().__init__()
        self.enc, self.enc_mu, self.enc_logvar = nn.Linear(784, h), nn.Linear(h, z), nn.Linear(h, z)
        self.dec1, self.dec2 = nn.Linear(z, h), nn.Linear(h, 784)
        self.warmup = warmup

    def names(self):
        out = {}
        for n in ["enc", "enc_mu", "enc_logvar", "dec1", "dec2"]:
            out.update(linear_names(n, getattr(self, n)))
        return out

    def decode(self, z):
        return self.dec2(F.relu(self.dec1(z)))

    def codes(self, x):
        """The posterior means of binarised images."""
        return self.enc_mu(F.relu(self.enc((x > 0.5).float())))

    def loss(self, x, step):
        x = (x > 0.5).float()
        h = F.relu(self.enc(x))
        mu, logvar = self.enc_mu(h), self.enc_logvar(h)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        recon = F.binary_cross_entropy_with_logits(self.decode(z), x, reduction="sum") / x.shape[0]
        kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()
        # genmod's standard warm-up: the KL term's weight rises from 0 to 1.
        weight = min(step / self.warmup, 1.0) if self.warmup > 0 else 1.0
        return recon + weight * kl


class MlpGan(nn.Module):
    def __init__(self, latent, h, classes, projection, dropout):
        super().__init__()
        self.classes, self.projection, self.dropout = classes, projection, dropout
        self.g = Mlp([latent + classes, h, 2 * h, 4 * h, 784])
        if classes and projection:
            self.d = Mlp([784, 2 * h, h])
            self.head, self.embed = nn.Linear(h, 1), nn.Embedding(classes, h)
        else:
            self.d = Mlp([784 + classes, 2 * h, h, 1])

    def g_names(self):
        return self.g.names("g")

    def d_names(self):
        out = self.d.names("d")
        if self.classes and self.projection:
            out.update(linear_names("d.head", self.head))
            out["d.embed.weight"] = self.embed.weight
        return out

    def generate(self, z, y):
        if self.classes:
            z = torch.cat([z, F.one_hot(y, self.classes).to(z.dtype)], 1)
        return self.g(z, torch.tanh)

    def discriminate(self, x, y, drop=None):
        """D's logits; `drop` replaces the dropout of D's hidden activations (a replay of
        genmod's masks in pytorch_lockstep.py), fresh masks with the configured rate if not
        given."""
        if drop is None and self.dropout > 0:
            drop = lambda t: F.dropout(t, self.dropout, training=True)  # noqa: E731
        x = x.flatten(1)
        if not self.classes:
            return self.d(x, drop=drop)
        if not self.projection:
            return self.d(torch.cat([x, F.one_hot(y, self.classes).to(x.dtype)], 1), drop=drop)
        # The body's last layer is hidden here: phi gets the activation and dropout too.
        phi = leaky(self.d(x, drop=drop))
        if drop is not None:
            phi = drop(phi)
        return self.head(phi) + (self.embed(y) * phi).sum(1, keepdim=True)


class Dcgan(nn.Module):
    """genmod's 28x28 DCGAN: 7 -> 14 -> 28, base width h. With `classes`, the conditional
    DCGAN (src/neural/cdcgan.rs): G reads z + one-hot(y), D adds the projection e_y . phi(x)
    to its score."""

    def __init__(self, latent, h, classes, dropout):
        super().__init__()
        self.classes, self.dropout = classes, dropout
        self.project = nn.Linear(latent + classes, 2 * h * 49)
        if classes:
            self.embed = nn.Embedding(classes, 2 * h * 49)
        self.bn0 = nn.BatchNorm2d(2 * h)
        self.convt0, self.bn1 = nn.ConvTranspose2d(2 * h, h, 4, 2, 1), nn.BatchNorm2d(h)
        self.convt1 = nn.ConvTranspose2d(h, 1, 4, 2, 1)
        self.conv0 = nn.Conv2d(1, h, 4, 2, 1)
        self.conv1, self.dbn1 = nn.Conv2d(h, 2 * h, 4, 2, 1), nn.BatchNorm2d(2 * h)
        self.score = nn.Linear(2 * h * 49, 1)
        self.h = h

    def g_names(self):
        out = linear_names("g.project", self.project)
        out.update(bn_names("g.bn0", self.bn0))
        out.update(linear_names("g.convt0", self.convt0))
        out.update(bn_names("g.bn1", self.bn1))
        out.update(linear_names("g.convt1", self.convt1))
        return out

    def d_names(self):
        out = linear_names("d.conv0", self.conv0)
        out.update(linear_names("d.conv1", self.conv1))
        out.update(bn_names("d.bn1", self.dbn1))
        out.update(linear_names("d.score", self.score))
        if self.classes:
            out["d.embed.weight"] = self.embed.weight
        return out

    def generate(self, z, y):
        if self.classes:
            z = torch.cat([z, F.one_hot(y, self.classes).to(z.dtype)], 1)
        x = self.project(z).view(-1, 2 * self.h, 7, 7)
        x = F.relu(self.bn0(x))
        x = F.relu(self.bn1(self.convt0(x)))
        return torch.tanh(self.convt1(x))

    def discriminate(self, x, y):
        drop = (lambda t: F.dropout(t, self.dropout, training=True)) if self.dropout > 0 else (lambda t: t)
        x = drop(leaky(self.conv0(x.view(-1, 1, 28, 28))))
        phi = drop(leaky(self.dbn1(self.conv1(x)))).flatten(1)
        logit = self.score(phi)
        if self.classes:
            logit = logit + (self.embed(y) * phi).sum(1, keepdim=True)
        return logit


def trainable(named):
    return [p for n, p in sorted(named.items()) if not n.endswith(("running_mean", "running_var"))]


def load_init(named, path):
    init = load_file(path)
    missing = sorted(set(named) - set(init))
    if missing:
        raise SystemExit(f"{path}: no initial value for {missing[:5]}")
    with torch.no_grad():
        for n, p in named.items():
            if tuple(init[n].shape) != tuple(p.shape):
                raise SystemExit(f"{path}: {n} has shape {tuple(init[n].shape)}, expected {tuple(p.shape)}")
            p.copy_(init[n])
    return init


def refuse_unsupported(model, cfg):
    """Settings this script does not implement: stop rather than train something else."""
    # The autoencoders' options; the GANs' configurations do not use these fields.
    expected = {"recon": "bce", "tied": False, "denoise_std": 0.0, "l2": 0.0, "kl_schedule": "standard"}
    for key, value in expected.items() if model in ("autoencoder", "vae") else []:
        if model == "autoencoder" and key == "denoise_std":
            continue
        if cfg.get(key, value) != value:
            raise SystemExit(f"--config: {key} = {cfg[key]!r} is not implemented here (expected {value!r})")
    sampling = cfg.get("code_sampling", "standard-normal")
    allowed = {"autoencoder": ("standard-normal", "fitted-gaussian", "mixture"), "vae": ("standard-normal", "mixture")}
    if model in allowed and sampling not in allowed[model]:
        raise SystemExit(f"--config: code_sampling = {sampling!r} is not implemented here for the {model}")
    if model == "cgan" and cfg.get("conditioning") not in ("concat", "projection"):
        raise SystemExit(f"--config: conditioning = {cfg.get('conditioning')!r} is not implemented here")
    if model == "cdcgan" and cfg.get("conditioning") != "projection":
        raise SystemExit("--config: the conditional DCGAN reads the label by projection only")
    if cfg.get("g_loss", "non-saturating") not in ("non-saturating", "saturating"):
        raise SystemExit(f"--config: g_loss = {cfg['g_loss']!r} is not implemented here")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, choices=["autoencoder", "vae", "gan", "dcgan", "cgan", "cdcgan"])
    ap.add_argument("--init", required=True)
    ap.add_argument("--images", required=True)
    ap.add_argument("--labels", required=True)
    ap.add_argument("--config", required=True, help="genmod's NeuralConfig as JSON")
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--batch-size", type=int, required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--samples", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--out-labels")
    ap.add_argument("--weights", required=True)
    a = ap.parse_args()
    cfg = json.loads(a.config)
    refuse_unsupported(a.model, cfg)
    torch.manual_seed(a.seed)
    images = torch.from_numpy(np.load(a.images)).float().reshape(-1, 784) / 255.0
    labels = torch.from_numpy(np.load(a.labels)).long()
    gan = a.model in ("gan", "dcgan", "cgan", "cdcgan")
    if gan:
        images = images * 2 - 1
    h, latent = cfg["hidden"], cfg["latent_dim"]
    # The MLP GAN and the DCGAN conditioned on k-means clusters of the training images
    # (genmod's --clusters): the clusters come with the initial weights.
    clusters = cfg.get("clusters", 0) if a.model in ("gan", "dcgan") else 0
    if a.model == "autoencoder":
        m = Autoencoder(h, latent, cfg.get("code_sampling") == "fitted-gaussian", cfg.get("denoise_std", 0.0))
    elif a.model == "vae":
        m = Vae(h, latent, cfg["warmup_steps"])
    elif a.model in ("dcgan", "cdcgan"):
        m = Dcgan(latent, h, 10 if a.model == "cdcgan" else clusters, cfg.get("d_dropout", 0.0))
    else:
        classes = 10 if a.model == "cgan" else clusters
        m = MlpGan(latent, h, classes, cfg.get("conditioning") == "projection", cfg.get("d_dropout", 0.0))
    adam = dict(lr=cfg["lr"], betas=(cfg["beta1"], cfg.get("beta2", 0.999)), eps=1e-8)
    if gan:
        g_named, d_named = m.g_names(), m.d_names()
        named = {**g_named, **d_named}
        init = load_init(named, a.init)
        shares = None
        if clusters:
            centroids, shares = init["clusters.centroids"].float(), init["clusters.shares"].float()
            if not bool((shares > 0).all()):
                raise SystemExit(f"{a.init}: the clusters were not fitted (a share is zero)")
            # Each image's cluster: its nearest centroid, in the [-1, 1] pixels G draws.
            labels = torch.cdist(images, centroids).argmin(1)
        opt_g, opt_d = torch.optim.Adam(trainable(g_named), **adam), torch.optim.Adam(trainable(d_named), **adam)
        g_params = {n: p for n, p in g_named.items() if not n.endswith(("running_mean", "running_var"))}
        decay = cfg.get("ema_decay", 0.0)
        ema = {n: init.get("ema." + n, p.detach().clone()).clone() for n, p in g_params.items()} if decay > 0 else None
    else:
        named = m.names()
        load_init(named, a.init)
        opt = torch.optim.Adam(trainable(named), **adam)
    n_train, bs = images.shape[0], a.batch_size
    per_epoch = n_train // bs
    order, t0, g_steps = None, time.perf_counter(), 0
    for step in range(a.steps):
        if step % per_epoch == 0:
            order = torch.randperm(n_train)
        idx = order[(step % per_epoch) * bs:(step % per_epoch + 1) * bs]
        x, y = images[idx], labels[idx]
        if not gan:
            loss = m.loss(x, step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            continue
        # Algorithm 1 as genmod's Adversarial: a D step every step (one-sided label
        # smoothing: real images against the target 1 - s), a G step every k-th.
        z = torch.randn(bs, latent)
        with torch.no_grad():
            fake = m.generate(z, y if m.classes else None)
        real_logits, s = m.discriminate(x, y), cfg.get("label_smoothing", 0.0)
        real_term = (1 - s) * F.softplus(-real_logits) + s * F.softplus(real_logits)
        d_loss = real_term.mean() + F.softplus(m.discriminate(fake, y)).mean()
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        k = cfg.get("k", 1)
        if step % k != k - 1:
            continue
        z = torch.randn(bs, latent)
        if shares is not None:
            gy = torch.multinomial(shares, bs, replacement=True)
        else:
            gy = torch.randint(0, m.classes, (bs,)) if m.classes else None
        fake_logits = m.discriminate(m.generate(z, gy), gy)
        if cfg.get("g_loss", "non-saturating") == "saturating":
            g_loss = -F.softplus(fake_logits).mean()
        else:
            g_loss = F.softplus(-fake_logits).mean()
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        g_steps += 1
        if ema is not None:
            # genmod's warm-up of the decay counts generator steps (its Adam's t).
            t = g_steps
            d = min(decay, (1 + t) / (10 + t))
            with torch.no_grad():
                for n, p in g_params.items():
                    ema[n].mul_(d).add_(p.detach(), alpha=1 - d)
    seconds = time.perf_counter() - t0
    m.eval()
    with torch.no_grad():
        if gan and ema is not None:
            for n, p in g_params.items():
                p.copy_(ema[n])
        z = torch.randn(a.samples, latent)
        y = torch.arange(a.samples) % 10
        if gan and shares is not None:
            y = torch.multinomial(shares, a.samples, replacement=True)
        if gan:
            out = m.generate(z, y if m.classes else None)
        elif cfg.get("code_sampling") == "mixture":
            codes = m.codes(images)
            out = torch.sigmoid(m.decode(mixture_codes(codes, cfg.get("code_components", 30), a.seed, a.samples)))
        elif a.model == "autoencoder":
            out = torch.sigmoid(m.decode(m.sample_codes(z)))
        else:
            out = torch.sigmoid(m.decode(z))
        np.save(a.out, out.reshape(-1, 1, 28, 28).numpy().astype(np.float32))
        if a.out_labels:
            np.save(a.out_labels, y.numpy().astype(np.int64))
        save_file({n: p.detach().contiguous() for n, p in named.items()}, a.weights)
    print(json.dumps({"model": a.model, "steps": a.steps, "seconds": seconds}))


if __name__ == "__main__":
    main()
