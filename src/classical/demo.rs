//! The report's 2-D pictures, regenerated: decision boundaries of Gaussian naive Bayes with
//! a shared or a per-class variance (figure 3.2) and EM clustering (figure 3.5).

use super::gaussian_nb::GaussianNbParams;
use super::gmm::{Covariances, Gmm, GmmCovariance, GmmParams};
use super::{ClassConditional, Result, cholesky};
use crate::render::Grid;
use crate::render::canvas::{Canvas, mix, side_by_side};
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

const VIEW_X: (f64, f64) = (-5.0, 6.0);
const VIEW_Y: (f64, f64) = (-4.5, 6.5);

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

fn boundary_panel(x: &Mat<f64>, y: &[usize], shared: bool, size: usize) -> Result<Grid> {
    let m = GaussianNbParams {
        var_smoothing: 1e-9,
        shared_variance: shared,
    }
    .fit(x.as_ref(), y, 2)?;
    let posterior = |px: f64, py: f64| {
        let p = Mat::from_fn(1, 2, |_, j| if j == 0 { px } else { py });
        m.predict_log_proba(p.as_ref())[(0, 1)].exp()
    };
    let mut c = Canvas::new(size, size, VIEW_X, VIEW_Y);
    let light = |col: [u8; 3]| mix(col, [255, 255, 255], 0.75);
    c.shade(|a, b| mix(light(PALETTE[0]), light(PALETTE[1]), posterior(a, b)));
    c.boundary(|a, b| (posterior(a, b) > 0.5) as usize, [0, 0, 0]);
    for i in 0..x.nrows() {
        c.point(x[(i, 0)], x[(i, 1)], 1, PALETTE[y[i]]);
    }
    Ok(c.grid)
}

/// Figure 3.2: left, shared variances (a straight boundary); right, per-class variances
/// (a curved one). Background: P(y = 1 | x) from blue (0) to orange (1).
pub fn boundary_figure(seed: u64, size: usize) -> Result<Grid> {
    let (x, y) = two_classes(seed, 150);
    Ok(side_by_side(
        &[
            boundary_panel(&x, &y, true, size)?,
            boundary_panel(&x, &y, false, size)?,
        ],
        8,
    ))
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
fn ellipse(g: &Gmm, c: usize, r: f64) -> Vec<(f64, f64)> {
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

/// Figure 3.5: a 3-component full-covariance mixture fitted by EM; each point coloured by
/// its responsibilities, each component drawn at 1 and 2 standard deviations.
pub fn cluster_figure(seed: u64, size: usize) -> Result<(Grid, Gmm)> {
    let x = three_clusters(seed, 450);
    let g = GmmParams {
        components: 3,
        covariance: GmmCovariance::Full,
        tol: 1e-6,
        seed,
        ..GmmParams::default()
    }
    .fit(x.as_ref())?;
    let resp = g.responsibilities(x.as_ref());
    let mut c = Canvas::new(size, size, VIEW_X, VIEW_Y);
    for i in 0..x.nrows() {
        let mut col = [0.0; 3];
        for k in 0..3 {
            for (ch, v) in col.iter_mut().enumerate() {
                *v += resp[(i, k)] * PALETTE[k][ch] as f64;
            }
        }
        c.point(x[(i, 0)], x[(i, 1)], 1, col.map(|v| v.round() as u8));
    }
    for (k, colour) in PALETTE.iter().enumerate().take(3) {
        for r in [1.0, 2.0] {
            c.polyline(&ellipse(&g, k, r), mix(*colour, [0, 0, 0], 0.4));
        }
        c.point(g.means[(k, 0)], g.means[(k, 1)], 2, [0, 0, 0]);
    }
    Ok((c.grid, g))
}
