//! Report 3.4: Gaussian discriminant analysis. Each class is one multivariate Gaussian,
//! p(x | y) = N(x | μ_y, Σ_y), with prior φ_y = n_y / N.
//!
//! * Shared covariance (LDA): Σ = (1/N) Σ_i (x_i − μ_{y_i})(x_i − μ_{y_i})ᵀ. The quadratic
//!   terms cancel in the log-odds, so with two classes P(y = 1 | x) = σ(wᵀx + b) with
//!   w = Σ⁻¹(μ₁ − μ₀) and b = ½μ₀ᵀΣ⁻¹μ₀ − ½μ₁ᵀΣ⁻¹μ₁ + log(φ₁/φ₀) (Bishop, PRML §4.2):
//!   [`Gda::logistic_form`]. The report's covariance formula divides the pooled scatter by
//!   m, which is this MLE; its φ = Σ y⁽ⁱ⁾/m is the two-class special case of n_y / N.
//! * Per-class covariances (QDA): Σ_y = (1/n_y) Σ_{i: y_i = y} (x_i − μ_y)(x_i − μ_y)ᵀ; the
//!   boundary is quadratic.
//!
//! On 784-pixel digits the sample covariance is singular (constant border pixels), so a
//! shrinkage towards a scaled identity, (1 − λ)Σ + λ·(tr Σ / d)·I (Ledoit–Wolf form, as
//! scikit-learn's LDA), and/or a ridge (1 − r)Σ + r·I (scikit-learn's QDA `reg_param`) make
//! it positive definite. Samples are μ_y + L_y z with Σ_y = L_y L_yᵀ (figure 3.3).

use super::{
    CholeskyGaussian, ClassConditional, Density, ModelError, Result, check_param, check_supervised,
    matmul,
};
use faer::{Mat, MatRef};

/// Which covariance structure to fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CovarianceKind {
    /// One covariance for all classes (linear boundary).
    Shared,
    /// One covariance per class (quadratic boundary).
    PerClass,
}

/// Options of the GDA fit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GdaParams {
    pub covariance: CovarianceKind,
    /// λ in (1 − λ)Σ + λ·(tr Σ / d)·I, in [0, 1].
    pub shrinkage: f64,
    /// r in (1 − r)Σ + r·I, in [0, 1].
    pub ridge: f64,
}

impl Default for GdaParams {
    fn default() -> Self {
        Self {
            covariance: CovarianceKind::Shared,
            shrinkage: 0.0,
            ridge: 0.0,
        }
    }
}

/// A fitted GDA model.
#[derive(Debug, Clone)]
pub struct Gda {
    pub kind: CovarianceKind,
    pub class_counts: Vec<usize>,
    pub class_prior: Vec<f64>,
    /// means[(y, j)]
    pub means: Mat<f64>,
    /// One covariance (shared) or one per class, after shrinkage and ridge.
    pub covariances: Vec<Mat<f64>>,
    gaussians: Vec<CholeskyGaussian>,
}

impl GdaParams {
    /// Fits class means, priors and covariances to `x` with labels in `0..k`.
    pub fn fit(&self, x: MatRef<'_, f64>, y: &[usize], k: usize) -> Result<Gda> {
        check_param(
            "shrinkage",
            self.shrinkage,
            (0.0..=1.0).contains(&self.shrinkage),
            "a number in [0, 1]",
        )?;
        check_param(
            "ridge",
            self.ridge,
            (0.0..=1.0).contains(&self.ridge),
            "a number in [0, 1]",
        )?;
        check_supervised(x, y, k)?;
        let (n, d) = (x.nrows(), x.ncols());
        let mut class_counts = vec![0usize; k];
        for &c in y {
            class_counts[c] += 1;
        }
        if let Some(c) = class_counts.iter().position(|&c| c == 0) {
            return Err(ModelError::Data(format!("class {c} has no rows")));
        }
        // ANCHOR: mle
        let mut means = Mat::<f64>::zeros(k, d);
        for i in 0..n {
            for j in 0..d {
                means[(y[i], j)] += x[(i, j)];
            }
        }
        for c in 0..k {
            for j in 0..d {
                means[(c, j)] /= class_counts[c] as f64;
            }
        }
        // Per-class scatter matrices via GEMM on the centred rows of each class.
        let scatter: Vec<Mat<f64>> = (0..k)
            .map(|c| {
                let rows: Vec<usize> = (0..n).filter(|&i| y[i] == c).collect();
                let centred = Mat::from_fn(rows.len(), d, |r, j| x[(rows[r], j)] - means[(c, j)]);
                super::gmm::gram(centred.as_ref())
            })
            .collect();
        let regularise = |mut s: Mat<f64>| -> Mat<f64> {
            let mu = (0..d).map(|j| s[(j, j)]).sum::<f64>() / d as f64;
            for a in 0..d {
                for b in 0..d {
                    let eye = if a == b { 1.0 } else { 0.0 };
                    let shrunk = (1.0 - self.shrinkage) * s[(a, b)] + self.shrinkage * mu * eye;
                    s[(a, b)] = (1.0 - self.ridge) * shrunk + self.ridge * eye;
                }
            }
            s
        };
        let covariances: Vec<Mat<f64>> = match self.covariance {
            CovarianceKind::Shared => {
                let mut pooled = Mat::<f64>::zeros(d, d);
                for s in &scatter {
                    pooled += s;
                }
                vec![regularise(Mat::from_fn(d, d, |a, b| {
                    pooled[(a, b)] / n as f64
                }))]
            }
            CovarianceKind::PerClass => scatter
                .iter()
                .enumerate()
                .map(|(c, s)| {
                    let nc = class_counts[c] as f64;
                    regularise(Mat::from_fn(d, d, |a, b| s[(a, b)] / nc))
                })
                .collect(),
        };
        // ANCHOR_END: mle
        let gaussians = (0..k)
            .map(|c| {
                let cov = &covariances[if covariances.len() == 1 { 0 } else { c }];
                let what = match self.covariance {
                    CovarianceKind::Shared => "the shared covariance".to_string(),
                    CovarianceKind::PerClass => format!("the covariance of class {c}"),
                };
                CholeskyGaussian::new((0..d).map(|j| means[(c, j)]).collect(), cov.as_ref(), what)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Gda {
            kind: self.covariance,
            class_prior: class_counts.iter().map(|&c| c as f64 / n as f64).collect(),
            class_counts,
            means,
            covariances,
            gaussians,
        })
    }
}

impl Gda {
    /// The covariance of class `c`.
    pub fn covariance(&self, c: usize) -> &Mat<f64> {
        &self.covariances[if self.covariances.len() == 1 { 0 } else { c }]
    }

    /// For a two-class shared-covariance model: (w, b) with P(y = 1 | x) = σ(wᵀx + b).
    pub fn logistic_form(&self) -> Option<(Vec<f64>, f64)> {
        if self.kind != CovarianceKind::Shared || self.class_prior.len() != 2 {
            return None;
        }
        let d = self.means.ncols();
        let g = &self.gaussians[0];
        // Σ⁻¹ v = L⁻ᵀ L⁻¹ v.
        let solve = |v: &[f64]| -> Vec<f64> {
            let col = Mat::from_fn(d, 1, |j, _| v[j]);
            let t = matmul(g.chol_inv.as_ref(), col.as_ref());
            let s = matmul(g.chol_inv.transpose(), t.as_ref());
            (0..d).map(|j| s[(j, 0)]).collect()
        };
        let mu0: Vec<f64> = (0..d).map(|j| self.means[(0, j)]).collect();
        let mu1: Vec<f64> = (0..d).map(|j| self.means[(1, j)]).collect();
        let diff: Vec<f64> = mu1.iter().zip(&mu0).map(|(a, b)| a - b).collect();
        let w = solve(&diff);
        let (s0, s1) = (solve(&mu0), solve(&mu1));
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        let b = 0.5 * dot(&mu0, &s0) - 0.5 * dot(&mu1, &s1)
            + (self.class_prior[1] / self.class_prior[0]).ln();
        Some((w, b))
    }
}

impl ClassConditional for Gda {
    fn num_classes(&self) -> usize {
        self.class_prior.len()
    }

    fn joint_log_prob(&self, x: MatRef<'_, f64>) -> Mat<f64> {
        let cols: Vec<Vec<f64>> = self.gaussians.iter().map(|g| g.log_pdf(x)).collect();
        Mat::from_fn(x.nrows(), cols.len(), |i, c| {
            self.class_prior[c].ln() + cols[c][i]
        })
    }

    fn sample_class(&self, class: usize, n: usize, rng: &mut dyn rand::RngCore) -> Mat<f64> {
        self.gaussians[class].sample(n, rng)
    }
}

impl Density for Gda {
    fn dim(&self) -> usize {
        self.means.ncols()
    }

    fn log_prob(&self, x: MatRef<'_, f64>) -> Vec<f64> {
        self.marginal_log_prob(x)
    }

    fn sample(&self, n: usize, rng: &mut dyn rand::RngCore) -> Mat<f64> {
        super::sample_by_prior(self, &self.class_prior, self.dim(), n, rng)
    }
}
