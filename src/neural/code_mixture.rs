//! Sampling an autoencoder's codes from a Gaussian mixture fitted to the codes of the
//! training images: ex-post density estimation (Ghosh et al. 2020, "From variational to
//! deterministic autoencoders", section 4).
//!
//! A decoder only draws digits from codes that lie where the encoder puts digits. The
//! autoencoder has no prior at all, and the VAE's N(0, I) prior is only approximately
//! matched by the codes its encoder produces: the aggregate posterior has holes and
//! clusters, and prior draws that land in a hole decode to blurs between digits. A mixture
//! of full-covariance Gaussians fitted to the training codes by EM (the model of report
//! 3.5, `classical::gmm`) follows those clusters, and its draws decode to sharper, more
//! legible digits.
//!
//! The fit needs the training data, so the trainer does it (`train` sits above both the
//! models and the classical EM) and hands the result to [`CodeMixture::set`]. The mixture
//! is stored as parameters that no optimiser trains, so checkpoints carry it and a
//! checkpoint generates the same images wherever it is loaded.

use super::layers::ParamStore;
use candle_core::{Result, Tensor, Var};
use candle_nn::{Init, VarBuilder};
use statrs::distribution::{ContinuousCDF, Normal};

/// A fitted mixture of `k` Gaussians over `d`-dimensional codes, in f64.
#[derive(Debug, Clone, PartialEq)]
pub struct MixtureFit {
    /// K weights, summing to 1.
    pub weights: Vec<f64>,
    /// K x d means, row-major.
    pub means: Vec<f64>,
    /// K covariance matrices of d x d, row-major, one after the other.
    pub covariances: Vec<f64>,
}

/// The mixture a model decodes its samples from, held in the model's parameters: weights
/// (K), means (K x d) and the lower Cholesky factor L of each covariance (K x d x d).
/// All zero until the first fit.
pub struct CodeMixture {
    weights: Var,
    means: Var,
    factors: Var,
    k: usize,
    d: usize,
}

impl CodeMixture {
    /// An unfitted mixture of `k` components over `d`-dimensional codes, created in the
    /// model's parameters and marked as statistics, so that no optimiser takes it.
    pub(crate) fn new(k: usize, d: usize, vb: &VarBuilder, params: &ParamStore) -> Result<Self> {
        let var = |shape: Vec<usize>, name: &str| -> Result<Var> {
            Var::from_tensor(&vb.get_with_hints(shape, name, Init::Const(0.0))?)
        };
        let m = Self {
            weights: var(vec![k], "codes.mixture.weights")?,
            means: var(vec![k, d], "codes.mixture.means")?,
            factors: var(vec![k, d, d], "codes.mixture.factors")?,
            k,
            d,
        };
        params.mark_statistics(&[
            m.weights.as_tensor(),
            m.means.as_tensor(),
            m.factors.as_tensor(),
        ])?;
        Ok(m)
    }

    /// The number of components.
    pub fn components(&self) -> usize {
        self.k
    }

    /// Stores `fit`, factorising each covariance. Refused if a covariance is not positive
    /// definite or the sizes do not match the mixture's.
    pub fn set(&self, fit: &MixtureFit) -> Result<()> {
        let (k, d) = (self.k, self.d);
        if fit.weights.len() != k || fit.means.len() != k * d || fit.covariances.len() != k * d * d
        {
            candle_core::bail!(
                "a code mixture of {} weights, {} mean entries and {} covariance entries does not fit {k} components of dimension {d}",
                fit.weights.len(),
                fit.means.len(),
                fit.covariances.len()
            );
        }
        let mut factors = Vec::with_capacity(k * d * d);
        for c in 0..k {
            let l = cholesky(&fit.covariances[c * d * d..(c + 1) * d * d], d).ok_or_else(|| {
                candle_core::Error::Msg(format!(
                    "component {c} of the code mixture has a covariance that is not positive definite"
                ))
            })?;
            factors.extend(l.iter().map(|&v| v as f32));
        }
        let dev = self.weights.device();
        let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
        self.weights
            .set(&Tensor::from_vec(f32s(&fit.weights), k, dev)?)?;
        self.means
            .set(&Tensor::from_vec(f32s(&fit.means), (k, d), dev)?)?;
        self.factors
            .set(&Tensor::from_vec(factors, (k, d, d), dev)?)
    }

    /// The stored mixture (covariances rebuilt as L·Lᵀ), or None before the first fit. The
    /// trainer starts each refit from it, so a resumed run refits from the same numbers as
    /// an uninterrupted one.
    pub fn get(&self) -> Result<Option<MixtureFit>> {
        let weights = self.weights.as_tensor().to_vec1::<f32>()?;
        if weights.iter().all(|&w| w == 0.0) {
            return Ok(None);
        }
        let (k, d) = (self.k, self.d);
        let means = self.means.as_tensor().flatten_all()?.to_vec1::<f32>()?;
        let l = self.factors.as_tensor().flatten_all()?.to_vec1::<f32>()?;
        let mut covariances = vec![0.0; k * d * d];
        for c in 0..k {
            let l = &l[c * d * d..(c + 1) * d * d];
            for i in 0..d {
                for j in 0..d {
                    covariances[c * d * d + i * d + j] = (0..=i.min(j))
                        .map(|m| l[i * d + m] as f64 * l[j * d + m] as f64)
                        .sum();
                }
            }
        }
        Ok(Some(MixtureFit {
            weights: weights.iter().map(|&w| w as f64).collect(),
            means: means.iter().map(|&m| m as f64).collect(),
            covariances,
        }))
    }

    /// Maps standard normal rows `z` (N x d) to draws from the mixture, one per row and
    /// determined by it, so that fixed codes give fixed samples as with any other model.
    ///
    /// The first coordinate carries two independent pieces: u = Φ(z₀) is uniform, and the
    /// component is the c with C_{c−1} ≤ u < C_c (C the cumulative weights), which picks c
    /// with probability w_c; given c, v = (u − C_{c−1})/w_c is again uniform and
    /// independent of c, so z₀' = Φ⁻¹(v) is a fresh standard normal. The draw is then
    /// μ_c + L_c·(z₀', z₁, …, z_{d−1}).
    pub fn transform(&self, z: &Tensor) -> Result<Tensor> {
        let d = self.d;
        if z.dim(1)? != d {
            candle_core::bail!("codes of dimension {} for a mixture over {d}", z.dim(1)?);
        }
        let weights = self.weights.as_tensor().to_vec1::<f32>()?;
        if weights.iter().all(|&w| w == 0.0) {
            candle_core::bail!(
                "the code mixture has not been fitted yet (the trainer fits it at the first sample grid and at the end of every epoch)"
            );
        }
        let means = self.means.as_tensor().flatten_all()?.to_vec1::<f32>()?;
        let l = self.factors.as_tensor().flatten_all()?.to_vec1::<f32>()?;
        let rows = z.to_vec2::<f32>()?;
        let mut out = Vec::with_capacity(rows.len() * d);
        for row in &rows {
            let (c, fresh) = split_normal(row[0], &weights);
            let mut e: Vec<f64> = row.iter().map(|&x| x as f64).collect();
            e[0] = fresh;
            let lc = &l[c * d * d..(c + 1) * d * d];
            for i in 0..d {
                let s: f64 = (0..=i).map(|j| lc[i * d + j] as f64 * e[j]).sum();
                out.push((means[c * d + i] as f64 + s) as f32);
            }
        }
        Tensor::from_vec(out, (rows.len(), d), z.device())
    }
}

/// Splits one standard normal number z₀ into two independent draws (see
/// [`CodeMixture::transform`]): a component c, picked with probability `weights[c]` by
/// where u = Φ(z₀) falls among the cumulative weights, and a fresh standard normal,
/// Φ⁻¹ of u's position inside c's slice. The weights should sum to 1; the last component
/// also takes any u their rounded sum leaves over.
pub(crate) fn split_normal(z0: f32, weights: &[f32]) -> (usize, f64) {
    let phi = Normal::standard();
    let u = phi.cdf(z0 as f64);
    let k = weights.len();
    let (mut c, mut below, mut acc) = (k.saturating_sub(1), 0.0, 0.0);
    for (i, &w) in weights.iter().enumerate() {
        if u < acc + w as f64 || i + 1 == k {
            (c, below) = (i, acc);
            break;
        }
        acc += w as f64;
    }
    let w = (weights[c] as f64).max(f64::MIN_POSITIVE);
    // Kept inside (0, 1): Φ⁻¹ is infinite at the ends.
    let v = ((u - below) / w).clamp(1e-12, 1.0 - 1e-12);
    (c, phi.inverse_cdf(v))
}

/// The lower-triangular L with LLᵀ = a (row-major d x d), or None if a is not positive
/// definite.
pub(crate) fn cholesky(a: &[f64], d: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i * d + k] * l[j * d + k]).sum();
            if i == j {
                let v = a[i * d + i] - s;
                if v <= 0.0 || !v.is_finite() {
                    return None;
                }
                l[i * d + i] = v.sqrt();
            } else {
                l[i * d + j] = (a[i * d + j] - s) / l[j * d + j];
            }
        }
    }
    Some(l)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use rand::SeedableRng;

    #[test]
    fn cholesky_factor_reproduces_the_matrix_and_refuses_an_indefinite_one() {
        let a = [4.0, 2.0, 0.4, 2.0, 5.0, 1.0, 0.4, 1.0, 3.0];
        let l = cholesky(&a, 3).unwrap();
        for i in 0..3 {
            for j in 0..3 {
                let v: f64 = (0..3).map(|k| l[i * 3 + k] * l[j * 3 + k]).sum();
                assert!((v - a[i * 3 + j]).abs() < 1e-12);
            }
            for j in i + 1..3 {
                assert_eq!(l[i * 3 + j], 0.0);
            }
        }
        assert!(cholesky(&[1.0, 2.0, 2.0, 1.0], 2).is_none());
    }

    /// Two well separated components of unequal weight in 2-D: the draws from standard
    /// normal rows must fall into each component in proportion to its weight, with each
    /// component's mean and covariance.
    #[test]
    fn standard_normal_rows_become_draws_from_the_mixture() {
        let params = ParamStore::new();
        let vb = params.var_builder(&Device::Cpu);
        let m = CodeMixture::new(2, 2, &vb, &params).unwrap();
        let z0 = crate::neural::normal(
            4,
            2,
            &mut rand_chacha::ChaCha8Rng::seed_from_u64(1),
            &Device::Cpu,
        )
        .unwrap();
        assert!(
            m.transform(&z0).is_err(),
            "an unfitted mixture must refuse to sample"
        );
        let fit = MixtureFit {
            weights: vec![0.3, 0.7],
            means: vec![-10.0, 0.0, 10.0, 5.0],
            covariances: vec![1.0, 0.0, 0.0, 1.0, 4.0, 1.2, 1.2, 1.0],
        };
        m.set(&fit).unwrap();
        let back = m.get().unwrap().unwrap();
        for (a, b) in back.covariances.iter().zip(&fit.covariances) {
            assert!((a - b).abs() < 1e-5, "stored covariance {a} vs {b}");
        }
        let n = 40_000;
        let z = crate::neural::normal(
            n,
            2,
            &mut rand_chacha::ChaCha8Rng::seed_from_u64(0),
            &Device::Cpu,
        )
        .unwrap();
        let x = m.transform(&z).unwrap().to_vec2::<f32>().unwrap();
        let (left, right): (Vec<_>, Vec<_>) = x.iter().partition(|r| r[0] < 0.0);
        let share = left.len() as f64 / n as f64;
        assert!(
            (share - 0.3).abs() < 0.01,
            "share of the first component {share}"
        );
        let stats = |rows: &[&Vec<f32>]| {
            let n = rows.len() as f64;
            let mean = |j: usize| rows.iter().map(|r| r[j] as f64).sum::<f64>() / n;
            let (m0, m1) = (mean(0), mean(1));
            let cov = |a: usize, ma: f64, b: usize, mb: f64| {
                rows.iter()
                    .map(|r| (r[a] as f64 - ma) * (r[b] as f64 - mb))
                    .sum::<f64>()
                    / n
            };
            [
                m0,
                m1,
                cov(0, m0, 0, m0),
                cov(0, m0, 1, m1),
                cov(1, m1, 1, m1),
            ]
        };
        let l = stats(&left);
        let r = stats(&right);
        let close = |got: [f64; 5], want: [f64; 5]| {
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() < 0.06, "got {got:?}, want {want:?}");
            }
        };
        close(l, [-10.0, 0.0, 1.0, 0.0, 1.0]);
        close(r, [10.0, 5.0, 4.0, 1.2, 1.0]);
    }

    #[test]
    fn a_mixture_of_the_wrong_size_or_an_indefinite_covariance_is_refused() {
        let params = ParamStore::new();
        let vb = params.var_builder(&Device::Cpu);
        let m = CodeMixture::new(1, 2, &vb, &params).unwrap();
        let wrong = MixtureFit {
            weights: vec![1.0],
            means: vec![0.0; 3],
            covariances: vec![1.0, 0.0, 0.0, 1.0],
        };
        assert!(
            m.set(&wrong)
                .unwrap_err()
                .to_string()
                .contains("does not fit 1 components of dimension 2")
        );
        let indefinite = MixtureFit {
            weights: vec![1.0],
            means: vec![0.0; 2],
            covariances: vec![1.0, 2.0, 2.0, 1.0],
        };
        assert!(
            m.set(&indefinite)
                .unwrap_err()
                .to_string()
                .contains("not positive definite")
        );
        assert!(
            m.get().unwrap().is_none(),
            "a refused fit leaves the mixture unfitted"
        );
    }
}
