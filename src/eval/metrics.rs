//! Measures of sample quality on feature vectors: the Fréchet distance (Heusel et al. 2017),
//! precision and recall (Kynkäänniemi et al. 2019), and class coverage.

use faer::{Mat, MatRef, Side};

/// Mean and covariance (divided by n − 1) of the rows of `x`.
pub fn mean_cov(x: MatRef<'_, f64>) -> (Vec<f64>, Mat<f64>) {
    let (n, d) = (x.nrows(), x.ncols());
    let mean: Vec<f64> = (0..d)
        .map(|j| (0..n).map(|i| x[(i, j)]).sum::<f64>() / n as f64)
        .collect();
    let centred = Mat::from_fn(n, d, |i, j| x[(i, j)] - mean[j]);
    let mut cov = crate::classical::gmm::gram(centred.as_ref());
    let denom = (n.max(2) - 1) as f64;
    for a in 0..d {
        for b in 0..d {
            cov[(a, b)] /= denom;
        }
    }
    (mean, cov)
}

/// Symmetric square root of a positive semi-definite matrix (negative rounding clipped).
fn sqrt_psd(m: MatRef<'_, f64>) -> Result<Mat<f64>, String> {
    let e = m
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| format!("eigendecomposition failed: {e:?}"))?;
    let (u, s) = (e.U(), e.S().column_vector());
    let d = m.nrows();
    let scaled = Mat::from_fn(d, d, |i, j| u[(i, j)] * s[j].max(0.0).sqrt());
    Ok(crate::classical::matmul(scaled.as_ref(), u.transpose()))
}

/// ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁^½ Σ₂ Σ₁^½)^½) between the rows of `a` and of `b`.
pub fn frechet_distance(a: MatRef<'_, f64>, b: MatRef<'_, f64>) -> Result<f64, String> {
    if a.ncols() != b.ncols() || a.nrows() < 2 || b.nrows() < 2 {
        return Err(format!(
            "need at least two rows of the same dimension, got {}x{} and {}x{}",
            a.nrows(),
            a.ncols(),
            b.nrows(),
            b.ncols()
        ));
    }
    let (m1, s1) = mean_cov(a);
    let (m2, s2) = mean_cov(b);
    let r1 = sqrt_psd(s1.as_ref())?;
    let inner = crate::classical::matmul(
        crate::classical::matmul(r1.as_ref(), s2.as_ref()).as_ref(),
        r1.as_ref(),
    );
    // Symmetrise against rounding before the eigendecomposition.
    let d = inner.nrows();
    let sym = Mat::from_fn(d, d, |i, j| 0.5 * (inner[(i, j)] + inner[(j, i)]));
    let eig = sym
        .self_adjoint_eigenvalues(Side::Lower)
        .map_err(|e| format!("eigenvalues failed: {e:?}"))?;
    let tr_sqrt: f64 = eig.iter().map(|l| l.max(0.0).sqrt()).sum();
    let tr = |s: &Mat<f64>| (0..d).map(|i| s[(i, i)]).sum::<f64>();
    let dm: f64 = m1.iter().zip(&m2).map(|(x, y)| (x - y).powi(2)).sum();
    Ok((dm + tr(&s1) + tr(&s2) - 2.0 * tr_sqrt).max(0.0))
}

/// Squared Euclidean distances between the rows of `a` and the rows of `b`.
fn sq_dists(a: MatRef<'_, f64>, b: MatRef<'_, f64>) -> Mat<f64> {
    let na: Vec<f64> = (0..a.nrows())
        .map(|i| (0..a.ncols()).map(|j| a[(i, j)].powi(2)).sum())
        .collect();
    let nb: Vec<f64> = (0..b.nrows())
        .map(|i| (0..b.ncols()).map(|j| b[(i, j)].powi(2)).sum())
        .collect();
    let cross = crate::classical::matmul(a, b.transpose());
    Mat::from_fn(a.nrows(), b.nrows(), |i, j| {
        (na[i] + nb[j] - 2.0 * cross[(i, j)]).max(0.0)
    })
}

/// Distance of each row to its k-th nearest other row of the same set.
fn knn_radii(x: MatRef<'_, f64>, k: usize) -> Vec<f64> {
    let d = sq_dists(x, x);
    (0..x.nrows())
        .map(|i| {
            let mut row: Vec<f64> = (0..x.nrows())
                .filter(|&j| j != i)
                .map(|j| d[(i, j)])
                .collect();
            let k = k.clamp(1, row.len().max(1));
            row.select_nth_unstable_by(k - 1, f64::total_cmp);
            row[k - 1]
        })
        .collect()
}

/// Share of `probe` rows inside the k-NN ball of at least one `support` row.
fn inside_manifold(support: MatRef<'_, f64>, probe: MatRef<'_, f64>, k: usize) -> f64 {
    let radii = knn_radii(support, k);
    let d = sq_dists(probe, support);
    let inside = (0..probe.nrows())
        .filter(|&i| (0..support.nrows()).any(|j| d[(i, j)] <= radii[j]))
        .count();
    inside as f64 / probe.nrows().max(1) as f64
}

/// (precision, recall): how many samples fall near real data, and how much of the real
/// data falls near samples, with k-nearest-neighbour balls (Kynkäänniemi et al. 2019).
pub fn precision_recall(real: MatRef<'_, f64>, fake: MatRef<'_, f64>, k: usize) -> (f64, f64) {
    (
        inside_manifold(real, fake, k),
        inside_manifold(fake, real, k),
    )
}

/// Class histogram of predicted labels (normalised).
pub fn histogram(labels: &[usize], classes: usize) -> Vec<f64> {
    let mut h = vec![0.0; classes];
    for &l in labels {
        if l < classes {
            h[l] += 1.0;
        }
    }
    let n = labels.len().max(1) as f64;
    h.iter().map(|v| v / n).collect()
}

/// KL(p ‖ q) in nats, with `eps` added to q so that an empty class of q stays finite.
pub fn kl_divergence(p: &[f64], q: &[f64], eps: f64) -> f64 {
    p.iter()
        .zip(q)
        .filter(|(a, _)| **a > 0.0)
        .map(|(a, b)| a * (a / (b + eps)).ln())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_distr::StandardNormal;

    fn gaussian(n: usize, mean: &[f64], scale: &[f64], seed: u64) -> Mat<f64> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        Mat::from_fn(n, mean.len(), |_, j| {
            mean[j] + scale[j] * rng.sample::<f64, _>(StandardNormal)
        })
    }

    #[test]
    fn frechet_is_zero_for_identical_sets() {
        let a = gaussian(200, &[1.0, -2.0, 0.5], &[1.0, 0.3, 2.0], 1);
        assert!(frechet_distance(a.as_ref(), a.as_ref()).unwrap() < 1e-8);
    }

    #[test]
    fn frechet_matches_the_closed_form_for_diagonal_gaussians() {
        // For diagonal covariances: Σ_j (μ1j − μ2j)² + (σ1j − σ2j)². Compare against the
        // sample statistics of the two sets (the closed form holds for them exactly).
        let a = gaussian(2000, &[0.0, 0.0], &[1.0, 2.0], 2);
        let b = gaussian(2000, &[3.0, -1.0], &[0.5, 2.0], 3);
        let fd = frechet_distance(a.as_ref(), b.as_ref()).unwrap();
        let want = 3.0f64.powi(2) + 1.0 + (1.0f64 - 0.5).powi(2);
        assert!((fd - want).abs() < 0.35, "{fd} vs about {want}");
        // 1-D: exactly (μ1 − μ2)² + (σ1 − σ2)² with the sample moments.
        let x = Mat::from_fn(4, 1, |i, _| [0.0, 1.0, 2.0, 3.0][i]);
        let y = Mat::from_fn(4, 1, |i, _| [10.0, 12.0, 14.0, 16.0][i]);
        let (sx, sy) = ((5.0f64 / 3.0).sqrt(), (20.0f64 / 3.0).sqrt());
        let exact = (1.5f64 - 13.0).powi(2) + (sx - sy).powi(2);
        assert!((frechet_distance(x.as_ref(), y.as_ref()).unwrap() - exact).abs() < 1e-9);
    }

    #[test]
    fn precision_and_recall_on_toy_sets() {
        // Real data: two 5x4 grids of distinct points far apart; fakes cover only the
        // first grid (slightly offset): precision near 1, recall near ½.
        let grid = |i: usize, j: usize, base: f64| {
            base + if j == 0 {
                (i % 5) as f64 * 0.1
            } else {
                ((i / 5) % 4) as f64 * 0.1
            }
        };
        let real = Mat::from_fn(40, 2, |i, j| grid(i, j, if i < 20 { 0.0 } else { 10.0 }));
        let fake = Mat::from_fn(20, 2, |i, j| grid(i, j, 0.01));
        let (p, r) = precision_recall(real.as_ref(), fake.as_ref(), 3);
        assert!(p > 0.95, "precision {p}");
        assert!((r - 0.5).abs() < 0.05, "recall {r}");
        // Fakes far from everything: precision 0.
        let far = Mat::from_fn(10, 2, |i, _| 100.0 + i as f64);
        assert_eq!(precision_recall(real.as_ref(), far.as_ref(), 3).0, 0.0);
    }

    #[test]
    fn coverage_kl_is_zero_for_equal_histograms_and_grows_with_missing_classes() {
        let even = histogram(&(0..100).map(|i| i % 10).collect::<Vec<_>>(), 10);
        assert!(kl_divergence(&even, &even, 1e-12).abs() < 1e-9);
        let half = histogram(&(0..100).map(|i| i % 5).collect::<Vec<_>>(), 10);
        // Half the classes, each twice as frequent: KL(half ‖ even) = ln 2.
        assert!((kl_divergence(&half, &even, 0.0) - 2f64.ln()).abs() < 1e-12);
    }
}
