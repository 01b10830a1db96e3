#!/usr/bin/env python3
"""scikit-learn timings of the workloads in src/bench/classical.rs, as JSON on stdout.

Same data (the embedded digits in src/data/mnist10k, pixels / 255 as float64), same sizes,
the same thread count as genmod (GENMOD_THREADS, default 2). `genmod bench` runs this
script itself so that both sides are measured in one run on the same machine.
"""

import gzip
import json
import os
import sys
import time
import warnings
from pathlib import Path

threads = int(os.environ.get("GENMOD_THREADS", "2"))
for var in ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"]:
    os.environ[var] = str(threads)

import numpy as np  # noqa: E402
import sklearn  # noqa: E402
from sklearn.discriminant_analysis import (  # noqa: E402
    LinearDiscriminantAnalysis,
    QuadraticDiscriminantAnalysis,
)
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.mixture import GaussianMixture  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def idx(path):
    raw = gzip.open(path).read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * d : 8 + 4 * d], "big") for d in range(ndim)]
    return np.frombuffer(raw[4 + 4 * ndim :], dtype=np.uint8).reshape(dims)


def median(reps, f):
    f()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def em_iteration(x, cov_type, reps):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm = GaussianMixture(10, covariance_type=cov_type, max_iter=1, tol=0.0, random_state=0).fit(x)

    def step():
        _, log_resp = gm._e_step(x)
        gm._m_step(x, log_resp)

    return median(reps, step)


def main():
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    data = ROOT / "src" / "data" / "mnist10k"
    x = idx(data / "train-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float64) / 255.0
    y = idx(data / "train-labels-idx1-ubyte.gz")
    out = {"sklearn": sklearn.__version__, "numpy": np.__version__, "threads": threads}
    with threadpool_limits(threads):
        out["em_diag"] = em_iteration(x, "diag", reps)
        out["em_full"] = em_iteration(x, "full", max(1, reps // 2))
        out["lda_fit"] = median(max(1, reps // 2), lambda: LinearDiscriminantAnalysis(solver="lsqr", shrinkage=0.1).fit(x, y))
        out["qda_fit"] = median(max(1, reps // 2), lambda: QuadraticDiscriminantAnalysis(solver="eigen", shrinkage=0.1).fit(x, y))
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
