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

use super::code_mixture::CodeMixture;
use super::kernels::linear::Activation;
use super::layers::{Dense, ParamStore};
use super::losses::{bce_with_logits_per_image, gaussian_kl_per_image};
use super::{
    CodeSampling, ImageShape, KlSchedule, Metric, Metrics, Model, NeuralConfig, normal, scalar,
};
use crate::data::Batch;
use crate::neural::optim::{Adam, AdamConfig};
use candle_core::{D, Module, Result, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand_chacha::ChaCha8Rng;

/// q(z|x): d → h (ReLU) → μ and log σ², each h → z.
struct Encoder {
    hidden: Dense,
    mu: Dense,
    logvar: Dense,
}

impl Encoder {
    fn new(cfg: &NeuralConfig, dim: usize, vb: &VarBuilder) -> Result<Self> {
        let (h, z) = (cfg.hidden, cfg.latent_dim);
        Ok(Self {
            hidden: Dense::new(dim, h, Activation::Relu, vb.pp("enc"))?,
            mu: Dense::new(h, z, Activation::Identity, vb.pp("enc_mu"))?,
            logvar: Dense::new(h, z, Activation::Identity, vb.pp("enc_logvar"))?,
        })
    }

    /// μ and log σ² of q(z|x).
    fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let h = self.hidden.forward(x)?;
        Ok((self.mu.forward(&h)?, self.logvar.forward(&h)?))
    }
}

/// p(x|z): z → h (ReLU) → d Bernoulli logits.
struct Decoder {
    hidden: Dense,
    out: Dense,
}

impl Decoder {
    fn new(cfg: &NeuralConfig, dim: usize, vb: &VarBuilder) -> Result<Self> {
        let (h, z) = (cfg.hidden, cfg.latent_dim);
        Ok(Self {
            hidden: Dense::new(z, h, Activation::Relu, vb.pp("dec1"))?,
            out: Dense::new(h, dim, Activation::Identity, vb.pp("dec2"))?,
        })
    }

    /// The decoder with `out` applied to its last layer (identity: logits; sigmoid: means).
    fn forward_as(&self, z: &Tensor, out: Activation) -> Result<Tensor> {
        self.out.forward_as(&self.hidden.forward(z)?, out)
    }
}

/// The VAE: its encoder and decoder and their optimiser.
pub struct Vae {
    cfg: NeuralConfig,
    shape: ImageShape,
    params: ParamStore,
    enc: Encoder,
    dec: Decoder,
    /// The mixture fitted to the training codes, when samples are drawn from it rather than
    /// from the prior.
    mixture: Option<CodeMixture>,
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
        params: ParamStore,
        vb: VarBuilder,
    ) -> Result<Self> {
        let enc = Encoder::new(&cfg, shape.dim(), &vb)?;
        let dec = Decoder::new(&cfg, shape.dim(), &vb)?;
        let mixture = match cfg.code_sampling {
            CodeSampling::Mixture => Some(CodeMixture::new(
                cfg.code_components,
                cfg.latent_dim,
                &vb,
                &params,
            )?),
            // Refused by `NeuralConfig::validate`.
            CodeSampling::StandardNormal | CodeSampling::FittedGaussian => None,
        };
        let opt = Adam::new(params.trainable(&params.all()), AdamConfig::of(&cfg))?;
        Ok(Self {
            cfg,
            shape,
            params,
            enc,
            dec,
            mixture,
            opt,
        })
    }

    fn binarise(images: &Tensor) -> Result<Tensor> {
        super::kernels::fused::above(&images.flatten_from(1)?, 0.5)
    }

    fn posterior(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        self.enc.forward(x)
    }

    fn decode_logits(&self, z: &Tensor) -> Result<Tensor> {
        self.decode(z, Activation::Identity)
    }

    fn decode(&self, z: &Tensor, out: Activation) -> Result<Tensor> {
        self.dec.forward_as(z, out)
    }

    /// z = μ + σ ⊙ ε with ε from the seeded host RNG.
    fn reparameterise(&self, mu: &Tensor, logvar: &Tensor, rng: &mut ChaCha8Rng) -> Result<Tensor> {
        let eps = normal(mu.dim(0)?, mu.dim(1)?, rng, mu.device())?;
        mu + (logvar * 0.5)?.exp()?.mul(&eps)?
    }

    // ANCHOR: terms
    /// Per-image reconstruction term and KL, from one reparameterised draw.
    fn terms(&self, x: &Tensor, rng: &mut ChaCha8Rng) -> Result<(Tensor, Tensor)> {
        let (mu, logvar) = self.posterior(x)?;
        let z = self.reparameterise(&mu, &logvar, rng)?;
        let recon = bce_with_logits_per_image(&self.decode_logits(&z)?, x)?;
        Ok((recon, gaussian_kl_per_image(&mu, &logvar)?))
    }
    // ANCHOR_END: terms

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

    /// The decoder's pixel means for `codes` (N x latent), as images.
    fn decode_means(&self, codes: &Tensor) -> Result<Tensor> {
        let s = self.shape;
        // The sigmoid is fused into the last layer.
        self.decode(codes, Activation::Sigmoid)?.reshape((
            codes.dim(0)?,
            s.channels,
            s.height,
            s.width,
        ))
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

    // ANCHOR: train_step
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
    // ANCHOR_END: train_step

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
        let codes = match &self.mixture {
            Some(mixture) => mixture.transform(z)?,
            None => z.clone(),
        };
        self.decode_means(&codes)
    }

    fn decode_codes(&self, codes: &Tensor) -> Result<Option<Tensor>> {
        self.decode_means(codes).map(Some)
    }

    fn code_mixture(&self) -> Option<&CodeMixture> {
        self.mixture.as_ref()
    }

    fn encode(&self, images: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(self.posterior(&Self::binarise(images)?)?.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::neural::ModelKind;
    use candle_core::Device;
    use rand::SeedableRng;

    /// Report 3.7 writes the loss with q_θ(z|x) and p_φ(x|z), then calls θ the decoder's
    /// parameters and φ the encoder's. By its own formula θ parametrises q, the encoder: the
    /// KL term, which depends on q alone, sends gradient to the encoder's weights and to no
    /// weight of the decoder; the reconstruction term reaches both.
    #[test]
    fn the_kl_term_trains_the_encoder_only() {
        let mut cfg = NeuralConfig::new(ModelKind::Vae);
        cfg.hidden = 16;
        cfg.latent_dim = 3;
        let shape = ImageShape {
            channels: 1,
            height: 4,
            width: 4,
        };
        let params = ParamStore::new();
        let vae = Vae::new(cfg, shape, params.clone(), params.var_builder(&Device::Cpu)).unwrap();
        let x = Tensor::rand(0f32, 1f32, (5, 16), &Device::Cpu)
            .unwrap()
            .gt(0.5)
            .unwrap()
            .to_dtype(candle_core::DType::F32)
            .unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let (recon, kl) = vae.terms(&x, &mut rng).unwrap();
        let reached = |loss: &Tensor| {
            let grads = loss.mean_all().unwrap().backward().unwrap();
            let data = params.varmap().data().lock().unwrap();
            let mut names: Vec<String> = data
                .iter()
                .filter(|(_, v)| {
                    grads.get(v.as_tensor()).is_some_and(|g| {
                        g.abs()
                            .unwrap()
                            .sum_all()
                            .unwrap()
                            .to_scalar::<f32>()
                            .unwrap()
                            > 0.0
                    })
                })
                .map(|(n, _)| n.split('.').next().unwrap().to_string())
                .collect();
            names.sort();
            names.dedup();
            names
        };
        assert_eq!(reached(&kl), ["enc", "enc_logvar", "enc_mu"]);
        assert_eq!(
            reached(&recon),
            ["dec1", "dec2", "enc", "enc_logvar", "enc_mu"]
        );
    }
}
