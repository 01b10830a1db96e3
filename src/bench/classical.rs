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
    let params = GmmParams {
        components: k,
        covariance,
        max_iter: 1,
        tol: 0.0,
        ..GmmParams::default()
    };
    let mut gmm = params.fit(x.as_ref()).expect("EM on the digits");
    let data = EmData::new(x.as_ref(), covariance);
    median_seconds(reps, || {
        let (_, resp) = gmm.e_step_on(&data);
        gmm = params.m_step_on(&data, resp.as_ref()).expect("M-step");
    })
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
