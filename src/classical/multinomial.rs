//! Report 3.1: one multinomial over every joint outcome of a few categorical attributes,
//! e.g. the 3·3·2·2 = 36 weather combinations of Play Tennis.
//!
//! The maximum-likelihood estimate of cell i is n_i / N. Add-α (Laplace, α = 1) smoothing
//! gives (n_i + α) / (N + α·M) over M cells. The report writes (n_i + 1) / (N + 1), whose
//! 36 values sum to (N + M) / (N + 1) = 50/15 ≈ 3.33 on Play Tennis, not 1:
//! [`JointMultinomial::report_estimate`] keeps that formula only to show the error.

use super::{ModelError, Result, check_param};
use rand::distr::Distribution;
use rand::distr::weighted::WeightedIndex;

/// How to estimate the cell probabilities.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MultinomialParams {
    /// Pseudo-count added to every cell: 0 for the MLE, 1 for Laplace smoothing.
    pub alpha: f64,
}

impl Default for MultinomialParams {
    fn default() -> Self {
        Self { alpha: 1.0 }
    }
}

/// A fitted multinomial over the joint outcomes of categorical attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct JointMultinomial {
    cardinalities: Vec<usize>,
    counts: Vec<u64>,
    total: u64,
    probs: Vec<f64>,
}

impl MultinomialParams {
    /// Counts every row's cell and estimates the cell probabilities.
    pub fn fit(&self, rows: &[Vec<usize>], cardinalities: &[usize]) -> Result<JointMultinomial> {
        check_param(
            "alpha",
            self.alpha,
            self.alpha >= 0.0,
            "a finite number >= 0",
        )?;
        if cardinalities.is_empty() || cardinalities.contains(&0) {
            return Err(ModelError::Data(format!(
                "every attribute needs at least one value, got cardinalities {cardinalities:?}"
            )));
        }
        let cells: usize = cardinalities.iter().product();
        let mut counts = vec![0u64; cells];
        for (r, row) in rows.iter().enumerate() {
            counts[cell_index(row, cardinalities)
                .map_err(|m| ModelError::Data(format!("row {r}: {m}")))?] += 1;
        }
        let total = rows.len() as u64;
        let denom = total as f64 + self.alpha * cells as f64;
        if denom <= 0.0 {
            return Err(ModelError::Data(
                "no rows and alpha = 0: every probability would be 0/0".into(),
            ));
        }
        let probs = counts
            .iter()
            .map(|&c| (c as f64 + self.alpha) / denom)
            .collect();
        Ok(JointMultinomial {
            cardinalities: cardinalities.to_vec(),
            counts,
            total,
            probs,
        })
    }
}

/// The mixed-radix index of a row of attribute values (first attribute most significant).
pub fn cell_index(row: &[usize], cardinalities: &[usize]) -> std::result::Result<usize, String> {
    if row.len() != cardinalities.len() {
        return Err(format!(
            "{} values for {} attributes",
            row.len(),
            cardinalities.len()
        ));
    }
    let mut idx = 0;
    for (a, (&v, &card)) in row.iter().zip(cardinalities).enumerate() {
        if v >= card {
            return Err(format!("attribute {a} has value {v}, expected 0..{card}"));
        }
        idx = idx * card + v;
    }
    Ok(idx)
}

/// The attribute values of a cell index; the inverse of [`cell_index`].
pub fn cell_values(mut idx: usize, cardinalities: &[usize]) -> Vec<usize> {
    let mut out = vec![0; cardinalities.len()];
    for (slot, &card) in out.iter_mut().zip(cardinalities).rev() {
        *slot = idx % card;
        idx /= card;
    }
    out
}

impl JointMultinomial {
    /// Number of cells, the product of the cardinalities.
    pub fn num_cells(&self) -> usize {
        self.probs.len()
    }

    pub fn cardinalities(&self) -> &[usize] {
        &self.cardinalities
    }

    /// Observations per cell.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// Number of observations N.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The estimated probability of each cell.
    pub fn probs(&self) -> &[f64] {
        &self.probs
    }

    /// The report's formula (n_i + 1) / (N + 1) for every cell: not a distribution, kept to
    /// show the erratum (its values sum to (N + M) / (N + 1)).
    pub fn report_estimate(&self) -> Vec<f64> {
        self.counts
            .iter()
            .map(|&c| (c as f64 + 1.0) / (self.total as f64 + 1.0))
            .collect()
    }

    /// `log p(row)` of one row of attribute values.
    pub fn log_prob(&self, row: &[usize]) -> Result<f64> {
        let i = cell_index(row, &self.cardinalities).map_err(ModelError::Data)?;
        Ok(self.probs[i].ln())
    }

    /// `n` seeded draws of rows of attribute values.
    pub fn sample(&self, n: usize, rng: &mut dyn rand::RngCore) -> Vec<Vec<usize>> {
        let dist = WeightedIndex::new(&self.probs).expect("probabilities are finite and sum to 1");
        (0..n)
            .map(|_| cell_values(dist.sample(rng), &self.cardinalities))
            .collect()
    }
}
