#!/usr/bin/env python3
"""scikit-learn's side of `genmod bench classical`: the workloads of src/bench/classical.rs.

Same data (the embedded digits in src/data/mnist10k, pixels / 255 as float64), same sizes,
the same thread count as genmod (GENMOD_THREADS, default 2). Run with --serve, genmod keeps
this process open and alternates its own measurements with this one's, one JSON request a
line on stdin, one JSON answer a line on stdout:
    {"op": "em_diag" | "em_full" | "lda_fit" | "qda_fit", "reps": R}
        -> {"value": median seconds of R runs after one warm-up, "sklearn": ..., "numpy": ...}
A fitted mixture is kept per covariance type, so repeated EM requests time iterations only.
A request that fails is answered {"error": message}.
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


FITTED = {}


def em_iteration(x, cov_type, reps):
    if cov_type not in FITTED:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            FITTED[cov_type] = GaussianMixture(10, covariance_type=cov_type, max_iter=1, tol=0.0, random_state=0).fit(x)
    gm = FITTED[cov_type]

    def step():
        _, log_resp = gm._e_step(x)
        gm._m_step(x, log_resp)

    return median(reps, step)


def serve():
    data = ROOT / "src" / "data" / "mnist10k"
    x = idx(data / "train-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float64) / 255.0
    y = idx(data / "train-labels-idx1-ubyte.gz")
    workloads = {
        "em_diag": lambda reps: em_iteration(x, "diag", reps),
        "em_full": lambda reps: em_iteration(x, "full", reps),
        "lda_fit": lambda reps: median(reps, lambda: LinearDiscriminantAnalysis(solver="lsqr", shrinkage=0.1).fit(x, y)),
        "qda_fit": lambda reps: median(reps, lambda: QuadraticDiscriminantAnalysis(solver="eigen", shrinkage=0.1).fit(x, y)),
    }
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            with threadpool_limits(threads):
                value = workloads[req["op"]](int(req.get("reps", 1)))
            out = {"value": value, "sklearn": sklearn.__version__, "numpy": np.__version__}
        except Exception as e:  # the caller logs it and leaves the figure out
            out = {"error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


def main():
    if "--serve" not in sys.argv:
        sys.exit("usage: sklearn_classical.py --serve")
    serve()


if __name__ == "__main__":
    main()
