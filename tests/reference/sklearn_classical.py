#!/usr/bin/env python3
"""Reference numbers for genmod's classical models, computed by scikit-learn.

Run from the repository root:

    python3 tests/reference/sklearn_classical.py > tests/reference/classical.json

The data are generated here (seeded) and written into the fixture, so the Rust tests in
tests/classical.rs fit on exactly the same numbers and never need Python.
"""

import json
import sys
import warnings

import numpy as np
import sklearn
from sklearn.discriminant_analysis import (
    LinearDiscriminantAnalysis,
    QuadraticDiscriminantAnalysis,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from sklearn.naive_bayes import BernoulliNB, GaussianNB


def tolist(a):
    return np.asarray(a, dtype=float).tolist()


def main():
    rng = np.random.RandomState(20231805)
    # Three classes in 4-D with different means and covariances, uneven class sizes.
    sizes = [40, 30, 50]
    xs, ys = [], []
    for k, n in enumerate(sizes):
        a = rng.normal(size=(4, 4)) * (0.4 + 0.3 * k)
        mean = rng.normal(size=4) * 2.0
        xs.append(rng.normal(size=(n, 4)) @ a + mean)
        ys.append(np.full(n, k))
    x = np.vstack(xs)
    y = np.concatenate(ys)
    x_test = rng.normal(size=(12, 4)) * 2.0

    # Binary data for Bernoulli naive Bayes: 2 classes, 10 features.
    xb = (rng.uniform(size=(60, 10)) < np.linspace(0.1, 0.9, 10)).astype(float)
    yb = (rng.uniform(size=60) < 0.4).astype(int)
    xb[yb == 1, :3] = 1.0 - xb[yb == 1, :3]
    xb_test = (rng.uniform(size=(8, 10)) < 0.5).astype(float)

    out = {
        "sklearn_version": sklearn.__version__,
        "data": {
            "x": tolist(x),
            "y": y.tolist(),
            "x_test": tolist(x_test),
            "xb": tolist(xb),
            "yb": yb.tolist(),
            "xb_test": tolist(xb_test),
        },
    }

    gnb = GaussianNB(var_smoothing=1e-9).fit(x, y)
    out["gaussian_nb"] = {
        "var_smoothing": 1e-9,
        "means": tolist(gnb.theta_),
        "variances": tolist(gnb.var_),
        "class_prior": tolist(gnb.class_prior_),
        "epsilon": float(gnb.epsilon_),
        "joint_log_prob_test": tolist(gnb.predict_joint_log_proba(x_test)),
    }

    bnb = BernoulliNB(alpha=1.0, binarize=None).fit(xb, yb)
    out["bernoulli_nb"] = {
        "alpha": 1.0,
        "theta": tolist(np.exp(bnb.feature_log_prob_)),
        "class_prior": tolist(np.exp(bnb.class_log_prior_)),
        "joint_log_prob_test": tolist(bnb.predict_joint_log_proba(xb_test)),
    }

    lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage=0.1).fit(x, y)
    out["lda_shrinkage_0.1"] = {
        "shrinkage": 0.1,
        "means": tolist(lda.means_),
        "class_prior": tolist(lda.priors_),
        "covariance": tolist(lda.covariance_),
        "log_proba_test": tolist(lda.predict_log_proba(x_test)),
    }

    qda = QuadraticDiscriminantAnalysis(
        solver="eigen", shrinkage=0.1, store_covariance=True
    ).fit(x, y)
    out["qda_shrinkage_0.1"] = {
        "shrinkage": 0.1,
        "means": tolist(qda.means_),
        "class_prior": tolist(qda.priors_),
        "covariances": [tolist(c) for c in qda.covariance_],
        "log_proba_test": tolist(qda.predict_log_proba(x_test)),
    }

    qda_r = QuadraticDiscriminantAnalysis(
        solver="svd", reg_param=0.2, store_covariance=True
    ).fit(x, y)
    out["qda_reg_0.2"] = {
        "ridge": 0.2,
        "means": tolist(qda_r.means_),
        "covariances": [tolist(c) for c in qda_r.covariance_],
        "log_proba_test": tolist(qda_r.predict_log_proba(x_test)),
    }

    # Mixtures started from the same parameters in genmod and scikit-learn: five EM
    # iterations (tol = 0 never stops early), then compare the parameters reached.
    k = 3
    idx = rng.choice(len(x), size=k, replace=False)
    weights_init = np.array([0.5, 0.3, 0.2])
    means_init = x[idx] + 0.1
    for cov_type in ["full", "diag"]:
        if cov_type == "full":
            cov_init = np.stack([np.cov(x.T, bias=True) * (0.5 + 0.25 * j) for j in range(k)])
            precisions_init = np.stack([np.linalg.inv(c) for c in cov_init])
        else:
            cov_init = np.stack([x.var(0) * (0.5 + 0.25 * j) for j in range(k)])
            precisions_init = 1.0 / cov_init
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gm = GaussianMixture(
                n_components=k,
                covariance_type=cov_type,
                tol=0.0,
                max_iter=5,
                reg_covar=1e-6,
                weights_init=weights_init,
                means_init=means_init,
                precisions_init=precisions_init,
                random_state=0,
            ).fit(x)
        out[f"gmm_{cov_type}"] = {
            "iterations": 5,
            "reg_covar": 1e-6,
            "weights_init": tolist(weights_init),
            "means_init": tolist(means_init),
            "covariances_init": tolist(cov_init),
            "weights": tolist(gm.weights_),
            "means": tolist(gm.means_),
            "covariances": tolist(gm.covariances_),
            "lower_bound": float(gm.lower_bound_),
            "score_samples_test": tolist(gm.score_samples(x_test)),
        }

    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
