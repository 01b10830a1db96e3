//! The classical generative models of report sections 3.1–3.5, one per file, with one
//! vocabulary: a params struct validated by `fit`, then a fitted model that answers
//! `log_prob`, `sample` and, where labels exist, `predict` and `sample_class`.
//!
//! Everything here is f64 and exact: these models have closed-form or EM fits, and their
//! numbers are checked against scikit-learn to 1e-6 relative (`tests/classical.rs`).

pub mod catalog;
pub mod demo;
pub mod gaussian_nb;
pub mod gda;
pub mod gmm;
pub mod multinomial;
pub mod naive_bayes;
pub mod tennis;

use crate::data::Dataset;
use faer::{Mat, MatRef};
use rand::Rng;
use rand_distr::StandardNormal;

/// What can go wrong when fitting a classical model.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ModelError {
    #[error("invalid parameter `{name}` = {value}: expected {expected}")]
    InvalidParam {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("invalid data: {0}")]
    Data(String),
    #[error(
        "{what} is not positive definite; raise the shrinkage or regularisation (e.g. --shrinkage 0.1)"
    )]
    NotPositiveDefinite { what: String },
}

pub type Result<T> = std::result::Result<T, ModelError>;

pub(crate) fn check_param(
    name: &'static str,
    value: f64,
    ok: bool,
    expected: &'static str,
) -> Result<()> {
    if ok && value.is_finite() {
        Ok(())
    } else {
        Err(ModelError::InvalidParam {
            name,
            value: value.to_string(),
            expected,
        })
    }
}

/// A model with a density (or mass function) over feature vectors.
pub trait Density {
    /// Dimension of a feature vector.
    fn dim(&self) -> usize;
    /// `log p(x)` for each row of `x`, in nats.
    fn log_prob(&self, x: MatRef<'_, f64>) -> Vec<f64>;
    /// `n` draws, one per row, from the seeded `rng`.
    fn sample(&self, n: usize, rng: &mut dyn rand::RngCore) -> Mat<f64>;
}

/// A model of `p(x, y)` over feature vectors and class labels.
pub trait ClassConditional {
    fn num_classes(&self) -> usize;
    /// `log p(x, y = k)` for every row and class: an N x K matrix.
    fn joint_log_prob(&self, x: MatRef<'_, f64>) -> Mat<f64>;
    /// `n` draws of `x` given `y = class`.
    fn sample_class(&self, class: usize, n: usize, rng: &mut dyn rand::RngCore) -> Mat<f64>;
    /// The most probable class of each row.
    fn predict(&self, x: MatRef<'_, f64>) -> Vec<usize> {
        let j = self.joint_log_prob(x);
        (0..j.nrows())
            .map(|i| {
                (0..j.ncols())
                    .max_by(|&a, &b| j[(i, a)].total_cmp(&j[(i, b)]))
                    .unwrap_or(0)
            })
            .collect()
    }
    /// `log p(y = k | x)`: each row of the joint, normalised.
    fn predict_log_proba(&self, x: MatRef<'_, f64>) -> Mat<f64> {
        let mut j = self.joint_log_prob(x);
        for i in 0..j.nrows() {
            let lse = log_sum_exp((0..j.ncols()).map(|k| j[(i, k)]));
            for k in 0..j.ncols() {
                j[(i, k)] -= lse;
            }
        }
        j
    }
    /// `log p(x) = log Σ_k p(x, y = k)` for each row.
    fn marginal_log_prob(&self, x: MatRef<'_, f64>) -> Vec<f64> {
        let j = self.joint_log_prob(x);
        (0..j.nrows())
            .map(|i| log_sum_exp((0..j.ncols()).map(|k| j[(i, k)])))
            .collect()
    }
    /// Share of rows whose predicted class is `y`.
    fn accuracy(&self, x: MatRef<'_, f64>, y: &[usize]) -> f64 {
        let p = self.predict(x);
        p.iter().zip(y).filter(|(a, b)| a == b).count() as f64 / y.len().max(1) as f64
    }
}

/// `n` draws from Σ_y p(y) p(x | y): a class from `prior`, then a row given that class.
pub(crate) fn sample_by_prior<M: ClassConditional + ?Sized>(
    model: &M,
    prior: &[f64],
    dim: usize,
    n: usize,
    rng: &mut dyn rand::RngCore,
) -> Mat<f64> {
    use rand::distr::Distribution;
    let pick = rand::distr::weighted::WeightedIndex::new(prior).expect("valid prior");
    let mut m = Mat::zeros(n, dim);
    for i in 0..n {
        let class = pick.sample(rng);
        let row = model.sample_class(class, 1, rng);
        for j in 0..dim {
            m[(i, j)] = row[(0, j)];
        }
    }
    m
}

/// `log Σ exp(v)`, stable for large magnitudes; `-inf` for an empty or all `-inf` input.
pub fn log_sum_exp(v: impl Iterator<Item = f64> + Clone) -> f64 {
    let m = v.clone().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + v.map(|x| exp_or_zero(x - m)).sum::<f64>().ln()
}

/// eˣ, with 0 returned at once below −746, where eˣ underflows to 0 anyway: libm's
/// underflow path is slow, and a mixture's log-densities put most (row, component) pairs
/// there (a tenth of a 400-component code mixture's refit time went to it).
#[inline]
pub fn exp_or_zero(x: f64) -> f64 {
    if x < -746.0 { 0.0 } else { x.exp() }
}

/// The images of a dataset as an N x D matrix of pixels in [0, 1].
pub fn features(ds: &Dataset) -> Mat<f64> {
    let d = ds.dim();
    let px = ds.pixels();
    Mat::from_fn(ds.len(), d, |i, j| px[i * d + j] as f64 / 255.0)
}

/// Pixels in [0, 1] with uniform dequantisation noise: `(p + u) / 256`, u ~ U(0, 1).
///
/// A continuous density on these values, plus `D·ln 256`, is an upper bound on the negative
/// log-likelihood of the 8-bit images in nats (Theis et al. 2016), which makes Gaussian
/// models comparable with discrete ones.
pub fn dequantised_features(ds: &Dataset, rng: &mut dyn rand::RngCore) -> Mat<f64> {
    let d = ds.dim();
    let px = ds.pixels();
    let mut m = Mat::zeros(ds.len(), d);
    for i in 0..ds.len() {
        for j in 0..d {
            let u: f64 = rng.random();
            m[(i, j)] = (px[i * d + j] as f64 + u) / 256.0;
        }
    }
    m
}

/// Pixels binarised at `threshold` (value > threshold is 1), as 0/1 f64.
pub fn binarised_features(ds: &Dataset, threshold: f64) -> Mat<f64> {
    let d = ds.dim();
    let px = ds.pixels();
    Mat::from_fn(ds.len(), d, |i, j| {
        ((px[i * d + j] as f64 / 255.0) > threshold) as u8 as f64
    })
}

/// The labels of a dataset as class indices; an error if it has none.
pub fn labels(ds: &Dataset) -> Result<Vec<usize>> {
    ds.labels()
        .map(|l| l.iter().map(|&y| y as usize).collect())
        .ok_or_else(|| ModelError::Data(format!("{} has no labels", ds.name)))
}

/// Checks shapes common to every supervised fit: rows, labels and class count agree.
pub(crate) fn check_supervised(x: MatRef<'_, f64>, y: &[usize], k: usize) -> Result<()> {
    if x.nrows() == 0 || x.ncols() == 0 {
        return Err(ModelError::Data(format!(
            "need at least one row and one feature, got {} x {}",
            x.nrows(),
            x.ncols()
        )));
    }
    if y.len() != x.nrows() {
        return Err(ModelError::Data(format!(
            "{} labels for {} rows",
            y.len(),
            x.nrows()
        )));
    }
    if let Some(&bad) = y.iter().find(|&&c| c >= k) {
        return Err(ModelError::Data(format!("label {bad} is outside 0..{k}")));
    }
    if (0..x.nrows()).any(|i| (0..x.ncols()).any(|j| !x[(i, j)].is_finite())) {
        return Err(ModelError::Data("features contain NaN or infinity".into()));
    }
    Ok(())
}

/// `n x d` standard normal draws.
pub(crate) fn standard_normal(n: usize, d: usize, rng: &mut dyn rand::RngCore) -> Mat<f64> {
    let mut m = Mat::zeros(n, d);
    for i in 0..n {
        for j in 0..d {
            m[(i, j)] = rng.sample(StandardNormal);
        }
    }
    m
}

/// `a * b` with faer's parallel GEMM.
pub(crate) fn matmul(a: MatRef<'_, f64>, b: MatRef<'_, f64>) -> Mat<f64> {
    let mut out = Mat::zeros(a.nrows(), b.ncols());
    faer::linalg::matmul::matmul(
        out.as_mut(),
        faer::Accum::Replace,
        a,
        b,
        1.0,
        faer::get_global_parallelism(),
    );
    out
}

/// Lower Cholesky factor of a symmetric matrix, or a clear error naming `what`.
pub(crate) fn cholesky(s: MatRef<'_, f64>, what: impl Into<String>) -> Result<Mat<f64>> {
    cholesky_with(s, what, faer::get_global_parallelism())
}

/// [`cholesky`] run under `par`: a mixture factorises its components side by side, each on
/// one thread.
pub(crate) fn cholesky_with(
    s: MatRef<'_, f64>,
    what: impl Into<String>,
    par: faer::Par,
) -> Result<Mat<f64>> {
    use faer::linalg::cholesky::llt::factor;
    let d = s.nrows();
    if s.ncols() != d {
        return Err(ModelError::NotPositiveDefinite {
            what: format!("{} ({d} x {} is not square)", what.into(), s.ncols()),
        });
    }
    let mut l = s.to_owned();
    let scratch = factor::cholesky_in_place_scratch::<f64>(d, par, Default::default());
    let mut buffer = faer::dyn_stack::MemBuffer::new(scratch);
    factor::cholesky_in_place(
        l.as_mut(),
        Default::default(),
        par,
        faer::dyn_stack::MemStack::new(&mut buffer),
        Default::default(),
    )
    .map_err(|_| ModelError::NotPositiveDefinite { what: what.into() })?;
    // The factorisation leaves the upper triangle as it found it.
    for j in 1..d {
        for i in 0..j {
            l[(i, j)] = 0.0;
        }
    }
    Ok(l)
}

/// Inverse of a lower-triangular matrix.
pub(crate) fn invert_lower(l: MatRef<'_, f64>) -> Mat<f64> {
    invert_lower_with(l, faer::get_global_parallelism())
}

/// [`invert_lower`] run under `par`.
pub(crate) fn invert_lower_with(l: MatRef<'_, f64>, par: faer::Par) -> Mat<f64> {
    let mut inv = Mat::zeros(l.nrows(), l.ncols());
    faer::linalg::triangular_inverse::invert_lower_triangular(inv.as_mut(), l, par);
    inv
}

/// A Gaussian in Cholesky form: everything needed for log-densities and sampling.
#[derive(Debug, Clone)]
pub struct CholeskyGaussian {
    pub mean: Vec<f64>,
    /// Lower factor L with Σ = L Lᵀ.
    pub chol: Mat<f64>,
    /// L⁻¹, so that the whitened point is L⁻¹ (x − μ).
    pub chol_inv: Mat<f64>,
    /// log det Σ.
    pub log_det: f64,
}

impl CholeskyGaussian {
    /// Factorises a covariance; `what` names it in the error if it is not positive definite.
    pub fn new(mean: Vec<f64>, cov: MatRef<'_, f64>, what: impl Into<String>) -> Result<Self> {
        let chol = cholesky(cov, what)?;
        let log_det = 2.0 * (0..chol.nrows()).map(|i| chol[(i, i)].ln()).sum::<f64>();
        let chol_inv = invert_lower(chol.as_ref());
        Ok(Self {
            mean,
            chol,
            chol_inv,
            log_det,
        })
    }

    /// `log N(x | μ, Σ)` for every row of `x`.
    pub fn log_pdf(&self, x: MatRef<'_, f64>) -> Vec<f64> {
        let d = x.ncols();
        let c = -0.5 * (d as f64 * (2.0 * std::f64::consts::PI).ln() + self.log_det);
        whitened_sq_norms(x, &self.mean, self.chol_inv.as_ref())
            .into_iter()
            .map(|m| c - 0.5 * m)
            .collect()
    }

    /// `n` draws μ + L z.
    pub fn sample(&self, n: usize, rng: &mut dyn rand::RngCore) -> Mat<f64> {
        let d = self.mean.len();
        let z = standard_normal(n, d, rng);
        let mut x = matmul(z.as_ref(), self.chol.transpose());
        for i in 0..n {
            for j in 0..d {
                x[(i, j)] += self.mean[j];
            }
        }
        x
    }
}

/// Squared Mahalanobis norms ‖L⁻¹(x − μ)‖² of every row of `x`, given L⁻¹.
///
/// Computed as X·L⁻ᵀ − μ·L⁻ᵀ with a triangular GEMM (L⁻ᵀ is upper triangular, so half the
/// flops of a dense product), then summed column by column, which is contiguous in faer's
/// column-major layout. The rows go through in blocks of [`NORM_BLOCK`] into one buffer:
/// a product of all N rows at once wrote an N x D matrix per call (50 MB for the digits),
/// and the kernel's zeroing of its fresh pages was a sixth of a full-covariance EM
/// iteration (perf); a block also stays in cache for the sums.
pub(crate) fn whitened_sq_norms(
    x: MatRef<'_, f64>,
    mean: &[f64],
    chol_inv: MatRef<'_, f64>,
) -> Vec<f64> {
    whitened_sq_norms_with(x, mean, chol_inv, faer::get_global_parallelism())
}

/// [`whitened_sq_norms`] with its product run under `par` (sequential when the caller
/// already spreads components over the threads).
pub(crate) fn whitened_sq_norms_with(
    x: MatRef<'_, f64>,
    mean: &[f64],
    chol_inv: MatRef<'_, f64>,
    par: faer::Par,
) -> Vec<f64> {
    use faer::linalg::matmul::triangular::{BlockStructure, matmul as tri_matmul};
    let (n, d) = (x.nrows(), x.ncols());
    // shift_j = (μ L⁻ᵀ)_j = Σ_k μ_k L⁻¹[j, k]
    let shift: Vec<f64> = (0..d)
        .map(|j| (0..=j).map(|k| mean[k] * chol_inv[(j, k)]).sum())
        .collect();
    let mut acc = vec![0.0; n];
    let mut y = Mat::<f64>::zeros(NORM_BLOCK.min(n), d);
    for start in (0..n).step_by(NORM_BLOCK) {
        let rows = NORM_BLOCK.min(n - start);
        tri_matmul(
            y.as_mut().subrows_mut(0, rows),
            BlockStructure::Rectangular,
            faer::Accum::Replace,
            x.subrows(start, rows),
            BlockStructure::Rectangular,
            chol_inv.transpose(),
            BlockStructure::TriangularUpper,
            1.0,
            par,
        );
        let acc = &mut acc[start..start + rows];
        for (j, &sh) in shift.iter().enumerate() {
            for (a, v) in acc.iter_mut().zip(y.col(j).iter()) {
                let w = v - sh;
                *a += w * w;
            }
        }
    }
    acc
}

/// Rows per block of [`whitened_sq_norms`]: 1,024 rows of the digits' 784 columns are
/// 6.4 MB, large enough for the GEMM to run at full speed.
const NORM_BLOCK: usize = 1024;

/// Rows of a matrix as u8 images in [0, 1] scale (clamped), for sample grids.
pub fn rows_to_u8(x: MatRef<'_, f64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(x.nrows() * x.ncols());
    for i in 0..x.nrows() {
        for j in 0..x.ncols() {
            let v = x[(i, j)];
            out.push(if v.is_finite() {
                (v.clamp(0.0, 1.0) * 255.0).round() as u8
            } else {
                0
            });
        }
    }
    out
}

/// Per-image log-likelihoods turned into the two usual summaries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LikelihoodSummary {
    /// Mean negative log-likelihood per image, in nats.
    pub nats_per_image: f64,
    /// The same per dimension, in bits.
    pub bits_per_dim: f64,
}

impl LikelihoodSummary {
    /// From per-image `log p` values of `dim`-dimensional data; `offset_nats` is added to
    /// each NLL (e.g. `D·ln 256` for a density on dequantised pixels).
    pub fn from_log_probs(log_probs: &[f64], dim: usize, offset_nats: f64) -> Self {
        let nll = -log_probs.iter().sum::<f64>() / log_probs.len().max(1) as f64 + offset_nats;
        Self {
            nats_per_image: nll,
            bits_per_dim: nll / (dim as f64 * std::f64::consts::LN_2),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The blocked Mahalanobis norms equal the definition row by row, across block
    /// boundaries and a short last block (2,500 rows: blocks of 1,024, 1,024 and 452).
    #[test]
    fn whitened_norms_match_the_definition_across_blocks() {
        let (n, d) = (2 * NORM_BLOCK + 452, 5);
        let x = Mat::<f64>::from_fn(n, d, |i, j| ((i * 31 + j * 17) % 23) as f64 / 7.0 - 1.5);
        let mean: Vec<f64> = (0..d).map(|j| 0.1 * j as f64 - 0.2).collect();
        // A lower-triangular L⁻¹ with a positive diagonal.
        let linv = Mat::<f64>::from_fn(d, d, |i, j| match i.cmp(&j) {
            std::cmp::Ordering::Less => 0.0,
            std::cmp::Ordering::Equal => 1.0 + 0.3 * i as f64,
            std::cmp::Ordering::Greater => 0.1 * (i + 2 * j) as f64 - 0.4,
        });
        let got = whitened_sq_norms(x.as_ref(), &mean, linv.as_ref());
        assert_eq!(got.len(), n);
        for (i, g) in got.iter().enumerate() {
            let want: f64 = (0..d)
                .map(|r| {
                    (0..=r)
                        .map(|k| linv[(r, k)] * (x[(i, k)] - mean[k]))
                        .sum::<f64>()
                        .powi(2)
                })
                .sum();
            assert!(
                (g - want).abs() <= 1e-12 * want.max(1.0),
                "row {i}: {g} vs {want}"
            );
        }
    }
}
