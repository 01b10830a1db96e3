//! Report 3.6: an MLP autoencoder, h = g(Wx + b), x̂ = f(W*h + c), trained to reconstruct
//! its input. Options: under- or over-complete code, squared error or binary cross-entropy,
//! an L2 penalty λ‖θ‖², tied weights W* = Wᵀ, and denoising (Vincent et al. 2008: the input
//! is corrupted with Gaussian noise, the target stays clean). With a 2-D code the codes of
//! the test digits show the scattered, gappy latent space of figure 3.9.

use super::code_mixture::{CodeMixture, cholesky};
use super::kernels::linear::{Activation, WeightLayout, dense_with};
use super::layers::{ParamInit, ParamStore};
use super::losses::{bce_with_logits, squared_error};
use super::{
    CodeSampling, ImageShape, Metric, Metrics, Model, NeuralConfig, ReconLoss, normal, scalar,
};
use crate::data::Batch;
use crate::neural::optim::{Adam, AdamConfig};
use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder, VarMap};
use rand_chacha::ChaCha8Rng;

/// The autoencoder's two-layer encoder and decoder; the decoder's weights may be tied.
pub struct Autoencoder {
    cfg: NeuralConfig,
    shape: ImageShape,
    params: ParamStore,
    enc: [(Tensor, Tensor); 2],
    /// Decoder weights (None when tied) and biases.
    dec: [(Option<Tensor>, Tensor); 2],
    /// The moving-average Gaussian of the codes, when samples are drawn from it.
    codes: Option<CodeStatistics>,
    /// The mixture fitted to the codes, when samples are drawn from it.
    mixture: Option<CodeMixture>,
    opt: Adam,
}

/// Moving averages of the training codes' mean and second moment, E[z] and E[zzᵀ], from
/// which generation draws z ~ N(μ, Σ), Σ = E[zzᵀ] − μμᵀ. They are statistics, like batch
/// norm's: updated by training steps, saved in checkpoints, never touched by the optimiser.
struct CodeStatistics {
    mean: candle_core::Var,
    second_moment: candle_core::Var,
}

/// The weight the averages keep at step t (from 1): the warm-up (1 + t)/(10 + t) forgets
/// the random encoder's first codes quickly; later 0.99 follows the encoder as it trains.
fn code_decay(t: u64) -> f64 {
    let t = t as f64;
    0.99f64.min((1.0 + t) / (10.0 + t))
}

impl CodeStatistics {
    fn new(dim: usize, vb: &VarBuilder) -> Result<Self> {
        let var = |t: Tensor| candle_core::Var::from_tensor(&t);
        Ok(Self {
            mean: var(vb.get_with_hints(dim, "codes.mean", Init::Const(0.0))?)?,
            second_moment: var(vb.get_with_hints(
                (dim, dim),
                "codes.second_moment",
                Init::Const(0.0),
            )?)?,
        })
    }

    /// Folds a batch of codes (N x d) into the averages after step `t` (from 1).
    fn update(&self, codes: &Tensor, t: u64) -> Result<()> {
        let n = codes.dim(0)? as f64;
        let codes = codes.detach();
        let batch_mean = (codes.sum(0)? / n)?;
        let batch_moment = (codes.t()?.matmul(&codes)? / n)?;
        let d = code_decay(t);
        let fold = |avg: &candle_core::Var, batch: &Tensor| -> Result<()> {
            avg.set(&((avg.as_tensor() * d)? + (batch * (1.0 - d))?)?)
        };
        fold(&self.mean, &batch_mean)?;
        fold(&self.second_moment, &batch_moment)
    }

    /// μ + z·Lᵀ with LLᵀ = Σ: standard normal rows `z` mapped onto the fitted Gaussian.
    fn transform(&self, z: &Tensor) -> Result<Tensor> {
        let mean = self.mean.as_tensor().to_vec1::<f32>()?;
        let moment = self.second_moment.as_tensor().to_vec2::<f32>()?;
        let d = mean.len();
        let cov: Vec<f64> = (0..d * d)
            .map(|k| {
                let (i, j) = (k / d, k % d);
                let c = moment[i][j] as f64 - mean[i] as f64 * mean[j] as f64;
                // A small ridge keeps the factorisation defined for a degenerate Σ (a
                // collapsed code dimension, or no training step yet).
                if i == j { c + 1e-5 } else { c }
            })
            .collect();
        let l = cholesky(&cov, d).ok_or_else(|| {
            candle_core::Error::Msg("the codes' covariance is not positive definite".into())
        })?;
        let l = Tensor::from_vec(
            l.iter().map(|&v| v as f32).collect::<Vec<_>>(),
            (d, d),
            z.device(),
        )?;
        let mean = Tensor::from_vec(mean, (1, d), z.device())?;
        z.matmul(&l.t()?)?.broadcast_add(&mean)
    }
}

/// act(x·W + b). Weights are stored out x in, as candle's Linear; tied decoders read the
/// encoder's weights transposed.
fn dense(x: &Tensor, w: &Tensor, b: &Tensor, transposed: bool, act: Activation) -> Result<Tensor> {
    let layout = if transposed {
        WeightLayout::InByOut
    } else {
        WeightLayout::OutByIn
    };
    dense_with(x, w, Some(b), layout, act)
}

impl Autoencoder {
    pub fn new(
        cfg: NeuralConfig,
        shape: ImageShape,
        params: ParamStore,
        vb: VarBuilder,
    ) -> Result<Self> {
        let (d, h, z) = (shape.dim(), cfg.hidden, cfg.latent_dim);
        // Weights out x in, uniform in ±1/√in; biases 0. The layers are not `Dense`, since
        // a tied decoder reads the encoder's matrices transposed.
        let weight = |(out, inp): (usize, usize), name: &str| {
            vb.get_with_hints((out, inp), name, ParamInit::fan_in(inp))
        };
        let bias = |n: usize, name: &str| vb.get_with_hints(n, name, Init::Const(0.0));
        let enc = [
            (weight((h, d), "enc1.weight")?, bias(h, "enc1.bias")?),
            (weight((z, h), "enc2.weight")?, bias(z, "enc2.bias")?),
        ];
        let untied = |shape, name: &str| (!cfg.tied).then(|| weight(shape, name)).transpose();
        let dec = [
            (untied((h, z), "dec1.weight")?, bias(h, "dec1.bias")?),
            (untied((d, h), "dec2.weight")?, bias(d, "dec2.bias")?),
        ];
        let codes = match cfg.code_sampling {
            CodeSampling::FittedGaussian => {
                let stats = CodeStatistics::new(z, &vb)?;
                params
                    .mark_statistics(&[stats.mean.as_tensor(), stats.second_moment.as_tensor()])?;
                Some(stats)
            }
            CodeSampling::StandardNormal | CodeSampling::Mixture => None,
        };
        let mixture = (cfg.code_sampling == CodeSampling::Mixture)
            .then(|| CodeMixture::new(cfg.code_components, z, &vb, &params))
            .transpose()?;
        let opt = Adam::new(params.trainable(&params.all()), AdamConfig::of(&cfg))?;
        Ok(Self {
            cfg,
            shape,
            params,
            enc,
            dec,
            codes,
            mixture,
            opt,
        })
    }

    fn code(&self, x: &Tensor) -> Result<Tensor> {
        let h = dense(x, &self.enc[0].0, &self.enc[0].1, false, Activation::Relu)?;
        dense(
            &h,
            &self.enc[1].0,
            &self.enc[1].1,
            false,
            Activation::Identity,
        )
    }

    /// Images (N x C x H x W, in [0, 1]) decoded from codes as they are.
    fn decode_images(&self, z: &Tensor) -> Result<Tensor> {
        let s = self.shape;
        candle_nn::ops::sigmoid(&self.decode_logits(z)?)?.reshape((
            z.dim(0)?,
            s.channels,
            s.height,
            s.width,
        ))
    }

    /// Decoder logits (before the output sigmoid).
    fn decode_logits(&self, z: &Tensor) -> Result<Tensor> {
        let (w1, t1) = match &self.dec[0].0 {
            Some(w) => (w, false),
            None => (&self.enc[1].0, true),
        };
        let h = dense(z, w1, &self.dec[0].1, t1, Activation::Relu)?;
        let (w2, t2) = match &self.dec[1].0 {
            Some(w) => (w, false),
            None => (&self.enc[0].0, true),
        };
        dense(&h, w2, &self.dec[1].1, t2, Activation::Identity)
    }

    fn recon_loss(&self, logits: &Tensor, x: &Tensor) -> Result<Tensor> {
        match self.cfg.recon {
            ReconLoss::Bce => bce_with_logits(logits, x),
            ReconLoss::Mse => squared_error(&candle_nn::ops::sigmoid(logits)?, x),
        }
    }

    /// λ Σ ‖W‖² over the weight matrices (not the biases).
    fn l2_penalty(&self) -> Result<Tensor> {
        let mut ws: Vec<&Tensor> = self.enc.iter().map(|(w, _)| w).collect();
        ws.extend(self.dec.iter().filter_map(|(w, _)| w.as_ref()));
        let mut total = ws[0].sqr()?.sum_all()?;
        for w in &ws[1..] {
            total = (total + w.sqr()?.sum_all()?)?;
        }
        total * self.cfg.l2
    }
}

impl Model for Autoencoder {
    fn config(&self) -> &NeuralConfig {
        &self.cfg
    }
    fn shape(&self) -> ImageShape {
        self.shape
    }
    fn varmap(&self) -> &VarMap {
        self.params.varmap()
    }
    fn optimizers(&mut self) -> Vec<(&'static str, &mut Adam)> {
        vec![("opt", &mut self.opt)]
    }
    fn watched_losses(&self, _step: u64) -> &'static [Metric] {
        // The total only: its parts trade against each other as training goes (the KL
        // term grows from 0 while the reconstruction falls), so neither alone has a stable level.
        &[Metric::Loss]
    }

    fn train_step(&mut self, batch: &Batch, step: u64, rng: &mut ChaCha8Rng) -> Result<Metrics> {
        let x = batch.images.flatten_from(1)?;
        let input = if self.cfg.denoise_std > 0.0 {
            let noise = normal(x.dim(0)?, x.dim(1)?, rng, x.device())?;
            (&x + (noise * self.cfg.denoise_std)?)?.clamp(0f32, 1f32)?
        } else {
            x.clone()
        };
        let code = self.code(&input)?;
        let logits = self.decode_logits(&code)?;
        let recon = self.recon_loss(&logits, &x)?;
        if let Some(stats) = &self.codes {
            stats.update(&code, step + 1)?;
        }
        let loss = if self.cfg.l2 > 0.0 {
            (&recon + self.l2_penalty()?)?
        } else {
            recon.clone()
        };
        self.opt.step(&loss.backward()?)?;
        Ok(vec![
            (Metric::Loss, scalar(&loss)?),
            (Metric::Recon, scalar(&recon)?),
        ])
    }

    fn eval_batch(&self, batch: &Batch, _rng: &mut ChaCha8Rng) -> Result<Metrics> {
        let x = batch.images.flatten_from(1)?;
        let logits = self.decode_logits(&self.code(&x)?)?;
        Ok(vec![(
            Metric::Recon,
            scalar(&self.recon_loss(&logits, &x)?)?,
        )])
    }

    fn generate(&self, z: &Tensor, _labels: Option<&Tensor>) -> Result<Tensor> {
        match (&self.codes, &self.mixture) {
            (Some(stats), _) => self.decode_images(&stats.transform(z)?),
            (_, Some(mixture)) => self.decode_images(&mixture.transform(z)?),
            (None, None) => self.decode_images(z),
        }
    }

    fn code_mixture(&self) -> Option<&CodeMixture> {
        self.mixture.as_ref()
    }

    fn decode_codes(&self, codes: &Tensor) -> Result<Option<Tensor>> {
        self.decode_images(codes).map(Some)
    }

    fn encode(&self, images: &Tensor) -> Result<Option<Tensor>> {
        self.code(&images.flatten_from(1)?).map(Some)
    }

    fn preview(
        &self,
        _z: &Tensor,
        _labels: Option<&Tensor>,
        test_images: &Tensor,
    ) -> Result<Tensor> {
        // Rows alternate: originals, then their reconstructions.
        let x = test_images.flatten_from(1)?;
        let recon = self.decode_images(&self.code(&x)?)?;
        let n = test_images.dim(0)?;
        let cols = 8.min(n);
        let mut parts = Vec::new();
        for r in 0..n.div_ceil(cols) {
            let (a, len) = (r * cols, cols.min(n - r * cols));
            parts.push(test_images.narrow(0, a, len)?);
            parts.push(recon.narrow(0, a, len)?);
        }
        Tensor::cat(&parts, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Codes from N((1, −2), [[4, 1.2], [1.2, 1]]) folded in batch by batch: samples drawn
    /// through the fitted statistics have that mean and covariance.
    #[test]
    fn fitted_codes_give_samples_the_codes_mean_and_covariance() {
        let store = super::super::layers::ParamStore::new();
        let vb = store.var_builder(&Device::Cpu);
        let stats = CodeStatistics::new(2, &vb).unwrap();
        let mut rng = <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
        let l = Tensor::new(&[[2f32, 0.0], [0.6, 0.8]], &Device::Cpu).unwrap();
        let shift = Tensor::new(&[[1f32, -2.0]], &Device::Cpu).unwrap();
        for t in 1..=600 {
            let z = normal(256, 2, &mut rng, &Device::Cpu).unwrap();
            let codes = z
                .matmul(&l.t().unwrap())
                .unwrap()
                .broadcast_add(&shift)
                .unwrap();
            stats.update(&codes, t).unwrap();
        }
        let z = normal(20_000, 2, &mut rng, &Device::Cpu).unwrap();
        let x = stats.transform(&z).unwrap().to_vec2::<f32>().unwrap();
        let n = x.len() as f64;
        let m: Vec<f64> = (0..2)
            .map(|j| x.iter().map(|r| r[j] as f64).sum::<f64>() / n)
            .collect();
        let c = |i: usize, j: usize| {
            x.iter()
                .map(|r| (r[i] as f64 - m[i]) * (r[j] as f64 - m[j]))
                .sum::<f64>()
                / n
        };
        assert!(
            (m[0] - 1.0).abs() < 0.1 && (m[1] + 2.0).abs() < 0.1,
            "{m:?}"
        );
        assert!((c(0, 0) - 4.0).abs() < 0.3, "{}", c(0, 0));
        assert!((c(1, 1) - 1.0).abs() < 0.1, "{}", c(1, 1));
        assert!((c(0, 1) - 1.2).abs() < 0.15, "{}", c(0, 1));
    }
}
