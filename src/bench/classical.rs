//! Classical workloads: one EM iteration of a 10-component mixture on the embedded
//! digits (diagonal and full covariances) and the GDA fits.

use super::median_seconds;
use crate::classical::gda::{CovarianceKind, GdaParams};
use crate::classical::gmm::{EmData, GmmCovariance, GmmParams};
use crate::classical::{features, labels};
use crate::data::Split;

/// Median seconds of one EM iteration (E-step and M-step) with `k` components, started
/// from k-means++ on the training digits; `reps` timed iterations.
pub fn em_iteration(split: &Split, covariance: GmmCovariance, k: usize, reps: usize) -> f64 {
    let x = features(&split.train);
    EmIterations::new(x.as_ref(), covariance, k).time(reps)
}

/// A mixture fitted once and iterated on each measurement, as the scikit-learn side keeps
/// its fitted mixture between requests: each measurement then times iterations of a fit
/// under way, not the first ones after fresh allocations.
pub struct EmIterations<'a> {
    params: GmmParams,
    data: EmData<'a>,
    gmm: std::cell::RefCell<crate::classical::gmm::Gmm>,
}

impl<'a> EmIterations<'a> {
    /// k-means++ and one EM iteration on `x`.
    pub fn new(x: faer::MatRef<'a, f64>, covariance: GmmCovariance, k: usize) -> Self {
        let params = GmmParams {
            components: k,
            covariance,
            max_iter: 1,
            tol: 0.0,
            ..GmmParams::default()
        };
        let gmm = params.fit(x).expect("EM on the digits");
        Self {
            data: EmData::new(x, covariance),
            params,
            gmm: std::cell::RefCell::new(gmm),
        }
    }

    /// For each component, the rows whose responsibility under the current mixture is
    /// not zero: those its M-step's scatter matrix reads.
    pub fn responsible_rows(&self) -> Vec<usize> {
        let (_, resp) = self.gmm.borrow().e_step_on(&self.data);
        (0..resp.ncols())
            .map(|c| resp.col(c).iter().filter(|r| **r > 0.0).count())
            .collect()
    }

    /// Median seconds of `reps` iterations, after one untimed.
    pub fn time(&self, reps: usize) -> f64 {
        median_seconds(reps, || {
            let next = self
                .params
                .iterate(&self.gmm.borrow(), &self.data)
                .expect("EM iteration")
                .1;
            *self.gmm.borrow_mut() = next;
        })
    }
}

/// Median seconds of a GDA fit (shrinkage 0.1) on the training digits.
pub fn gda_fit(split: &Split, kind: CovarianceKind, reps: usize) -> f64 {
    let x = features(&split.train);
    let y = labels(&split.train).expect("labelled digits");
    let params = GdaParams {
        covariance: kind,
        shrinkage: 0.1,
        ridge: 0.0,
    };
    median_seconds(reps, || {
        params.fit(x.as_ref(), &y, 10).expect("GDA fit");
    })
}

/// The f64 matrix product's rate on this machine, in GFLOP/s: the median of `reps` products
/// of an N x D matrix by a D x D one at the digits' sizes (N = 8,004, D = 784), the shape of
/// the full-covariance E-step's products, through faer on its global thread pool as EM uses.
pub fn gemm_gflops(reps: usize) -> f64 {
    let (n, d) = (8004, 784);
    let a = faer::Mat::<f64>::from_fn(n, d, |i, j| ((i * 7 + j * 13) % 101) as f64 / 101.0);
    let b = faer::Mat::<f64>::from_fn(d, d, |i, j| ((i * 11 + j * 5) % 97) as f64 / 97.0);
    let seconds = median_seconds(reps, || {
        std::hint::black_box(crate::classical::matmul(a.as_ref(), b.as_ref()));
    });
    2.0 * (n * d * d) as f64 / seconds / 1e9
}

/// The cubic-order work of one full-covariance EM iteration on N rows of D columns, in
/// flops, where component k's scatter matrix reads `scatter_rows[k]` rows: per component,
/// the E-step's triangular product of every row (N·D²), the M-step's symmetric scatter of
/// the rows with nonzero responsibility (M_k·D², genmod skips the others, which add
/// nothing), and a Cholesky factorisation and a triangular inverse (D³/3 each).
pub fn full_em_flops(n: usize, d: usize, scatter_rows: &[usize]) -> f64 {
    let (n, d) = (n as f64, d as f64);
    scatter_rows
        .iter()
        .map(|&m| n * d * d + m as f64 * d * d + 2.0 * d * d * d / 3.0)
        .sum()
}
