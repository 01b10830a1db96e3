//! Executable exercises for the book (book/src/exercises.md). Each function below ships
//! with a reference answer; replace its body with your own and run
//! `cargo test --test exercises`: the tests say whether your answer is right.

use faer::Mat;
use genmod::classical::gmm::{Covariances, Gmm};
use genmod::data::play_tennis;

/// Exercise 1 (3.1): the add-alpha estimate of one cell of a multinomial over `cells` cells.
fn smoothed_estimate(count: u64, total: u64, cells: usize, alpha: f64) -> f64 {
    (count as f64 + alpha) / (total as f64 + alpha * cells as f64)
}

/// Exercise 2 (3.2): p(No | x) from the priors and the four conditionals of each class.
fn posterior_no(prior: [f64; 2], cond_no: [f64; 4], cond_yes: [f64; 4]) -> f64 {
    let no = prior[0] * cond_no.iter().product::<f64>();
    let yes = prior[1] * cond_yes.iter().product::<f64>();
    no / (no + yes)
}

/// Exercise 3 (3.5): the responsibility of each component for the point `x` (1-D mixture).
fn responsibility(x: f64, weights: &[f64], means: &[f64], variances: &[f64]) -> Vec<f64> {
    let dens: Vec<f64> = (0..weights.len())
        .map(|k| {
            weights[k] * (-(x - means[k]).powi(2) / (2.0 * variances[k])).exp()
                / (2.0 * std::f64::consts::PI * variances[k]).sqrt()
        })
        .collect();
    let total: f64 = dens.iter().sum();
    dens.iter().map(|d| d / total).collect()
}

/// Exercise 4 (3.7): KL(N(mu, exp(logvar)) || N(0, 1)) for one dimension.
fn gaussian_kl(mu: f64, logvar: f64) -> f64 {
    -0.5 * (1.0 + logvar - mu * mu - logvar.exp())
}

/// Exercise 5 (4.1): the optimal discriminator on each point of a discrete space.
fn optimal_d(p_data: &[f64], p_g: &[f64]) -> Vec<f64> {
    p_data.iter().zip(p_g).map(|(a, b)| a / (a + b)).collect()
}

/// Exercise 5 (4.1): V(D*, G) = E_data[log D*] + E_g[log(1 - D*)].
fn value_at_optimum(p_data: &[f64], p_g: &[f64]) -> f64 {
    let d = optimal_d(p_data, p_g);
    p_data.iter().zip(&d).map(|(p, d)| p * d.ln()).sum::<f64>()
        + p_g
            .iter()
            .zip(&d)
            .map(|(p, d)| p * (1.0 - d).ln())
            .sum::<f64>()
}

/// Exercise 6 (3.4): the shrinkage that lets GDA fit 2,000 digits well.
const GDA_SHRINKAGE: f64 = 0.1;

#[test]
fn exercise_1_smoothing_sums_to_one() {
    let rows: Vec<Vec<usize>> = play_tennis::table()
        .iter()
        .map(|d| d.features().to_vec())
        .collect();
    let mle = genmod::classical::multinomial::MultinomialParams { alpha: 0.0 }
        .fit(&rows, &play_tennis::CARDINALITIES)
        .unwrap();
    let sum: f64 = mle
        .counts()
        .iter()
        .map(|&c| smoothed_estimate(c, 14, 36, 1.0))
        .sum();
    assert!((sum - 1.0).abs() < 1e-12, "your estimates sum to {sum}");
    assert!((smoothed_estimate(0, 14, 36, 1.0) - 1.0 / 50.0).abs() < 1e-12);
    assert!(
        (smoothed_estimate(3, 10, 5, 0.0) - 0.3).abs() < 1e-12,
        "alpha = 0 is the MLE"
    );
}

#[test]
fn exercise_2_naive_bayes_posterior() {
    let nb = genmod::classical::naive_bayes::NaiveBayesParams { alpha: 0.0 }
        .fit_categorical(&play_tennis::categorical())
        .unwrap();
    let q = [0usize, 2, 0, 1]; // Sunny, Cool, High, Strong
    let cond = |y: usize| -> [f64; 4] { std::array::from_fn(|k| nb.theta[y][k][q[k]]) };
    let yours = posterior_no([nb.class_prior[0], nb.class_prior[1]], cond(0), cond(1));
    let want = nb.predict_proba_row(&q.map(Some))[0];
    assert!(
        (yours - want).abs() < 1e-12,
        "yours {yours}, the model's {want}"
    );
}

#[test]
fn exercise_3_e_step() {
    let (w, m, v) = ([0.3, 0.7], [-1.0, 2.0], [0.5, 2.0]);
    let g = Gmm::new(
        w.to_vec(),
        Mat::from_fn(2, 1, |k, _| m[k]),
        Covariances::Diagonal(Mat::from_fn(2, 1, |k, _| v[k])),
    )
    .unwrap();
    for x in [-3.0, -1.0, 0.4, 2.0, 5.0] {
        let r = g.e_step(Mat::from_fn(1, 1, |_, _| x).as_ref()).1;
        let yours = responsibility(x, &w, &m, &v);
        for k in 0..2 {
            assert!(
                (yours[k] - r[(0, k)]).abs() < 1e-10,
                "x = {x}, component {k}"
            );
        }
    }
}

#[test]
fn exercise_4_kl_closed_form() {
    use rand::{Rng, SeedableRng};
    let (mu, logvar): (f64, f64) = (0.8, -0.6);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
    let n = 200_000;
    let s = (0.5 * logvar).exp();
    let mc: f64 = (0..n)
        .map(|_| {
            let e: f64 = rng.sample(rand_distr::StandardNormal);
            let z: f64 = mu + s * e;
            -0.5 * (e * e + logvar) + 0.5 * z * z
        })
        .sum::<f64>()
        / n as f64;
    let yours = gaussian_kl(mu, logvar);
    assert!((yours - mc).abs() < 0.01, "yours {yours}, Monte Carlo {mc}");
}

#[test]
fn exercise_5_optimal_discriminator_and_minus_log_4() {
    let p = [0.2, 0.5, 0.3];
    assert!(optimal_d(&p, &p).iter().all(|d| (d - 0.5).abs() < 1e-12));
    assert!((value_at_optimum(&p, &p) + 4f64.ln()).abs() < 1e-12);
    let q = [0.6, 0.1, 0.3];
    // V(D*, G) = −log 4 + 2 JSD > −log 4 when the distributions differ.
    let m: Vec<f64> = p.iter().zip(&q).map(|(a, b)| (a + b) / 2.0).collect();
    let kl = |a: &[f64]| a.iter().zip(&m).map(|(x, y)| x * (x / y).ln()).sum::<f64>();
    let jsd = 0.5 * kl(&p) + 0.5 * kl(&q);
    assert!((value_at_optimum(&p, &q) - (-(4f64.ln()) + 2.0 * jsd)).abs() < 1e-12);
    assert!(value_at_optimum(&p, &q) > -(4f64.ln()));
}

#[test]
fn exercise_6_gda_shrinkage() {
    use genmod::classical::ClassConditional;
    let split = genmod::data::mnist::embedded();
    let train = split.train.take(2000);
    let test = split.test.take(500);
    let (x, y) = (
        genmod::classical::features(&train),
        genmod::classical::labels(&train).unwrap(),
    );
    let fitted = genmod::classical::gda::GdaParams {
        shrinkage: GDA_SHRINKAGE,
        ..Default::default()
    }
    .fit(x.as_ref(), &y, 10);
    let m = fitted.unwrap_or_else(|e| panic!("shrinkage {GDA_SHRINKAGE} does not fit: {e}"));
    let acc = m.accuracy(
        genmod::classical::features(&test).as_ref(),
        &genmod::classical::labels(&test).unwrap(),
    );
    assert!(
        acc >= 0.85,
        "shrinkage {GDA_SHRINKAGE} gives {:.1}% test accuracy",
        100.0 * acc
    );
}
