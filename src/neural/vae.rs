//! Report 3.7: the variational autoencoder (Kingma and Welling 2014). A Gaussian encoder
//! q(z|x) = N(μ(x), diag σ²(x)), a Bernoulli decoder p(x|z), a standard normal prior, and
//! the negative ELBO  −E_q[log p(x|z)] + KL(q(z|x) ‖ p(z))  as the loss, with z drawn by
//! the reparameterisation z = μ + σ ⊙ ε, ε ~ N(0, I), so gradients reach μ and σ.
//!
//! The Bernoulli likelihood needs binary pixels: images are binarised at 0.5, the same
//! discretisation as Bernoulli naive Bayes, so their likelihoods compare.
//!
//! KL annealing: the standard warm-up scales the KL term by β from 0 to 1; the report's
//! L = r·RL + KL scales the reconstruction instead. Both are here ([`KlSchedule`]); the
//! likelihood is only meaningful once the weight has reached 1.

use super::kernels::linear::{Activation, dense};
use super::losses::{bce_with_logits_per_image, gaussian_kl_per_image};
use super::{ImageShape, KlSchedule, Metric, Metrics, Model, NeuralConfig, normal, scalar};
use crate::data::Batch;
use crate::neural::optim::{Adam, AdamConfig, trainable};
use candle_core::{D, Result, Tensor};
use candle_nn::{Linear, VarBuilder, VarMap, linear};
use rand_chacha::ChaCha8Rng;

/// The VAE's nets: d → h → (μ, log σ²) and z → h → d logits.
pub struct Vae {
    cfg: NeuralConfig,
    shape: ImageShape,
    varmap: VarMap,
    enc: Linear,
    enc_mu: Linear,
    enc_logvar: Linear,
    dec1: Linear,
    dec2: Linear,
    opt: Adam,
}

/// The weight the schedule gives at `step` (0 → 1 over the warm-up).
pub fn schedule_weight(cfg: &NeuralConfig, step: u64) -> f64 {
    if cfg.kl_schedule == KlSchedule::None || cfg.warmup_steps == 0 {
        1.0
    } else {
        (step as f64 / cfg.warmup_steps as f64).min(1.0)
    }
}

impl Vae {
    pub fn new(
        cfg: NeuralConfig,
        shape: ImageShape,
        varmap: VarMap,
        vb: VarBuilder,
    ) -> Result<Self> {
        let (d, h, z) = (shape.dim(), cfg.hidden, cfg.latent_dim);
        let s = Self {
            enc: linear(d, h, vb.pp("enc"))?,
            enc_mu: linear(h, z, vb.pp("enc_mu"))?,
            enc_logvar: linear(h, z, vb.pp("enc_logvar"))?,
            dec1: linear(z, h, vb.pp("dec1"))?,
            dec2: linear(h, d, vb.pp("dec2"))?,
            opt: Adam::new(trainable(&varmap, ""), AdamConfig::new(cfg.lr, cfg.beta1))?,
            cfg,
            shape,
            varmap,
        };
        Ok(s)
    }

    fn binarise(images: &Tensor) -> Result<Tensor> {
        images
            .flatten_from(1)?
            .gt(0.5)?
            .to_dtype(candle_core::DType::F32)
    }

    fn posterior(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let h = dense(&self.enc, x, Activation::Relu)?;
        Ok((
            dense(&self.enc_mu, &h, Activation::Identity)?,
            dense(&self.enc_logvar, &h, Activation::Identity)?,
        ))
    }

    fn decode_logits(&self, z: &Tensor) -> Result<Tensor> {
        self.decode(z, Activation::Identity)
    }

    /// The decoder with `out` applied to its last layer (identity: logits; sigmoid: means).
    fn decode(&self, z: &Tensor, out: Activation) -> Result<Tensor> {
        let h = dense(&self.dec1, z, Activation::Relu)?;
        dense(&self.dec2, &h, out)
    }

    /// z = μ + σ ⊙ ε with ε from the seeded host RNG.
    fn reparameterise(&self, mu: &Tensor, logvar: &Tensor, rng: &mut ChaCha8Rng) -> Result<Tensor> {
        let eps = normal(mu.dim(0)?, mu.dim(1)?, rng, mu.device())?;
        mu + (logvar * 0.5)?.exp()?.mul(&eps)?
    }

    /// Per-image reconstruction term and KL, from one reparameterised draw.
    fn terms(&self, x: &Tensor, rng: &mut ChaCha8Rng) -> Result<(Tensor, Tensor)> {
        let (mu, logvar) = self.posterior(x)?;
        let z = self.reparameterise(&mu, &logvar, rng)?;
        let recon = bce_with_logits_per_image(&self.decode_logits(&z)?, x)?;
        Ok((recon, gaussian_kl_per_image(&mu, &logvar)?))
    }

    /// The importance-weighted estimate of log p(x) (Burda et al. 2016) with `k` samples:
    /// log (1/k) Σ_i p(x|z_i) p(z_i) / q(z_i|x), z_i ~ q(z|x). Per image, in nats.
    pub fn iw_log_likelihood(
        &self,
        images: &Tensor,
        k: usize,
        rng: &mut ChaCha8Rng,
    ) -> Result<Tensor> {
        let x = Self::binarise(images)?;
        let (mu, logvar) = self.posterior(&x)?;
        let log_2pi = (2.0 * std::f64::consts::PI).ln();
        let mut log_w = Vec::with_capacity(k);
        for _ in 0..k {
            let z = self.reparameterise(&mu, &logvar, rng)?;
            let log_px_z = bce_with_logits_per_image(&self.decode_logits(&z)?, &x)?.neg()?;
            let log_pz = ((z.sqr()? + log_2pi)?.sum(D::Minus1)? * -0.5)?;
            let log_qz = ((((&z - &mu)?.sqr()? / logvar.exp()?)? + &logvar)? + log_2pi)?
                .sum(D::Minus1)?
                .affine(-0.5, 0.0)?;
            log_w.push(((log_px_z + log_pz)? - log_qz)?);
        }
        let w = Tensor::stack(&log_w, 1)?; // N x k
        let max = w.max_keepdim(1)?;
        let lse = (w.broadcast_sub(&max)?.exp()?.sum_keepdim(1)?.log()? + max)?;
        lse.squeeze(1)? - (k as f64).ln()
    }
}

impl Model for Vae {
    fn config(&self) -> &NeuralConfig {
        &self.cfg
    }
    fn shape(&self) -> ImageShape {
        self.shape
    }
    fn varmap(&self) -> &VarMap {
        &self.varmap
    }
    fn optimizers(&mut self) -> Vec<(&'static str, &mut Adam)> {
        vec![("opt", &mut self.opt)]
    }
    fn loss_names(&self) -> &'static [Metric] {
        &[Metric::Loss, Metric::Recon, Metric::Kl]
    }

    fn train_step(&mut self, batch: &Batch, step: u64, rng: &mut ChaCha8Rng) -> Result<Metrics> {
        let x = Self::binarise(&batch.images)?;
        let (recon, kl) = self.terms(&x, rng)?;
        let (recon, kl) = (recon.mean_all()?, kl.mean_all()?);
        let w = schedule_weight(&self.cfg, step);
        let loss = match self.cfg.kl_schedule {
            KlSchedule::None => (&recon + &kl)?,
            KlSchedule::Standard => (&recon + (&kl * w)?)?,
            KlSchedule::Report => ((&recon * w)? + &kl)?,
        };
        self.opt.step(&loss.backward()?)?;
        let (r, k) = (scalar(&recon)?, scalar(&kl)?);
        Ok(vec![
            (Metric::Loss, scalar(&loss)?),
            (Metric::Recon, r),
            (Metric::Kl, k),
            (Metric::Weight, w),
            (Metric::NegElbo, r + k),
        ])
    }

    fn eval_batch(&self, batch: &Batch, rng: &mut ChaCha8Rng) -> Result<Metrics> {
        let x = Self::binarise(&batch.images)?;
        let (recon, kl) = self.terms(&x, rng)?;
        let (r, k) = (scalar(&recon)?, scalar(&kl)?);
        let iw = scalar(&self.iw_log_likelihood(&batch.images, self.cfg.iw_samples, rng)?)?;
        Ok(vec![
            (Metric::NegElbo, r + k),
            (Metric::Recon, r),
            (Metric::Kl, k),
            (Metric::IwNll, -iw),
        ])
    }

    fn generate(&self, z: &Tensor, _labels: Option<&Tensor>) -> Result<Tensor> {
        let s = self.shape;
        // The decoder's means: sigmoid fused into the last layer.
        self.decode(z, Activation::Sigmoid)?
            .reshape((z.dim(0)?, s.channels, s.height, s.width))
    }

    fn encode(&self, images: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(self.posterior(&Self::binarise(images)?)?.0))
    }
}
