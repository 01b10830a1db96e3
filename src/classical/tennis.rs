//! The Play Tennis worked example of report 3.1–3.2, computed once for every face: the joint
//! multinomial over the 36 cells of the four features (with the report's smoothing erratum),
//! days sampled from it, and naive Bayes on the same table.

use super::Result;
use super::multinomial::MultinomialParams;
use super::naive_bayes::NaiveBayesParams;
use crate::data::play_tennis::{self, Day};
use rand::SeedableRng;

/// The joint multinomial and naive Bayes fitted to the table with one pseudo-count.
#[derive(Debug, Clone, PartialEq)]
pub struct TennisReport {
    /// The pseudo-count: 0 for the MLE, 1 for Laplace smoothing.
    pub alpha: f64,
    /// Cells of the joint table (36).
    pub cells: usize,
    /// Days in the table (14).
    pub days: usize,
    /// Cells that hold at least one day.
    pub seen_cells: usize,
    /// The estimate of a cell seen once.
    pub p_seen_day: f64,
    /// The estimate of a cell never seen.
    pub p_unseen_day: f64,
    /// Sum of the estimates over all cells: 1 for a distribution.
    pub total: f64,
    /// Sum of the report's (n+1)/(N+1) over all cells, which is not 1.
    pub report_total: f64,
    /// Days drawn from the joint multinomial (their Play column means nothing).
    pub sampled_days: Vec<Day>,
    /// Naive Bayes' class priors, p(Play = No) and p(Play = Yes).
    pub prior: [f64; 2],
    /// Days of the table naive Bayes classifies correctly.
    pub training_correct: usize,
    /// Days drawn from naive Bayes given Play = Yes, then given Play = No.
    pub sampled_yes: Vec<Day>,
    pub sampled_no: Vec<Day>,
    /// p(Play = No | Sunny, Cool, High, Strong), the report's query.
    pub p_no_for_query: f64,
}

/// Fits both models with pseudo-count `alpha` and draws `samples` days from each (and from
/// each class), all from one generator seeded with `seed`: first the multinomial's days,
/// then naive Bayes' Yes days, then its No days.
pub fn report(alpha: f64, samples: usize, seed: u64) -> Result<TennisReport> {
    let table = play_tennis::table();
    let rows: Vec<Vec<usize>> = table.iter().map(|d| d.features().to_vec()).collect();
    let m = MultinomialParams { alpha }.fit(&rows, &play_tennis::CARDINALITIES)?;
    let first_estimate = |seen: bool| {
        m.probs()
            .iter()
            .zip(m.counts())
            .find(|(_, c)| (**c > 0) == seen)
            .map_or(0.0, |(p, _)| *p)
    };
    let day = |r: &[usize], class: usize| Day::from_indices([r[0], r[1], r[2], r[3]], class);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let sampled_days = m
        .sample(samples, &mut rng)
        .iter()
        .map(|r| day(r, 0))
        .collect();
    let nb = NaiveBayesParams { alpha }.fit_categorical(&play_tennis::categorical())?;
    let training_correct = table
        .iter()
        .filter(|d| nb.predict_row(&d.features().map(Some)) == d.play as usize)
        .count();
    let mut sample_class = |class: usize| -> Vec<Day> {
        nb.sample_class(class, samples, &mut rng)
            .iter()
            .map(|r| day(r, class))
            .collect()
    };
    let sampled_yes = sample_class(1);
    let sampled_no = sample_class(0);
    let query = [Some(0), Some(2), Some(0), Some(1)];
    Ok(TennisReport {
        alpha,
        cells: m.num_cells(),
        days: table.len(),
        seen_cells: m.counts().iter().filter(|&&c| c > 0).count(),
        p_seen_day: first_estimate(true),
        p_unseen_day: first_estimate(false),
        total: m.probs().iter().sum(),
        report_total: m.report_estimate().iter().sum(),
        sampled_days,
        prior: [nb.class_prior[0], nb.class_prior[1]],
        training_correct,
        sampled_yes,
        sampled_no,
        p_no_for_query: nb.predict_proba_row(&query)[0],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoothing_makes_a_distribution_and_the_report_estimate_does_not() {
        let mle = report(0.0, 3, 0).unwrap();
        assert_eq!((mle.cells, mle.days), (36, 14));
        // 14 days in distinct cells: each seen cell 1/14, each unseen one 0.
        assert!((mle.p_seen_day - 1.0 / 14.0).abs() < 1e-12);
        assert_eq!(mle.p_unseen_day, 0.0);
        let laplace = report(1.0, 3, 0).unwrap();
        // (1 + 1) / (14 + 36) and 1 / 50; the report's (n+1)/(N+1) sums past 1.
        assert!((laplace.p_seen_day - 2.0 / 50.0).abs() < 1e-12);
        assert!((laplace.p_unseen_day - 1.0 / 50.0).abs() < 1e-12);
        assert!((laplace.total - 1.0).abs() < 1e-12);
        assert!(laplace.report_total > 1.5, "{}", laplace.report_total);
        assert_eq!(laplace.sampled_days.len(), 3);
        assert!(laplace.sampled_yes.iter().all(|d| d.play as usize == 1));
        assert!(laplace.sampled_no.iter().all(|d| d.play as usize == 0));
    }
}
