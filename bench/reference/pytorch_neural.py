#!/usr/bin/env python3
"""PyTorch training throughput for the architectures of src/neural/, as JSON on stdout.

Same nets, losses, optimiser settings and batch size as genmod's models; the data are the
embedded digits (src/data/mnist10k); torch runs on GENMOD_THREADS CPU threads (default 2).
Images per second at steady state: a few warm-up steps, then the median of timed blocks.
Sampling: images per second decoded from noise by the (untrained) generators, no gradients.
With --first-grid: seconds from the start of this script (before `import torch`) to the
first 8x8 grid of VAE samples in memory, printed alone.
Layers (layer_d1, ..., layer_g2): seconds of one forward and backward pass through one of the
DCGAN's layers, as genmod's DCGAN_LAYERS.
With --only KEY (a key of the JSON: vae, autoencoder, gan, cgan, dcgan, sample_vae, ...):
that workload alone, so that a caller can time each one right after its own.
`genmod bench neural` runs this script itself, one workload at a time next to genmod's, so
that both sides of each ratio are measured within seconds of each other.
"""

import gzip
import json
import os
import sys
import time
from pathlib import Path

T0 = time.perf_counter()  # before torch is imported: the first-grid timing starts here
threads = int(os.environ.get("GENMOD_THREADS", "2"))
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(threads)
torch.manual_seed(0)
ROOT = Path(__file__).resolve().parents[2]


def digits():
    raw = gzip.open(ROOT / "src/data/mnist10k/train-images-idx3-ubyte.gz").read()
    x = torch.frombuffer(bytearray(raw[16:]), dtype=torch.uint8).reshape(-1, 1, 28, 28)
    y = torch.frombuffer(bytearray(gzip.open(ROOT / "src/data/mnist10k/train-labels-idx1-ubyte.gz").read()[8:]), dtype=torch.uint8)
    return x.float() / 255.0, y.long()


X, Y = digits()


def batches(bs, scale):
    while True:
        idx = torch.randint(0, X.shape[0], (bs,))
        x = X[idx]
        yield (x * 2 - 1 if scale == "pm1" else x), Y[idx]


def mlp(sizes):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i + 2 < len(sizes):
            layers.append(nn.LeakyReLU(0.2))
    return nn.Sequential(*layers)


class Vae(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc, self.mu, self.lv = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20)
        self.d1, self.d2 = nn.Linear(20, 400), nn.Linear(400, 784)

    def loss(self, x):
        x = (x.flatten(1) > 0.5).float()
        h = F.relu(self.enc(x))
        mu, lv = self.mu(h), self.lv(h)
        z = mu + torch.exp(0.5 * lv) * torch.randn_like(mu)
        logits = self.d2(F.relu(self.d1(z)))
        rec = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / x.shape[0]
        kl = (-0.5 * (1 + lv - mu.pow(2) - lv.exp()).sum(1)).mean()
        return rec + kl


class Ae(nn.Module):
    def __init__(self):
        super().__init__()
        self.e1, self.e2, self.d1, self.d2 = nn.Linear(784, 256), nn.Linear(256, 32), nn.Linear(32, 256), nn.Linear(256, 784)

    def loss(self, x):
        x = x.flatten(1)
        logits = self.d2(F.relu(self.d1(self.e2(F.relu(self.e1(x))))))
        return F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / x.shape[0]


def dcgan():
    g = nn.Sequential(
        nn.Linear(100, 128 * 49), nn.Unflatten(1, (128, 7, 7)), nn.BatchNorm2d(128), nn.ReLU(),
        nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.ConvTranspose2d(64, 1, 4, 2, 1), nn.Tanh(),
    )
    d = nn.Sequential(
        nn.Conv2d(1, 64, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(64, 128, 4, 2, 1), nn.BatchNorm2d(128), nn.LeakyReLU(0.2),
        nn.Flatten(), nn.Linear(128 * 49, 1),
    )
    return g, d


def gan_step(g, d, og, od, x, y, cond):
    n = x.shape[0]
    onehot = F.one_hot(y, 10).float() if cond else None
    def G(z, oh):
        return g(torch.cat([z, oh], 1) if cond else z)
    def D(img, oh):
        v = img.flatten(1) if not isinstance(d[0], nn.Conv2d) else img
        return d(torch.cat([v, oh], 1) if cond else v)
    z = torch.randn(n, 100)
    fake = G(z, onehot).detach()
    if not cond and isinstance(d[0], nn.Conv2d):
        fake = fake.view(n, 1, 28, 28)
    real_logits, fake_logits = D(x, onehot), D(fake, onehot)
    ld = F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    od.zero_grad(set_to_none=True)
    ld.backward()
    od.step()
    z = torch.randn(n, 100)
    oh2 = F.one_hot(torch.randint(0, 10, (n,)), 10).float() if cond else None
    lg = F.softplus(-D(G(z, oh2), oh2)).mean()
    og.zero_grad(set_to_none=True)
    lg.backward()
    og.step()


def throughput(step, bs, scale, steps):
    it = batches(bs, scale)
    for _ in range(5):
        step(*next(it))
    rates = []
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(steps):
            step(*next(it))
        rates.append(bs * steps / (time.perf_counter() - t))
    return sorted(rates)[1]


def sampling(gen, latent, n=1000, rounds=5):
    with torch.no_grad():
        gen(torch.randn(n, latent)).numpy()
        rates = []
        for _ in range(3):
            t = time.perf_counter()
            for _ in range(rounds):
                gen(torch.randn(n, latent)).numpy()
            rates.append(n * rounds / (time.perf_counter() - t))
    return sorted(rates)[1]


def first_grid():
    vae = Vae()
    with torch.no_grad():
        x = torch.sigmoid(vae.d2(F.relu(vae.d1(torch.randn(64, 20))))).reshape(8, 8, 28, 28)
        grid = (x.permute(0, 2, 1, 3).reshape(8 * 28, 8 * 28) * 255).to(torch.uint8).numpy()
    assert grid.shape == (224, 224)
    return time.perf_counter() - T0


def train_vae_like(model):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(x, y):
        loss = model.loss(x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return throughput(step, 128, "01", 40)


def train_gan(cond):
    extra = 10 if cond else 0
    g = nn.Sequential(mlp([100 + extra, 256, 512, 1024, 784]), nn.Tanh())
    d = mlp([784 + extra, 512, 256, 1])
    og = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    od = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    return throughput(lambda x, y: gan_step(g, d, og, od, x, y, cond), 128, "pm1", 20)


def train_dcgan():
    g, d = dcgan()
    og = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    od = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    return throughput(lambda x, y: gan_step(g, d, og, od, x, y, False), 128, "pm1", 4)


def sample_vae():
    vae = Vae().eval()
    return sampling(lambda z: torch.sigmoid(vae.d2(F.relu(vae.d1(z)))), 20)


def sample_gan():
    g = nn.Sequential(mlp([100, 256, 512, 1024, 784]), nn.Tanh()).eval()
    return sampling(g, 100)


def sample_cgan():
    gc = nn.Sequential(mlp([110, 256, 512, 1024, 784]), nn.Tanh()).eval()
    labels = F.one_hot(torch.arange(1000) % 10, 10).float()
    return sampling(lambda z: gc(torch.cat([z, labels], 1)), 100)


def sample_dcgan():
    gd, _ = dcgan()
    gd.eval()
    return sampling(gd, 100, rounds=2)


def dcgan_layer(key, reps=15):
    """Median seconds of one forward and backward pass (input, weight and bias gradients,
    from the sum of the output) through one of the DCGAN's layers, in training mode: the
    same layers and input shapes as DCGAN_LAYERS in src/bench/neural.rs."""
    layers = {
        "layer_d1": (nn.Sequential(nn.Conv2d(1, 64, 4, 2, 1), nn.LeakyReLU(0.2)), (128, 1, 28, 28)),
        "layer_d2": (nn.Conv2d(64, 128, 4, 2, 1), (128, 64, 14, 14)),
        "layer_dbn": (nn.Sequential(nn.BatchNorm2d(128), nn.LeakyReLU(0.2)), (128, 128, 7, 7)),
        "layer_g1": (nn.ConvTranspose2d(128, 64, 4, 2, 1), (128, 128, 7, 7)),
        "layer_gbn": (nn.Sequential(nn.BatchNorm2d(64), nn.ReLU()), (128, 64, 14, 14)),
        "layer_g2": (nn.Sequential(nn.ConvTranspose2d(64, 1, 4, 2, 1), nn.Tanh()), (128, 64, 14, 14)),
    }
    layer, shape = layers[key]
    layer.train()
    x = torch.randn(shape, requires_grad=True)

    def once():
        layer(x).sum().backward()

    once()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        once()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


WORKLOADS = {
    "vae": lambda: train_vae_like(Vae()),
    "autoencoder": lambda: train_vae_like(Ae()),
    "gan": lambda: train_gan(False),
    "cgan": lambda: train_gan(True),
    "dcgan": train_dcgan,
    "sample_vae": sample_vae,
    "sample_gan": sample_gan,
    "sample_cgan": sample_cgan,
    "sample_dcgan": sample_dcgan,
    **{k: (lambda k=k: dcgan_layer(k)) for k in ["layer_d1", "layer_d2", "layer_dbn", "layer_g1", "layer_gbn", "layer_g2"]},
}


def main():
    if "--first-grid" in sys.argv:
        print(first_grid())
        return
    keys = list(WORKLOADS)
    if "--only" in sys.argv:
        i = sys.argv.index("--only") + 1
        if i >= len(sys.argv) or sys.argv[i] not in WORKLOADS:
            sys.exit(f"--only expects one of: {', '.join(WORKLOADS)}")
        keys = [sys.argv[i]]
    out = {"torch": torch.__version__, "threads": threads, "batch": 128}
    for key in keys:
        out[key] = WORKLOADS[key]()
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
