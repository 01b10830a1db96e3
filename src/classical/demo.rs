//! The data and fits behind the report's 2-D pictures: Gaussian naive Bayes boundaries with a
//! shared or a per-class variance (figure 3.2) and EM clustering (figure 3.5). The drawing
//! lives with the other figures (`figures::two_d`).

use super::gaussian_nb::{GaussianNb, GaussianNbParams};
use super::gmm::{Covariances, Gmm, GmmCovariance, GmmParams};
use super::{ClassConditional, Result, cholesky};
use faer::Mat;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

/// Which of the report's 2-D pictures to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Demo {
    /// Figure 3.2: Gaussian naive Bayes boundaries, shared against per-class variances.
    Boundary,
    /// Figure 3.5: a three-component mixture fitted by EM.
    Clusters,
}

/// Colours of classes and components (colour-blind-safe pairs first).
pub const PALETTE: [[u8; 3]; 4] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [148, 103, 189],
];

/// The data window of the 2-D figures.
pub const VIEW_X: (f64, f64) = (-5.0, 6.0);
pub const VIEW_Y: (f64, f64) = (-4.5, 6.5);

/// Two classes whose variances differ: a quadratic boundary unless variances are shared.
pub fn two_classes(seed: u64, per_class: usize) -> (Mat<f64>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let spec = [((-1.0, 0.0), (1.0, 0.6)), ((2.0, 1.5), (0.5, 1.6))];
    let n = 2 * per_class;
    let mut x = Mat::zeros(n, 2);
    let mut y = Vec::with_capacity(n);
    for i in 0..n {
        let c = i % 2;
        let ((mx, my), (sx, sy)) = spec[c];
        x[(i, 0)] = mx + sx * rng.sample::<f64, _>(StandardNormal);
        x[(i, 1)] = my + sy * rng.sample::<f64, _>(StandardNormal);
        y.push(c);
    }
    (x, y)
}

/// Gaussian naive Bayes on [`two_classes`], with a variance per feature shared by both
/// classes (`shared`: a linear boundary) or one per class (a quadratic boundary).
pub fn fit_boundary(x: &Mat<f64>, y: &[usize], shared: bool) -> Result<GaussianNb> {
    GaussianNbParams {
        var_smoothing: 1e-9,
        shared_variance: shared,
    }
    .fit(x.as_ref(), y, 2)
}

/// P(y = 1 | (x₁, x₂)) under a fitted two-class model.
pub fn posterior(m: &impl ClassConditional, x1: f64, x2: f64) -> f64 {
    let p = Mat::from_fn(1, 2, |_, j| if j == 0 { x1 } else { x2 });
    m.predict_log_proba(p.as_ref())[(0, 1)].exp()
}

/// Three elongated, overlapping clusters.
pub fn three_clusters(seed: u64, n: usize) -> Mat<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // (mean, Cholesky factor rows) of each cluster.
    let spec = [
        ((-2.0, -1.5), [[1.0, 0.0], [0.6, 0.5]]),
        ((2.5, -1.0), [[0.5, 0.0], [-0.3, 1.1]]),
        ((0.5, 3.0), [[1.3, 0.0], [0.2, 0.5]]),
    ];
    let mut x = Mat::zeros(n, 2);
    for i in 0..n {
        let ((mx, my), l) = spec[i % 3];
        let (z0, z1): (f64, f64) = (rng.sample(StandardNormal), rng.sample(StandardNormal));
        x[(i, 0)] = mx + l[0][0] * z0;
        x[(i, 1)] = my + l[1][0] * z0 + l[1][1] * z1;
    }
    x
}

/// Points on the ellipse at `r` standard deviations of component `c`.
pub fn ellipse(g: &Gmm, c: usize, r: f64) -> Vec<(f64, f64)> {
    let Covariances::Full(covs) = &g.covariances else {
        return Vec::new();
    };
    let l =
        cholesky(covs[c].as_ref(), "component").expect("fitted covariances are positive definite");
    (0..=128)
        .map(|s| {
            let t = s as f64 / 128.0 * std::f64::consts::TAU;
            let (a, b) = (r * t.cos(), r * t.sin());
            (
                g.means[(c, 0)] + l[(0, 0)] * a,
                g.means[(c, 1)] + l[(1, 0)] * a + l[(1, 1)] * b,
            )
        })
        .collect()
}

/// Figure 3.5's data and fit: a 3-component full-covariance mixture fitted by EM to
/// [`three_clusters`].
pub fn fit_clusters(seed: u64) -> Result<(Mat<f64>, Gmm)> {
    let x = three_clusters(seed, 450);
    let g = GmmParams {
        components: 3,
        covariance: GmmCovariance::Full,
        tol: 1e-6,
        seed,
        ..GmmParams::default()
    }
    .fit(x.as_ref())?;
    Ok((x, g))
}
