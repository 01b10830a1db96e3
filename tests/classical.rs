//! The classical models of report 3.1–3.5 against their derivations and against
//! scikit-learn (fixture: tests/reference/classical.json, made by
//! tests/reference/sklearn_classical.py; no Python is needed to run these tests).

use faer::{Mat, MatRef};
use genmod::classical::gaussian_nb::GaussianNbParams;
use genmod::classical::gda::{CovarianceKind, GdaParams};
use genmod::classical::gmm::{Covariances, Gmm, GmmCovariance, GmmInit, GmmParams};
use genmod::classical::multinomial::{MultinomialParams, cell_values};
use genmod::classical::naive_bayes::NaiveBayesParams;
use genmod::classical::{ClassConditional, Density, ModelError};
use genmod::data::play_tennis;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use std::fmt::Write;

const FIXTURE: &str = include_str!("reference/classical.json");

macro_rules! snapshot {
    ($name:expr, $value:expr) => {
        insta::with_settings!({snapshot_path => "../snapshots", prepend_module_to_snapshot => false}, {
            insta::assert_snapshot!($name, $value);
        })
    };
}

fn fixture() -> Value {
    serde_json::from_str(FIXTURE).unwrap()
}

fn mat(v: &Value) -> Mat<f64> {
    let rows = v.as_array().unwrap();
    let cols = rows[0].as_array().unwrap().len();
    Mat::from_fn(rows.len(), cols, |i, j| rows[i][j].as_f64().unwrap())
}

fn vecf(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn labels(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

/// |a − b| ≤ 1e-6 · max(|a|, |b|) (plus 1e-12 absolute, for values that are exactly zero).
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()) + 1e-12
}

fn assert_mat_close(ours: MatRef<'_, f64>, theirs: &Mat<f64>, what: &str) {
    assert_eq!(
        (ours.nrows(), ours.ncols()),
        (theirs.nrows(), theirs.ncols()),
        "{what}: shape"
    );
    for i in 0..ours.nrows() {
        for j in 0..ours.ncols() {
            assert!(
                close(ours[(i, j)], theirs[(i, j)]),
                "{what}[{i},{j}]: genmod {} vs scikit-learn {}",
                ours[(i, j)],
                theirs[(i, j)]
            );
        }
    }
}

fn assert_vec_close(ours: &[f64], theirs: &[f64], what: &str) {
    assert_eq!(ours.len(), theirs.len(), "{what}: length");
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        assert!(close(*a, *b), "{what}[{i}]: genmod {a} vs scikit-learn {b}");
    }
}

fn data(f: &Value) -> (Mat<f64>, Vec<usize>, Mat<f64>) {
    (
        mat(&f["data"]["x"]),
        labels(&f["data"]["y"]),
        mat(&f["data"]["x_test"]),
    )
}

// ------------------------------------------------------------------ scikit-learn agreement

#[test]
fn gaussian_nb_matches_scikit_learn() {
    let f = fixture();
    let (x, y, xt) = data(&f);
    let r = &f["gaussian_nb"];
    let m = GaussianNbParams {
        var_smoothing: 1e-9,
        shared_variance: false,
    }
    .fit(x.as_ref(), &y, 3)
    .unwrap();
    assert_mat_close(m.means.as_ref(), &mat(&r["means"]), "means");
    assert_mat_close(m.variances.as_ref(), &mat(&r["variances"]), "variances");
    assert_vec_close(&m.class_prior, &vecf(&r["class_prior"]), "class prior");
    assert!(close(m.epsilon, r["epsilon"].as_f64().unwrap()));
    assert_mat_close(
        m.joint_log_prob(xt.as_ref()).as_ref(),
        &mat(&r["joint_log_prob_test"]),
        "joint log p",
    );
}

#[test]
fn bernoulli_nb_matches_scikit_learn() {
    let f = fixture();
    let (x, y, xt) = (
        mat(&f["data"]["xb"]),
        labels(&f["data"]["yb"]),
        mat(&f["data"]["xb_test"]),
    );
    let r = &f["bernoulli_nb"];
    let m = NaiveBayesParams { alpha: 1.0 }
        .fit_bernoulli(x.as_ref(), &y, 2)
        .unwrap();
    assert_mat_close(m.theta.as_ref(), &mat(&r["theta"]), "theta");
    assert_vec_close(&m.class_prior, &vecf(&r["class_prior"]), "class prior");
    assert_mat_close(
        m.joint_log_prob(xt.as_ref()).as_ref(),
        &mat(&r["joint_log_prob_test"]),
        "joint log p",
    );
}

#[test]
fn shared_covariance_gda_matches_scikit_learn_lda() {
    let f = fixture();
    let (x, y, xt) = data(&f);
    let r = &f["lda_shrinkage_0.1"];
    let m = GdaParams {
        covariance: CovarianceKind::Shared,
        shrinkage: 0.1,
        ridge: 0.0,
    }
    .fit(x.as_ref(), &y, 3)
    .unwrap();
    assert_mat_close(m.means.as_ref(), &mat(&r["means"]), "means");
    assert_vec_close(&m.class_prior, &vecf(&r["class_prior"]), "priors");
    assert_mat_close(
        m.covariance(0).as_ref(),
        &mat(&r["covariance"]),
        "covariance",
    );
    assert_mat_close(
        m.predict_log_proba(xt.as_ref()).as_ref(),
        &mat(&r["log_proba_test"]),
        "log p(y|x)",
    );
}

#[test]
fn per_class_gda_matches_scikit_learn_qda_with_shrinkage_and_with_ridge() {
    let f = fixture();
    let (x, y, xt) = data(&f);
    for (key, params) in [
        (
            "qda_shrinkage_0.1",
            GdaParams {
                covariance: CovarianceKind::PerClass,
                shrinkage: 0.1,
                ridge: 0.0,
            },
        ),
        (
            "qda_reg_0.2",
            GdaParams {
                covariance: CovarianceKind::PerClass,
                shrinkage: 0.0,
                ridge: 0.2,
            },
        ),
    ] {
        let r = &f[key];
        let m = params.fit(x.as_ref(), &y, 3).unwrap();
        assert_mat_close(m.means.as_ref(), &mat(&r["means"]), key);
        for c in 0..3 {
            assert_mat_close(m.covariance(c).as_ref(), &mat(&r["covariances"][c]), key);
        }
        assert_mat_close(
            m.predict_log_proba(xt.as_ref()).as_ref(),
            &mat(&r["log_proba_test"]),
            key,
        );
    }
}

#[test]
fn em_matches_scikit_learn_from_the_same_start() {
    let f = fixture();
    let (x, _, xt) = data(&f);
    for (key, kind) in [
        ("gmm_full", GmmCovariance::Full),
        ("gmm_diag", GmmCovariance::Diagonal),
    ] {
        let r = &f[key];
        let covariances = match kind {
            GmmCovariance::Full => Covariances::Full(
                r["covariances_init"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(mat)
                    .collect(),
            ),
            GmmCovariance::Diagonal => Covariances::Diagonal(mat(&r["covariances_init"])),
        };
        let params = GmmParams {
            components: 3,
            covariance: kind,
            tol: 0.0,
            max_iter: 5,
            reg_covar: 1e-6,
            seed: 0,
            init: GmmInit::Given {
                weights: vecf(&r["weights_init"]),
                means: mat(&r["means_init"]),
                covariances,
            },
        };
        let g = params.fit(x.as_ref()).unwrap();
        assert_eq!(g.history.len(), 5, "{key}: tol = 0 runs every iteration");
        assert_vec_close(&g.weights, &vecf(&r["weights"]), key);
        assert_mat_close(g.means.as_ref(), &mat(&r["means"]), key);
        match &g.covariances {
            Covariances::Full(c) => {
                for (k, ck) in c.iter().enumerate() {
                    assert_mat_close(ck.as_ref(), &mat(&r["covariances"][k]), key);
                }
            }
            Covariances::Diagonal(v) => assert_mat_close(v.as_ref(), &mat(&r["covariances"]), key),
        }
        assert!(
            close(
                *g.history.last().unwrap(),
                r["lower_bound"].as_f64().unwrap()
            ),
            "{key} lower bound"
        );
        assert_vec_close(
            &g.log_prob(xt.as_ref()),
            &vecf(&r["score_samples_test"]),
            key,
        );
    }
}

// ------------------------------------------------------------------ 3.1 multinomial

fn fmt4(v: f64) -> String {
    format!("{v:.4}")
}

#[test]
fn play_tennis_joint_multinomial_table_and_the_smoothing_erratum() {
    let rows: Vec<Vec<usize>> = play_tennis::table()
        .iter()
        .map(|d| d.features().to_vec())
        .collect();
    let card = play_tennis::CARDINALITIES;
    let mle = MultinomialParams { alpha: 0.0 }.fit(&rows, &card).unwrap();
    let laplace = MultinomialParams { alpha: 1.0 }.fit(&rows, &card).unwrap();
    assert_eq!(mle.num_cells(), 36);
    assert_eq!(mle.total(), 14);
    let report = mle.report_estimate();
    let sum = |v: &[f64]| v.iter().sum::<f64>();
    // The MLE and the correctly smoothed estimate are distributions; the report's is not.
    assert!((sum(mle.probs()) - 1.0).abs() < 1e-12);
    assert!((sum(laplace.probs()) - 1.0).abs() < 1e-12);
    assert!(
        (sum(&report) - 50.0 / 15.0).abs() < 1e-12,
        "report's sum is (N + M)/(N + 1)"
    );
    // Laplace: an observed-once cell gets 2/50, an unseen cell 1/50.
    let names = [
        ["Sunny", "Overcast", "Rain"].as_slice(),
        &["Hot", "Mild", "Cool"],
        &["High", "Normal"],
        &["Weak", "Strong"],
    ];
    let mut s = String::from(
        "cell | outlook temp humidity wind | n_i | MLE n_i/N | (n_i+1)/(N+M) | report (n_i+1)/(N+1)\n",
    );
    for (i, report_i) in report.iter().enumerate() {
        let v = cell_values(i, &card);
        writeln!(
            s,
            "{i:>2} | {:<8} {:<4} {:<6} {:<6} | {} | {} | {} | {}",
            names[0][v[0]],
            names[1][v[1]],
            names[2][v[2]],
            names[3][v[3]],
            mle.counts()[i],
            fmt4(mle.probs()[i]),
            fmt4(laplace.probs()[i]),
            fmt4(*report_i)
        )
        .unwrap();
    }
    writeln!(
        s,
        "sums | | {} | {} | {} | {}",
        mle.total(),
        fmt4(sum(mle.probs())),
        fmt4(sum(laplace.probs())),
        fmt4(sum(&report))
    )
    .unwrap();
    snapshot!("multinomial_play_tennis", s);
}

#[test]
fn multinomial_samples_follow_the_estimate_and_are_seeded() {
    let rows: Vec<Vec<usize>> = play_tennis::table()
        .iter()
        .map(|d| d.features().to_vec())
        .collect();
    let m = MultinomialParams { alpha: 1.0 }
        .fit(&rows, &play_tennis::CARDINALITIES)
        .unwrap();
    let a = m.sample(20_000, &mut ChaCha8Rng::seed_from_u64(3));
    let b = m.sample(20_000, &mut ChaCha8Rng::seed_from_u64(3));
    assert_eq!(a, b);
    // Sunny-Hot-High-Weak was seen once: 2/50 = 4%. Its frequency in 20,000 draws is within
    // 5 standard errors (5 · sqrt(0.04 · 0.96 / 20000) ≈ 0.007).
    let hits = a.iter().filter(|r| **r == vec![0, 0, 0, 0]).count() as f64 / 20_000.0;
    assert!((hits - 0.04).abs() < 0.007, "{hits}");
}

// ------------------------------------------------------------------ 3.2 naive Bayes

#[test]
fn naive_bayes_estimates_on_play_tennis() {
    let t = play_tennis::categorical();
    let mut s = String::new();
    for alpha in [0.0, 1.0] {
        let m = NaiveBayesParams { alpha }.fit_categorical(&t).unwrap();
        writeln!(
            s,
            "alpha = {alpha}: p(No) = {}, p(Yes) = {}",
            fmt4(m.class_prior[0]),
            fmt4(m.class_prior[1])
        )
        .unwrap();
        let value_names: Vec<Vec<&str>> = vec![
            vec!["Sunny", "Overcast", "Rain"],
            vec!["Hot", "Mild", "Cool"],
            vec!["High", "Normal"],
            vec!["Weak", "Strong"],
        ];
        for (j, f) in t.feature_names.iter().enumerate() {
            for (l, v) in value_names[j].iter().enumerate() {
                writeln!(
                    s,
                    "  p({f}={v} | No) = {} [{} of {}]   p({f}={v} | Yes) = {} [{} of {}]",
                    fmt4(m.theta[0][j][l]),
                    m.counts[0][j][l],
                    m.class_counts[0],
                    fmt4(m.theta[1][j][l]),
                    m.counts[1][j][l],
                    m.class_counts[1]
                )
                .unwrap();
            }
        }
    }
    // The classic query (Mitchell 1997): Sunny, Cool, High, Strong is classified No.
    let m = NaiveBayesParams { alpha: 0.0 }.fit_categorical(&t).unwrap();
    let q = [Some(0), Some(2), Some(0), Some(1)];
    let p = m.predict_proba_row(&q);
    // Unnormalised: No 5/14·3/5·1/5·4/5·3/5 = 0.02057, Yes 9/14·2/9·3/9·3/9·3/9 = 0.005291.
    let (no, yes) = (
        5.0 / 14.0 * 0.6 * 0.2 * 0.8 * 0.6,
        9.0 / 14.0 * (2.0 / 9.0) * (3.0_f64 / 9.0).powi(3),
    );
    assert!((p[0] - no / (no + yes)).abs() < 1e-12);
    assert_eq!(m.predict_row(&q), 0);
    writeln!(s, "query Sunny,Cool,High,Strong: p(No|x) = {}", fmt4(p[0])).unwrap();
    snapshot!("naive_bayes_play_tennis", s);
}

#[test]
fn naive_bayes_ignores_missing_values_in_estimation() {
    let mut t = play_tennis::categorical();
    t.rows[0][0] = None; // day 1 (No): Outlook unknown
    let m = NaiveBayesParams { alpha: 0.0 }.fit_categorical(&t).unwrap();
    // Outlook among the four remaining No days: Sunny 2, Overcast 0, Rain 2.
    assert_eq!(m.counts[0][0], vec![2, 0, 2]);
    assert!((m.theta[0][0][0] - 0.5).abs() < 1e-12);
    // Other features of that day still count: Temperature Hot among five No days.
    assert_eq!(m.counts[0][1][0], 2);
    assert!((m.theta[0][1][0] - 2.0 / 5.0).abs() < 1e-12);
    // Prediction with a missing value marginalises that feature out.
    let full = m.joint_log_prob_row(&[None, Some(0), Some(0), Some(0)]);
    assert!(
        (full[0]
            - ((4.0f64 / 14.0 * 5.0 / 14.0).ln() + (2.0f64 / 5.0 * 4.0 / 5.0 * 2.0 / 5.0).ln()
                - (4.0f64 / 14.0).ln()))
        .abs()
            < 1e-12
    );
}

// ------------------------------------------------------------------ 3.3 and 3.4 on a tiny set

/// Two classes in 2-D, small enough to check by hand:
/// class 0 at (0,0), (2,0), (0,2), (2,2): mean (1, 1), variances (1, 1), no correlation;
/// class 1 at (3,3), (5,5), (4,4), (4,6): mean (4, 4.5), variances (0.5, 1.25), cov 0.5.
fn tiny() -> (Mat<f64>, Vec<usize>) {
    let pts = [
        (0., 0.),
        (2., 0.),
        (0., 2.),
        (2., 2.),
        (3., 3.),
        (5., 5.),
        (4., 4.),
        (4., 6.),
    ];
    (
        Mat::from_fn(8, 2, |i, j| if j == 0 { pts[i].0 } else { pts[i].1 }),
        vec![0, 0, 0, 0, 1, 1, 1, 1],
    )
}

fn fmt_mat(m: MatRef<'_, f64>) -> String {
    (0..m.nrows())
        .map(|i| {
            (0..m.ncols())
                .map(|j| fmt4(m[(i, j)]))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join(" / ")
}

#[test]
fn gaussian_nb_and_gda_parameters_on_a_tiny_set() {
    let (x, y) = tiny();
    let gnb = GaussianNbParams {
        var_smoothing: 0.0,
        shared_variance: false,
    }
    .fit(x.as_ref(), &y, 2)
    .unwrap();
    assert_eq!(gnb.means[(1, 1)], 4.5);
    assert_eq!(gnb.variances[(1, 0)], 0.5);
    assert_eq!(gnb.variances[(1, 1)], 1.25);
    let shared = GaussianNbParams {
        var_smoothing: 0.0,
        shared_variance: true,
    }
    .fit(x.as_ref(), &y, 2)
    .unwrap();
    assert_eq!(shared.variances[(0, 1)], (1.0 + 1.25) / 2.0);
    let lda = GdaParams::default().fit(x.as_ref(), &y, 2).unwrap();
    let qda = GdaParams {
        covariance: CovarianceKind::PerClass,
        ..Default::default()
    }
    .fit(x.as_ref(), &y, 2)
    .unwrap();
    assert_eq!(qda.covariance(1)[(0, 1)], 0.5);
    assert_eq!(lda.covariance(0)[(0, 1)], 0.25);
    let mut s = String::new();
    writeln!(s, "Gaussian NB means: {}", fmt_mat(gnb.means.as_ref())).unwrap();
    writeln!(
        s,
        "Gaussian NB variances: {}",
        fmt_mat(gnb.variances.as_ref())
    )
    .unwrap();
    writeln!(
        s,
        "Gaussian NB shared variances: {}",
        fmt_mat(shared.variances.as_ref())
    )
    .unwrap();
    writeln!(
        s,
        "GDA priors: {} {}",
        fmt4(lda.class_prior[0]),
        fmt4(lda.class_prior[1])
    )
    .unwrap();
    writeln!(
        s,
        "GDA shared covariance: {}",
        fmt_mat(lda.covariance(0).as_ref())
    )
    .unwrap();
    writeln!(
        s,
        "GDA class-0 covariance: {}",
        fmt_mat(qda.covariance(0).as_ref())
    )
    .unwrap();
    writeln!(
        s,
        "GDA class-1 covariance: {}",
        fmt_mat(qda.covariance(1).as_ref())
    )
    .unwrap();
    let (w, b) = lda.logistic_form().unwrap();
    writeln!(
        s,
        "shared-covariance posterior: P(y=1|x) = sigmoid({} x1 + {} x2 + {})",
        fmt4(w[0]),
        fmt4(w[1]),
        fmt4(b)
    )
    .unwrap();
    snapshot!("gnb_gda_tiny", s);
}

#[test]
fn shared_covariance_posterior_is_a_logistic_sigmoid() {
    let f = fixture();
    let (x, y, xt) = data(&f);
    // Classes 0 and 1 of the fixture, in 4-D.
    let rows: Vec<usize> = (0..x.nrows()).filter(|&i| y[i] < 2).collect();
    let x2 = Mat::from_fn(rows.len(), 4, |r, j| x[(rows[r], j)]);
    let y2: Vec<usize> = rows.iter().map(|&i| y[i]).collect();
    let m = GdaParams::default().fit(x2.as_ref(), &y2, 2).unwrap();
    let (w, b) = m.logistic_form().unwrap();
    let lp = m.predict_log_proba(xt.as_ref());
    for i in 0..xt.nrows() {
        let z: f64 = (0..4).map(|j| w[j] * xt[(i, j)]).sum::<f64>() + b;
        let sigmoid = 1.0 / (1.0 + (-z).exp());
        assert!((lp[(i, 1)].exp() - sigmoid).abs() < 1e-10, "row {i}");
    }
    let qda = GdaParams {
        covariance: CovarianceKind::PerClass,
        ..Default::default()
    }
    .fit(x2.as_ref(), &y2, 2)
    .unwrap();
    assert!(qda.logistic_form().is_none());
}

#[test]
fn shared_variance_gives_a_linear_boundary_and_separate_variances_a_quadratic_one() {
    let (x, y) = tiny();
    // The log-odds along a line x(t) = a + t·d: linear means zero second difference.
    let second_difference = |m: &dyn ClassConditional| {
        let pts = Mat::from_fn(3, 2, |i, j| [0.5, 1.0][j] + i as f64 * [1.0, 0.7][j]);
        let l = m.joint_log_prob(pts.as_ref());
        let odds: Vec<f64> = (0..3).map(|i| l[(i, 1)] - l[(i, 0)]).collect();
        odds[2] - 2.0 * odds[1] + odds[0]
    };
    let shared = GaussianNbParams {
        var_smoothing: 0.0,
        shared_variance: true,
    }
    .fit(x.as_ref(), &y, 2)
    .unwrap();
    let separate = GaussianNbParams {
        var_smoothing: 0.0,
        shared_variance: false,
    }
    .fit(x.as_ref(), &y, 2)
    .unwrap();
    assert!(second_difference(&shared).abs() < 1e-12);
    assert!(second_difference(&separate).abs() > 0.1);
}

// ------------------------------------------------------------------ 3.5 EM by hand

/// One E-step and one M-step on x = {1, 2, 3} with π = (½, ½), μ = (0, 4), σ² = (1, 1).
///
/// E-step: with equal weights and variances, γ₂(x) = σ(((x − 0)² − (x − 4)²)/2) = σ(4x − 8):
/// γ₂ = (σ(−4), ½, σ(4)) = (0.017986, 0.5, 0.982014) and γ₁ = 1 − γ₂.
/// M-step: N₁ = N₂ = 1.5, so π = (½, ½);
/// μ₂ = (1·0.017986 + 2·0.5 + 3·0.982014)/1.5 = 2.642685, μ₁ = 4 − μ₂ = 1.357315;
/// σ₂² = Σ γ₂ (x − μ₂)² / N₂ = (0.048534 + 0.206522 + 0.125378)/1.5 = 0.253623 = σ₁².
#[test]
fn one_em_step_by_hand() {
    let x = Mat::from_fn(3, 1, |i, _| (i + 1) as f64);
    let start = Gmm::new(
        vec![0.5, 0.5],
        Mat::from_fn(2, 1, |k, _| [0.0, 4.0][k]),
        Covariances::Diagonal(Mat::from_fn(2, 1, |_, _| 1.0)),
    )
    .unwrap();
    let (mean_ll, resp) = start.e_step(x.as_ref());
    let s4 = 1.0 / (1.0 + (-4.0f64).exp());
    assert!((resp[(0, 1)] - (1.0 - s4)).abs() < 1e-12);
    assert!((resp[(1, 1)] - 0.5).abs() < 1e-12);
    assert!((resp[(2, 1)] - s4).abs() < 1e-12);
    let params = GmmParams {
        components: 2,
        reg_covar: 0.0,
        ..Default::default()
    };
    let next = params.m_step(x.as_ref(), resp.as_ref()).unwrap();
    assert!((next.weights[0] - 0.5).abs() < 1e-12);
    assert!((next.means[(1, 0)] - 2.642685).abs() < 1e-6);
    assert!((next.means[(0, 0)] - 1.357315).abs() < 1e-6);
    let Covariances::Diagonal(v) = &next.covariances else {
        panic!("diagonal")
    };
    assert!((v[(1, 0)] - 0.253623).abs() < 1e-6);
    assert!((v[(0, 0)] - v[(1, 0)]).abs() < 1e-12);
    // log p(x) before the step, per point, is log(½N(x|0,1) + ½N(x|4,1)).
    let n = |x: f64, m: f64| (-(x - m).powi(2) / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt();
    let want = (1..=3)
        .map(|x| (0.5 * n(x as f64, 0.0) + 0.5 * n(x as f64, 4.0)).ln())
        .sum::<f64>()
        / 3.0;
    assert!((mean_ll - want).abs() < 1e-12);
    let s = format!(
        "E-step: gamma_2 = {} {} {}; mean log-likelihood = {}\nM-step: pi = {} {}; mu = {} {}; sigma^2 = {} {}\n",
        fmt4(resp[(0, 1)]),
        fmt4(resp[(1, 1)]),
        fmt4(resp[(2, 1)]),
        fmt4(mean_ll),
        fmt4(next.weights[0]),
        fmt4(next.weights[1]),
        fmt4(next.means[(0, 0)]),
        fmt4(next.means[(1, 0)]),
        fmt4(v[(0, 0)]),
        fmt4(v[(1, 0)])
    );
    snapshot!("em_one_step_by_hand", s);
}

fn blobs(seed: u64) -> Mat<f64> {
    use rand::Rng;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let centres = [(0.0, 0.0), (5.0, 1.0), (2.0, 6.0)];
    Mat::from_fn(300, 2, |i, j| {
        let c = centres[i % 3];
        let z: f64 = rng.sample(rand_distr::StandardNormal);
        (if j == 0 { c.0 } else { c.1 }) + z * (0.5 + 0.4 * (i % 3) as f64)
    })
}

#[test]
fn em_log_likelihood_never_decreases() {
    let x = blobs(1);
    for kind in [GmmCovariance::Diagonal, GmmCovariance::Full] {
        let g = GmmParams {
            components: 3,
            covariance: kind,
            tol: 1e-10,
            max_iter: 200,
            ..Default::default()
        }
        .fit(x.as_ref())
        .unwrap();
        assert!(g.history.len() > 2);
        for w in g.history.windows(2) {
            assert!(
                w[1] >= w[0] - 1e-10 * w[0].abs(),
                "{kind:?}: {} then {}",
                w[0],
                w[1]
            );
        }
        // Three well-separated blobs: each component should own about a third.
        for &w in &g.weights {
            assert!(
                (w - 1.0 / 3.0).abs() < 0.1,
                "{kind:?} weights {:?}",
                g.weights
            );
        }
    }
    // And on real digits (diagonal, 600 images).
    let ds = genmod::data::mnist::embedded().train.take(600);
    let xd = genmod::classical::features(&ds);
    let g = GmmParams {
        components: 5,
        max_iter: 30,
        tol: 0.0,
        ..Default::default()
    }
    .fit(xd.as_ref())
    .unwrap();
    for w in g.history.windows(2) {
        assert!(
            w[1] >= w[0] - 1e-9 * w[0].abs(),
            "digits: {} then {}",
            w[0],
            w[1]
        );
    }
}

#[test]
fn em_is_seeded() {
    let x = blobs(2);
    let fit = |seed| {
        GmmParams {
            components: 3,
            seed,
            ..Default::default()
        }
        .fit(x.as_ref())
        .unwrap()
    };
    let (a, b) = (fit(9), fit(9));
    assert_eq!(a.history, b.history);
    assert_eq!(a.means, b.means);
    let s1 = a.sample(5, &mut ChaCha8Rng::seed_from_u64(1));
    let s2 = b.sample(5, &mut ChaCha8Rng::seed_from_u64(1));
    assert_eq!(s1, s2);
}

/// The diagonal fit's iteration runs the E-step and the M-step in one pass over the rows,
/// reading mostly-zero data as its nonzeros; both ways must give what the two steps give
/// separately (up to the order of the sums), and the same bits whatever the thread count.
#[test]
fn the_fused_diagonal_iteration_is_the_e_step_then_the_m_step() {
    use genmod::classical::gmm::EmData;
    // 1,000 digits: not a multiple of the dense pass's blocks, so the last block is partial.
    let ds = genmod::data::mnist::embedded().train.take(1000);
    let digits = genmod::classical::features(&ds);
    // The digits read as nonzeros (four pixels in five are blank); shifted by a quarter,
    // every entry is nonzero and the pass runs dense. The bounds are a thousandth of the
    // 1e-6 that scikit-learn is held to: constant pixels get variance reg_covar = 1e-6, so
    // the log-densities are sums of terms near 1e5 that cancel, and summing them in
    // another order moves the results by about 1e-12.
    let shifted = Mat::from_fn(digits.nrows(), digits.ncols(), |i, j| digits[(i, j)] + 0.25);
    for (name, x) in [("sparse", &digits), ("dense", &shifted)] {
        // 11 components: a full block of the sparse pass's eight lanes and a padded one.
        let params = GmmParams {
            components: 11,
            max_iter: 3,
            tol: 0.0,
            ..Default::default()
        };
        let start = params.fit(x.as_ref()).unwrap();
        let data = EmData::new(x.as_ref(), GmmCovariance::Diagonal);
        let (fused_ll, fused) = params.iterate(&start, &data).unwrap();
        let (ll, resp) = start.e_step_on(&data);
        let apart = params.m_step_on(&data, resp.as_ref()).unwrap();
        let rel = |a: f64, b: f64| (a - b).abs() / b.abs().max(1e-300);
        assert!(
            rel(fused_ll, ll) < 1e-9,
            "{name}: log-likelihood {fused_ll} vs {ll}"
        );
        let worst = |a: MatRef<'_, f64>, b: MatRef<'_, f64>| {
            (0..a.nrows())
                .flat_map(|i| (0..a.ncols()).map(move |j| (i, j)))
                .map(|(i, j)| (a[(i, j)] - b[(i, j)]).abs() / b[(i, j)].abs().max(1e-12))
                .fold(0.0, f64::max)
        };
        let means = worst(fused.means.as_ref(), apart.means.as_ref());
        assert!(means < 1e-9, "{name}: means differ by {means:e}");
        let (Covariances::Diagonal(v1), Covariances::Diagonal(v2)) =
            (&fused.covariances, &apart.covariances)
        else {
            panic!("diagonal fits give diagonal covariances")
        };
        // A variance is E[x²] − μ², a difference of terms up to 1.6 here: its rounding is
        // bounded in absolute terms, not relative to a variance near reg_covar.
        let vars = (0..v1.nrows())
            .flat_map(|c| (0..v1.ncols()).map(move |j| (c, j)))
            .map(|(c, j)| (v1[(c, j)] - v2[(c, j)]).abs())
            .fold(0.0, f64::max);
        assert!(vars < 1e-9, "{name}: variances differ by {vars:e}");
        for (a, b) in fused.weights.iter().zip(&apart.weights) {
            assert!(rel(*a, *b) < 1e-9, "{name}: weights {a} vs {b}");
        }
        // The same bits on one thread as on several.
        let on = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| {
                    let data = EmData::new(x.as_ref(), GmmCovariance::Diagonal);
                    params.iterate(&start, &data).unwrap()
                })
        };
        let (one, many) = (on(1), on(3));
        assert_eq!(one.0.to_bits(), many.0.to_bits(), "{name}");
        assert_eq!(one.1.means, many.1.means, "{name}");
        assert_eq!(one.1.covariances, many.1.covariances, "{name}");
    }
}

// ------------------------------------------------------------------ digits and errors

#[test]
fn gda_on_digits_needs_shrinkage_and_then_samples_and_classifies() {
    let split = genmod::data::mnist::embedded();
    let train = split.train.take(2000);
    let x = genmod::classical::features(&train);
    let y = genmod::classical::labels(&train).unwrap();
    let err = GdaParams::default().fit(x.as_ref(), &y, 10).unwrap_err();
    assert!(
        matches!(err, ModelError::NotPositiveDefinite { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("shrinkage"), "{err}");
    let m = GdaParams {
        shrinkage: 0.1,
        ..Default::default()
    }
    .fit(x.as_ref(), &y, 10)
    .unwrap();
    let test = split.test.take(500);
    let xt = genmod::classical::features(&test);
    let yt = genmod::classical::labels(&test).unwrap();
    let acc = m.accuracy(xt.as_ref(), &yt);
    assert!(acc > 0.8, "LDA accuracy on digits {acc}");
    let s = m.sample_class(3, 4, &mut ChaCha8Rng::seed_from_u64(0));
    assert_eq!((s.nrows(), s.ncols()), (4, 784));
    // A sampled "3" is nearer, on average, to the class-3 mean than to the class-1 mean.
    let dist = |c: usize| {
        (0..4)
            .map(|i| {
                (0..784)
                    .map(|j| (s[(i, j)] - m.means[(c, j)]).powi(2))
                    .sum::<f64>()
            })
            .sum::<f64>()
    };
    assert!(dist(3) < dist(1));
}

#[test]
fn invalid_parameters_are_named() {
    let (x, y) = tiny();
    let e = GdaParams {
        shrinkage: 1.5,
        ..Default::default()
    }
    .fit(x.as_ref(), &y, 2)
    .unwrap_err();
    assert!(
        e.to_string().contains("shrinkage") && e.to_string().contains("[0, 1]"),
        "{e}"
    );
    let e = GaussianNbParams {
        var_smoothing: f64::NAN,
        shared_variance: false,
    }
    .fit(x.as_ref(), &y, 2)
    .unwrap_err();
    assert!(e.to_string().contains("var_smoothing"), "{e}");
    let e = GmmParams {
        components: 0,
        ..Default::default()
    }
    .fit(x.as_ref())
    .unwrap_err();
    assert!(e.to_string().contains("components"), "{e}");
    let e = GaussianNbParams::default()
        .fit(x.as_ref(), &y[..5], 2)
        .unwrap_err();
    assert!(e.to_string().contains("5 labels for 8 rows"), "{e}");
    let e = NaiveBayesParams { alpha: -1.0 }
        .fit_categorical(&play_tennis::categorical())
        .unwrap_err();
    assert!(e.to_string().contains("alpha"), "{e}");
}

// ------------------------------------------------------------------ 2-D demonstrations

#[test]
fn clustering_demo_recovers_the_three_clusters() {
    let (grid, g) = genmod::figures::cluster_figure(0, 300).unwrap();
    assert_eq!((grid.width, grid.height), (300, 300));
    // The generating means (see demo::three_clusters); each must be matched by a component.
    for (mx, my) in [(-2.0, -1.5), (2.5, -1.0), (0.5, 3.0)] {
        let nearest = (0..3)
            .map(|k| ((g.means[(k, 0)] - mx).powi(2) + (g.means[(k, 1)] - my).powi(2)).sqrt())
            .fold(f64::INFINITY, f64::min);
        assert!(nearest < 0.25, "no component near ({mx}, {my}): {nearest}");
    }
}

/// Figure 3.2's claim: with variances shared by both classes the log-odds is affine in x
/// (a straight boundary); with a variance per class it has a quadratic term (a curved one).
#[test]
fn boundary_demo_is_straight_with_shared_variances_and_curved_without() {
    use genmod::classical::demo;
    let (x, y) = demo::two_classes(0, 150);
    let logit = |m: &genmod::classical::gaussian_nb::GaussianNb, a: f64, b: f64| {
        let p = demo::posterior(m, a, b);
        (p / (1.0 - p)).ln()
    };
    for (shared, curved) in [(true, false), (false, true)] {
        let m = demo::fit_boundary(&x, &y, shared).unwrap();
        // Second differences of the log-odds along both axes and a diagonal.
        let mut largest: f64 = 0.0;
        for (dx, dy) in [(1.0, 0.0), (0.0, 1.0), (0.7, 0.7)] {
            let (a, b) = (0.3, 0.4);
            let second =
                logit(&m, a + dx, b + dy) - 2.0 * logit(&m, a, b) + logit(&m, a - dx, b - dy);
            largest = largest.max(second.abs());
        }
        assert_eq!(
            largest > 0.1,
            curved,
            "shared = {shared}: second difference {largest}"
        );
    }
    // The picture: two panels side by side, each shaded with both classes' tints.
    let g = genmod::figures::boundary_figure(0, 300).unwrap();
    assert_eq!((g.width, g.height), (300 * 2 + 8, 300));
    for x0 in [0, 308] {
        let tints: std::collections::HashSet<[u8; 3]> = (40..260)
            .flat_map(|yy| (x0 + 60..x0 + 290).map(move |xx| (xx, yy)))
            .map(|(xx, yy)| g.pixel(xx, yy))
            .collect();
        let blue_ish = tints.iter().any(|p| p[2] as i32 > p[0] as i32 + 30);
        let orange_ish = tints.iter().any(|p| p[0] as i32 > p[2] as i32 + 30);
        assert!(
            blue_ish && orange_ish,
            "panel at {x0} lacks a class's shading"
        );
    }
}

/// Report 3.4 says constant covariance matrices make the contours circular and the
/// boundary the perpendicular bisector of the two means. Circular contours need an
/// isotropic shared covariance σ²I; the bisector needs that and equal priors. A shared but
/// stretched covariance keeps the boundary linear (normal Σ⁻¹(μ₁ − μ₀), not μ₁ − μ₀), and
/// unequal priors shift it off the midpoint.
#[test]
fn the_boundary_is_the_perpendicular_bisector_only_for_an_isotropic_covariance_and_equal_priors() {
    let (mu0, mu1) = ([0.0, 0.0], [2.0, 1.0]);
    // Four points around each mean at ±(a, 0) and ±(0, b): the pooled covariance is
    // diag(a², b²)/2. `extra` copies of class 1's points change its prior.
    let fit = |a: f64, b: f64, extra: usize| {
        let offsets = [[a, 0.0], [-a, 0.0], [0.0, b], [0.0, -b]];
        let mut rows = Vec::new();
        let mut y = Vec::new();
        for (c, mu) in [mu0, mu1].iter().enumerate() {
            let copies = if c == 1 { 1 + extra } else { 1 };
            for _ in 0..copies {
                for o in offsets {
                    rows.push([mu[0] + o[0], mu[1] + o[1]]);
                    y.push(c);
                }
            }
        }
        let x = Mat::from_fn(rows.len(), 2, |i, j| rows[i][j]);
        GdaParams::default()
            .fit(x.as_ref(), &y, 2)
            .unwrap()
            .logistic_form()
            .unwrap()
    };
    let diff = [mu1[0] - mu0[0], mu1[1] - mu0[1]];
    let mid = [(mu0[0] + mu1[0]) / 2.0, (mu0[1] + mu1[1]) / 2.0];
    // sin of the angle between the boundary's normal w and μ₁ − μ₀, and the log-odds at the
    // midpoint: both zero for the perpendicular bisector.
    let describe = |(w, b): (Vec<f64>, f64)| {
        let cross = w[0] * diff[1] - w[1] * diff[0];
        let sin = cross / ((w[0].hypot(w[1])) * diff[0].hypot(diff[1]));
        (sin, w[0] * mid[0] + w[1] * mid[1] + b)
    };
    let (sin, at_mid) = describe(fit(1.0, 1.0, 0));
    assert!(
        sin.abs() < 1e-12 && at_mid.abs() < 1e-12,
        "isotropic, equal priors: {sin} {at_mid}"
    );
    let (sin, at_mid) = describe(fit(2.0, 0.5, 0));
    assert!(
        sin.abs() > 0.5,
        "stretched covariance: the normal turns ({sin})"
    );
    assert!(
        at_mid.abs() < 1e-12,
        "still through the midpoint with equal priors"
    );
    let (sin, at_mid) = describe(fit(1.0, 1.0, 1));
    assert!(sin.abs() < 1e-12, "isotropic: the normal is μ₁ − μ₀");
    assert!(
        (at_mid - 2f64.ln()).abs() < 1e-12,
        "priors 2:1 move the midpoint's log-odds to log 2, got {at_mid}"
    );
}

/// Report 3.3 puts the "zero frequency" problem on Gaussian naive Bayes. Zero counts break
/// categorical naive Bayes: an unseen value makes a class impossible whatever the other
/// features say. A Gaussian density is never zero; what breaks GNB is a zero variance (a
/// feature constant within a class), which `var_smoothing` floors.
#[test]
fn zero_frequencies_break_categorical_naive_bayes_and_zero_variances_break_gnb() {
    let nb = NaiveBayesParams { alpha: 0.0 }
        .fit_categorical(&play_tennis::categorical())
        .unwrap();
    // Overcast never occurs with No in the table: P(No | Overcast, …) is 0 even for the
    // conditions that otherwise favour No most.
    let overcast_no = nb.predict_proba_row(&[Some(1), Some(2), Some(0), Some(1)]);
    assert_eq!(overcast_no[0], 0.0, "{overcast_no:?}");
    // A Gaussian gives an unseen value a positive density, but a feature constant within a
    // class has no variance to divide by.
    let x = Mat::from_fn(6, 2, |i, j| if j == 0 { i as f64 } else { (i / 3) as f64 });
    let y = [0, 0, 0, 1, 1, 1];
    let raw = GaussianNbParams {
        var_smoothing: 0.0,
        shared_variance: false,
    }
    .fit(x.as_ref(), &y, 2);
    let e = raw.expect_err("zero variance must be refused");
    assert!(e.to_string().contains("zero variance"), "{e}");
    let floored = GaussianNbParams::default().fit(x.as_ref(), &y, 2).unwrap();
    let far = Mat::from_fn(1, 2, |_, j| [100.0, 0.5][j]);
    let lp = floored.predict_log_proba(far.as_ref());
    assert!(lp[(0, 0)].is_finite() && lp[(0, 1)].is_finite(), "{lp:?}");
}
