#!/usr/bin/env python3
"""PyTorch's side of `genmod bench neural`: the architectures of src/neural/ timed on CPU.

Same nets, losses, optimiser settings and batch sizes as genmod's workloads
(src/bench/neural.rs); the data are the embedded digits (src/data/mnist10k) for 28x28 models
and fixed uniform noise for the 3-channel 32x32 and 64x64 DCGANs, whose speed does not depend
on the pixels. torch runs on GENMOD_THREADS CPU threads (default 2).

Modes:
- `--serve`: reads one JSON request per line on stdin and answers each with one JSON line on
  stdout. genmod keeps this process open and alternates its own measurements with this
  one's (genmod, PyTorch, genmod, PyTorch, ...), so that a neighbour's load on a shared
  machine falls on both sides of a ratio. Requests:
    {"op": "train", "model": M, "batch": B, "steps": S, "shape": [C, H, W], "data": DIR}
        -> images per second over S steps after 3 warm-up steps, a freshly built model;
           "data" (optional) names a folder of MNIST-format files to draw the batches from;
    {"op": "sample", "model": M, "n": N, "rounds": R, "shape": [C, H, W]}
        -> images per second decoding N codes R times (no gradients) after one warm-up;
    {"op": "layer", "key": K, "reps": R}
        -> median seconds of one forward and backward pass through a DCGAN layer.
  Each answer is {"value": ..., "torch": version}; a request that fails is answered
  {"error": message}.
- `--once REQUEST`: one request in this fresh process, answered with "peak_mib" too: the
  process's peak resident memory (VmHWM, Linux; null elsewhere), which `genmod bench
  neural` reports as the workload's memory. A long-lived process keeps its freed heap, so
  only a fresh one's peak belongs to one workload.
- `--first-grid`: seconds from the start of this script (before `import torch`) to the first
  8x8 grid of VAE samples in memory, printed alone.

Models M: autoencoder, vae, gan (the report's MLP GAN), gan_recipe (genmod's unclustered MLP GAN:
dropout 0.5 in D, samples from a moving average of G), cgan (the report's concatenated
label), cgan_recipe (genmod's default: projection discriminator, moving average), dcgan,
cdcgan (the conditional DCGAN, projection discriminator).
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


def read_idx(folder, stem):
    """An MNIST-format file of `folder`, gzip-compressed or not."""
    for name in (stem + ".gz", stem):
        path = Path(folder) / name
        if path.is_file():
            return (gzip.open if name.endswith(".gz") else open)(path, "rb").read()
    raise FileNotFoundError(f"{stem} or {stem}.gz in {folder}")


def digits(folder=ROOT / "src/data/mnist10k"):
    raw = read_idx(folder, "train-images-idx3-ubyte")
    x = torch.frombuffer(bytearray(raw[16:]), dtype=torch.uint8).reshape(-1, 1, 28, 28)
    y = torch.frombuffer(bytearray(read_idx(folder, "train-labels-idx1-ubyte")[8:]), dtype=torch.uint8)
    return x.float() / 255.0, y.long()


X, Y = digits()
LATENT = 100


def batches(bs, scale, shape, data=None):
    """Training batches: random digits for 28x28x1 (the training images of folder `data`
    where given), else a few fixed noise batches."""
    if tuple(shape) == (1, 28, 28):
        images, labels = digits(data) if data else (X, Y)
        while True:
            idx = torch.randint(0, images.shape[0], (bs,))
            x = images[idx]
            yield (x * 2 - 1 if scale == "pm1" else x), labels[idx]
    pool = [(torch.rand(bs, *shape) * 2 - 1, torch.randint(0, 10, (bs,))) for _ in range(4)]
    i = 0
    while True:
        yield pool[i % len(pool)]
        i += 1


def mlp(sizes, dropout=0.0):
    """genmod's layers::Mlp: Linear layers, LeakyReLU(0.2) between them, optional dropout
    after each hidden activation (genmod's Mlp::forward_dropout)."""
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i + 2 < len(sizes):
            layers.append(nn.LeakyReLU(0.2))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
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

    def decode(self, z):
        return torch.sigmoid(self.d2(F.relu(self.d1(z))))


class Ae(nn.Module):
    def __init__(self):
        super().__init__()
        self.e1, self.e2, self.d1, self.d2 = nn.Linear(784, 256), nn.Linear(256, 32), nn.Linear(32, 256), nn.Linear(256, 784)

    def loss(self, x):
        x = x.flatten(1)
        logits = self.d2(F.relu(self.d1(self.e2(F.relu(self.e1(x))))))
        return F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / x.shape[0]


def plan(side):
    """Start side and number of stride-2 steps, as genmod's dcgan::plan."""
    return {28: (7, 2), 32: (4, 3), 64: (4, 4)}[side]


class Gan(nn.Module):
    """G and D of one of genmod's GANs, with the label's one-hot input to G and, for the
    projection discriminator, D's class vectors."""

    def __init__(self, model, shape):
        super().__init__()
        c, side, _ = shape
        self.shape = tuple(shape)
        self.classes = 10 if model in ("cgan", "cgan_recipe", "cdcgan") else 0
        self.projection = model in ("cgan_recipe", "cdcgan")
        self.ema_decay = 0.999 if model in ("gan_recipe", "cgan_recipe") else 0.0
        inputs = LATENT + self.classes
        if model in ("dcgan", "cdcgan"):
            s0, n = plan(side)
            h = 64
            gc = [h << (n - 1 - i) for i in range(n)] + [c]
            g = [nn.Linear(inputs, gc[0] * s0 * s0), nn.Unflatten(1, (gc[0], s0, s0)), nn.BatchNorm2d(gc[0]), nn.ReLU()]
            for i in range(n):
                g.append(nn.ConvTranspose2d(gc[i], gc[i + 1], 4, 2, 1))
                g += [nn.Tanh()] if i + 1 == n else [nn.BatchNorm2d(gc[i + 1]), nn.ReLU()]
            dc = [c] + [h << i for i in range(n)]
            d = []
            for i in range(n):
                d.append(nn.Conv2d(dc[i], dc[i + 1], 4, 2, 1))
                if i > 0:
                    d.append(nn.BatchNorm2d(dc[i + 1]))
                d.append(nn.LeakyReLU(0.2))
            d.append(nn.Flatten())
            self.g, self.body = nn.Sequential(*g), nn.Sequential(*d)
            features = dc[n] * s0 * s0
            self.conv = True
        else:
            pixels = c * side * side
            self.g = nn.Sequential(mlp([inputs, 256, 512, 1024, pixels]), nn.Tanh())
            dropout = 0.5 if model == "gan_recipe" else 0.0
            if self.projection:
                self.body = nn.Sequential(mlp([pixels, 512, 256]), nn.LeakyReLU(0.2))
                features = 256
            else:
                self.body = mlp([pixels + self.classes, 512, 256], dropout)
                self.body.append(nn.LeakyReLU(0.2))
                if dropout > 0:
                    self.body.append(nn.Dropout(dropout))
                features = 256
            self.conv = False
        self.score = nn.Linear(features, 1)
        if self.projection:
            self.embed = nn.Embedding(self.classes, features)
        self.g_params = list(self.g.parameters())
        self.d_params = [p for n_, p in self.named_parameters() if not n_.startswith("g.")]
        self.ema = [p.detach().clone() for p in self.g_params] if self.ema_decay else None
        self.g_steps = 0

    def generate(self, z, y):
        if self.classes:
            z = torch.cat([z, F.one_hot(y, self.classes).float()], 1)
        x = self.g(z)
        return x.view(-1, *self.shape)

    def discriminate(self, x, y):
        x = x if self.conv else x.flatten(1)
        if self.classes and not self.projection:
            x = torch.cat([x, F.one_hot(y, self.classes).float()], 1)
        phi = self.body(x)
        logit = self.score(phi)
        if self.projection:
            logit = logit + (self.embed(y) * phi).sum(1, keepdim=True)
        return logit

    def update_average(self):
        """genmod's ema::Ema::update: decay min(0.999, (1 + t) / (10 + t)) at G step t."""
        if self.ema is None:
            return
        self.g_steps += 1
        t = self.g_steps
        d = min(self.ema_decay, (1 + t) / (10 + t))
        with torch.no_grad():
            torch._foreach_lerp_(self.ema, [p.detach() for p in self.g_params], 1 - d)


def gan_step(m, og, od, x, y):
    """Algorithm 1 with k = 1 and the non-saturating G loss, as genmod's Adversarial."""
    n = x.shape[0]
    cy = y if m.classes else None
    with torch.no_grad():
        fake = m.generate(torch.randn(n, LATENT), cy)
    ld = F.softplus(-m.discriminate(x, cy)).mean() + F.softplus(m.discriminate(fake, cy)).mean()
    od.zero_grad(set_to_none=True)
    ld.backward()
    od.step()
    gy = torch.randint(0, 10, (n,)) if m.classes else None
    lg = F.softplus(-m.discriminate(m.generate(torch.randn(n, LATENT), gy), gy)).mean()
    og.zero_grad(set_to_none=True)
    lg.backward()
    og.step()
    m.update_average()


def lr_of(model):
    """genmod's default: 4e-4 for the convolutional GANs, 2e-4 for the MLP ones."""
    return 4e-4 if model in ("dcgan", "cdcgan") else 2e-4


def train(model, batch, steps, shape, data=None):
    if model in ("vae", "autoencoder"):
        m = Vae() if model == "vae" else Ae()
        opt = torch.optim.Adam(m.parameters(), lr=1e-3)

        def step(x, y):
            loss = m.loss(x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        scale = "01"
    else:
        m = Gan(model, shape)
        adam = dict(lr=lr_of(model), betas=(0.5, 0.999))
        og, od = torch.optim.Adam(m.g_params, **adam), torch.optim.Adam(m.d_params, **adam)

        def step(x, y):
            gan_step(m, og, od, x, y)

        scale = "pm1"
    it = batches(batch, scale, shape, data)
    for _ in range(3):
        step(*next(it))
    t = time.perf_counter()
    for _ in range(steps):
        step(*next(it))
    return batch * steps / (time.perf_counter() - t)


def sample(model, n, rounds, shape):
    if model == "vae":
        gen, latent = Vae().eval().decode, 20
        labels = None
    else:
        m = Gan(model, shape).eval()
        if m.ema is not None:
            # Samples come from the moving average, as in genmod.
            with torch.no_grad():
                for p, a in zip(m.g_params, m.ema):
                    p.copy_(a)
        labels = torch.arange(n) % 10 if m.classes else None
        gen, latent = (lambda z: m.generate(z, labels)), LATENT
    with torch.no_grad():
        gen(torch.randn(n, latent)).numpy()
        t = time.perf_counter()
        for _ in range(rounds):
            gen(torch.randn(n, latent)).numpy()
        return n * rounds / (time.perf_counter() - t)


def first_grid():
    vae = Vae()
    with torch.no_grad():
        x = vae.decode(torch.randn(64, 20)).reshape(8, 8, 28, 28)
        grid = (x.permute(0, 2, 1, 3).reshape(8 * 28, 8 * 28) * 255).to(torch.uint8).numpy()
    assert grid.shape == (224, 224)
    return time.perf_counter() - T0


def dcgan_layer(key, reps):
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


def peak_mib():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def answer(req):
    op = req["op"]
    shape = req.get("shape", [1, 28, 28])
    if op == "train":
        return train(req["model"], req["batch"], req["steps"], shape, req.get("data"))
    if op == "sample":
        return sample(req["model"], req["n"], req["rounds"], shape)
    if op == "layer":
        return dcgan_layer(req["key"], req["reps"])
    raise ValueError(f"unknown op {op!r}")


def serve():
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            out = {"value": answer(req), "torch": torch.__version__}
        except Exception as e:  # the caller logs it and leaves the figure out
            out = {"error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


def main():
    if "--first-grid" in sys.argv:
        print(first_grid())
    elif "--serve" in sys.argv:
        serve()
    elif "--once" in sys.argv and sys.argv.index("--once") + 1 < len(sys.argv):
        value = answer(json.loads(sys.argv[sys.argv.index("--once") + 1]))
        print(json.dumps({"value": value, "peak_mib": peak_mib(), "torch": torch.__version__}))
    else:
        sys.exit("usage: pytorch_neural.py --serve | --once REQUEST | --first-grid")


if __name__ == "__main__":
    main()
