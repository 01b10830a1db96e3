//! Report 3.2: naive Bayes. Given the class, every feature is independent, so
//! p(x, y) = p(y) · Π_k p(x_k | y) and each factor is estimated by counting:
//! θ_{y,k,l} = (n_{y,k,l} + α) / (n_{y,k} + α·L_k), where n_{y,k} counts the rows of class y
//! whose feature k is observed (missing values are left out of both counts, as the report
//! says) and L_k is the number of values of feature k. With α = 0 and a single class this is
//! the report's θ_{k,l} = n_{k,l} / N.
//!
//! Two variants: [`CategoricalNb`] for tables such as Play Tennis, and [`BernoulliNb`] for
//! binarised pixels (L_k = 2 for every pixel), the latter matching scikit-learn's
//! `BernoulliNB`.

use super::{ClassConditional, Density, ModelError, Result, check_param, check_supervised};
use crate::data::play_tennis::CategoricalTable;
use faer::{Mat, MatRef};
use rand::Rng;
use rand::distr::Distribution;
use rand::distr::weighted::WeightedIndex;

/// Pseudo-count of the naive Bayes estimates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NaiveBayesParams {
    /// Added to every count: 0 is the MLE, 1 is Laplace smoothing.
    pub alpha: f64,
}

impl Default for NaiveBayesParams {
    fn default() -> Self {
        Self { alpha: 1.0 }
    }
}

/// Naive Bayes over categorical features, tolerant of missing values.
#[derive(Debug, Clone, PartialEq)]
pub struct CategoricalNb {
    pub class_names: Vec<String>,
    pub feature_names: Vec<String>,
    pub cardinalities: Vec<usize>,
    /// Rows per class.
    pub class_counts: Vec<usize>,
    /// p(y).
    pub class_prior: Vec<f64>,
    /// `counts[y][k][l]`: rows of class y with feature k equal to l.
    pub counts: Vec<Vec<Vec<usize>>>,
    /// `theta[y][k][l]` = p(x_k = l | y).
    pub theta: Vec<Vec<Vec<f64>>>,
}

impl NaiveBayesParams {
    /// Fits the categorical model to a table.
    pub fn fit_categorical(&self, t: &CategoricalTable) -> Result<CategoricalNb> {
        check_param(
            "alpha",
            self.alpha,
            self.alpha >= 0.0,
            "a finite number >= 0",
        )?;
        let k = t.class_names.len();
        let f = t.cardinalities.len();
        if t.rows.is_empty() || k == 0 {
            return Err(ModelError::Data(
                "need at least one row and one class".into(),
            ));
        }
        if t.labels.len() != t.rows.len() {
            return Err(ModelError::Data(format!(
                "{} labels for {} rows",
                t.labels.len(),
                t.rows.len()
            )));
        }
        // ANCHOR: counts
        let mut class_counts = vec![0usize; k];
        let mut counts: Vec<Vec<Vec<usize>>> = (0..k)
            .map(|_| t.cardinalities.iter().map(|&c| vec![0; c]).collect())
            .collect();
        for (r, (row, &y)) in t.rows.iter().zip(&t.labels).enumerate() {
            if y >= k {
                return Err(ModelError::Data(format!(
                    "row {r}: label {y} outside 0..{k}"
                )));
            }
            if row.len() != f {
                return Err(ModelError::Data(format!(
                    "row {r}: {} values for {f} features",
                    row.len()
                )));
            }
            class_counts[y] += 1;
            for (j, v) in row.iter().enumerate() {
                if let Some(v) = *v {
                    if v >= t.cardinalities[j] {
                        return Err(ModelError::Data(format!(
                            "row {r}, feature {}: value {v} outside 0..{}",
                            t.feature_names[j], t.cardinalities[j]
                        )));
                    }
                    counts[y][j][v] += 1;
                }
            }
        }
        let n = t.rows.len() as f64;
        let class_prior = class_counts.iter().map(|&c| c as f64 / n).collect();
        let mut theta = Vec::with_capacity(k);
        for (y, cy) in counts.iter().enumerate() {
            let mut per_feature = Vec::with_capacity(f);
            for (j, cj) in cy.iter().enumerate() {
                let observed: usize = cj.iter().sum();
                let denom = observed as f64 + self.alpha * t.cardinalities[j] as f64;
                per_feature.push(
                    cj.iter()
                        .map(|&c| {
                            if denom > 0.0 {
                                (c as f64 + self.alpha) / denom
                            } else {
                                // No observation of this feature in this class and no
                                // smoothing: fall back to uniform rather than 0/0.
                                let _ = y;
                                1.0 / t.cardinalities[j] as f64
                            }
                        })
                        .collect(),
                );
            }
            theta.push(per_feature);
        }
        // ANCHOR_END: counts
        Ok(CategoricalNb {
            class_names: t.class_names.clone(),
            feature_names: t.feature_names.clone(),
            cardinalities: t.cardinalities.clone(),
            class_counts,
            class_prior,
            counts,
            theta,
        })
    }

    /// Fits the Bernoulli model to 0/1 features `x` (N x D) with labels in `0..k`.
    pub fn fit_bernoulli(&self, x: MatRef<'_, f64>, y: &[usize], k: usize) -> Result<BernoulliNb> {
        check_param(
            "alpha",
            self.alpha,
            self.alpha >= 0.0,
            "a finite number >= 0",
        )?;
        check_supervised(x, y, k)?;
        let (n, d) = (x.nrows(), x.ncols());
        if let Some((i, j)) = (0..n)
            .flat_map(|i| (0..d).map(move |j| (i, j)))
            .find(|&(i, j)| x[(i, j)] != 0.0 && x[(i, j)] != 1.0)
        {
            return Err(ModelError::Data(format!(
                "Bernoulli naive Bayes needs 0/1 features; row {i}, column {j} is {}",
                x[(i, j)]
            )));
        }
        let mut class_counts = vec![0usize; k];
        let mut ones = Mat::<f64>::zeros(k, d);
        for i in 0..n {
            class_counts[y[i]] += 1;
            for j in 0..d {
                ones[(y[i], j)] += x[(i, j)];
            }
        }
        let theta = Mat::from_fn(k, d, |c, j| {
            let denom = class_counts[c] as f64 + 2.0 * self.alpha;
            if denom > 0.0 {
                (ones[(c, j)] + self.alpha) / denom
            } else {
                0.5
            }
        });
        let class_prior = class_counts.iter().map(|&c| c as f64 / n as f64).collect();
        Ok(BernoulliNb {
            class_counts,
            class_prior,
            theta,
        })
    }
}

impl CategoricalNb {
    /// `log p(x, y)` of one row for every class, skipping missing features.
    pub fn joint_log_prob_row(&self, row: &[Option<usize>]) -> Vec<f64> {
        (0..self.class_prior.len())
            .map(|y| {
                self.class_prior[y].ln()
                    + row
                        .iter()
                        .enumerate()
                        .filter_map(|(j, v)| v.map(|v| self.theta[y][j][v].ln()))
                        .sum::<f64>()
            })
            .collect()
    }

    /// `p(y | x)` of one row.
    pub fn predict_proba_row(&self, row: &[Option<usize>]) -> Vec<f64> {
        let j = self.joint_log_prob_row(row);
        let lse = super::log_sum_exp(j.iter().copied());
        j.iter().map(|v| (v - lse).exp()).collect()
    }

    /// The most probable class of one row.
    pub fn predict_row(&self, row: &[Option<usize>]) -> usize {
        let p = self.joint_log_prob_row(row);
        (0..p.len())
            .max_by(|&a, &b| p[a].total_cmp(&p[b]))
            .unwrap_or(0)
    }

    /// `n` rows drawn from p(x | y = class).
    pub fn sample_class(
        &self,
        class: usize,
        n: usize,
        rng: &mut dyn rand::RngCore,
    ) -> Vec<Vec<usize>> {
        let dists: Vec<WeightedIndex<f64>> = self.theta[class]
            .iter()
            .map(|t| WeightedIndex::new(t).expect("valid probabilities"))
            .collect();
        (0..n)
            .map(|_| dists.iter().map(|d| d.sample(rng)).collect())
            .collect()
    }
}

/// Naive Bayes over binary features (pixels binarised at a threshold).
#[derive(Debug, Clone, PartialEq)]
pub struct BernoulliNb {
    pub class_counts: Vec<usize>,
    pub class_prior: Vec<f64>,
    /// theta[(y, j)] = p(x_j = 1 | y): for digits, the class's "mean image".
    pub theta: Mat<f64>,
}

impl ClassConditional for BernoulliNb {
    fn num_classes(&self) -> usize {
        self.class_prior.len()
    }

    /// log p(y) + Σ_j log(1 − θ_j) + x · (log θ − log(1 − θ)), as one GEMM.
    fn joint_log_prob(&self, x: MatRef<'_, f64>) -> Mat<f64> {
        let (k, d) = (self.theta.nrows(), self.theta.ncols());
        let log_odds = Mat::from_fn(d, k, |j, c| {
            self.theta[(c, j)].ln() - (1.0 - self.theta[(c, j)]).ln()
        });
        let base: Vec<f64> = (0..k)
            .map(|c| {
                self.class_prior[c].ln()
                    + (0..d).map(|j| (1.0 - self.theta[(c, j)]).ln()).sum::<f64>()
            })
            .collect();
        let mut out = super::matmul(x, log_odds.as_ref());
        for i in 0..out.nrows() {
            for c in 0..k {
                out[(i, c)] += base[c];
            }
        }
        out
    }

    fn sample_class(&self, class: usize, n: usize, rng: &mut dyn rand::RngCore) -> Mat<f64> {
        let d = self.theta.ncols();
        let mut m = Mat::zeros(n, d);
        for i in 0..n {
            for j in 0..d {
                m[(i, j)] = (rng.random::<f64>() < self.theta[(class, j)]) as u8 as f64;
            }
        }
        m
    }
}

impl Density for BernoulliNb {
    fn dim(&self) -> usize {
        self.theta.ncols()
    }

    fn log_prob(&self, x: MatRef<'_, f64>) -> Vec<f64> {
        self.marginal_log_prob(x)
    }

    fn sample(&self, n: usize, rng: &mut dyn rand::RngCore) -> Mat<f64> {
        super::sample_by_prior(self, &self.class_prior, self.dim(), n, rng)
    }
}
