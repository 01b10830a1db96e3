//! Report 4.1: the generative adversarial network (Goodfellow et al. 2014) with MLP nets.
//!
//! D maximises V(D, G) = E[log D(x)] + E[log(1 − D(G(z)))] (the report says it minimises
//! V: it is the other way round), G minimises it. [`Adversarial`] is the report's
//! Algorithm 1, shared by the GAN, the DCGAN and the conditional GAN: k discriminator steps
//! on fresh real and fake batches, then one generator step, with either the saturating
//! loss log(1 − D(G(z))) or the non-saturating −log D(G(z)). It logs D(x), D(G(z)) and the
//! generator's gradient norm, which makes the vanishing gradient of the saturating loss
//! visible when D rejects the fakes.

use super::cgan::ConditionalMlpNets;
use super::ema::Ema;
use super::kernels::linear::Activation;
use super::layers::{Dropout, Mlp, ParamGroup, ParamStore};
use super::losses::{discriminator_smoothed, generator_non_saturating, generator_saturating};
use super::pixel_clusters::PixelClusters;
use super::{GeneratorLoss, ImageShape, Metric, Metrics, Model, NeuralConfig, normal, scalar};
use crate::data::Batch;
use crate::neural::optim::{Adam, AdamConfig, grad_norm};
use candle_core::{Module, Result, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// The optimisers and bookkeeping of adversarial training.
pub struct Adversarial {
    pub opt_d: Adam,
    pub opt_g: Adam,
    /// The moving average of G's weights that samples come from, when configured.
    ema: Option<Ema>,
    last_g_loss: f64,
    last_g_grad: f64,
}

/// The net of a GAN as a function: (input, labels) → output.
pub type Net<'a> = &'a dyn Fn(&Tensor, Option<&Tensor>) -> Result<Tensor>;

/// A GAN's nets as one training step uses them.
pub struct Nets<'a> {
    pub g: Net<'a>,
    pub d: Net<'a>,
    /// D with no gradients for its own weights (or plain D where a model has no such
    /// variant): the generator step reads only G's gradients.
    pub d_frozen: Net<'a>,
    /// Whether each row of D's output depends on that row of the input alone (no batch
    /// norm). Then the discriminator step passes the real and the fake batch through D as
    /// one batch of 2n rows: the same function and the same gradients, but one pass over
    /// twice the rows instead of two, and D's weight gradients come out of one product
    /// each instead of two that candle then adds. With batch norm the two batches must
    /// stay apart, since each is normalised by its own statistics.
    pub rows_independent: bool,
    /// How many classes G and D are conditioned on (0: unconditional); the generator step
    /// draws its labels from them.
    pub classes: usize,
    /// The classes' shares of the training images, when they are unequal by design (the
    /// DCGAN's clusters): the generator step then draws its labels with these shares, as
    /// the discriminator step's real batch has them. None draws them uniformly.
    pub class_shares: Option<&'a [f32]>,
}

impl Nets<'_> {
    /// D's logits for a real and a fake batch of the same size, both seen with `labels`:
    /// one pass over both when rows are independent, else two.
    pub fn discriminate(
        &self,
        real: &Tensor,
        fake: &Tensor,
        labels: Option<&Tensor>,
    ) -> Result<(Tensor, Tensor)> {
        if !self.rows_independent {
            return Ok(((self.d)(real, labels)?, (self.d)(fake, labels)?));
        }
        let n = real.dim(0)?;
        if fake.dim(0)? != n {
            candle_core::bail!(
                "discriminator: {n} real and {} fake images, expected as many",
                fake.dim(0)?
            );
        }
        let both_labels = labels.map(|l| Tensor::cat(&[l, l], 0)).transpose()?;
        let both = (self.d)(&Tensor::cat(&[real, fake], 0)?, both_labels.as_ref())?;
        Ok((both.narrow(0, 0, n)?, both.narrow(0, n, n)?))
    }
}

impl Adversarial {
    /// Adam for G's and for D's trainable parameters, no weight decay.
    pub fn new(
        params: &ParamStore,
        g: &ParamGroup,
        d: &ParamGroup,
        cfg: &NeuralConfig,
    ) -> Result<Self> {
        let c = AdamConfig::of(cfg);
        let g_weights = params.trainable(g);
        let ema = (cfg.ema_decay > 0.0)
            .then(|| Ema::new(params, &g_weights, cfg.ema_decay))
            .transpose()?;
        Ok(Self {
            opt_d: Adam::new(params.trainable(d), c)?,
            opt_g: Adam::new(g_weights, c)?,
            ema,
            last_g_loss: f64::NAN,
            last_g_grad: f64::NAN,
        })
    }

    // ANCHOR: algorithm_1
    /// One discriminator step on `real` and, every k-th call, one generator step.
    pub fn step(
        &mut self,
        cfg: &NeuralConfig,
        nets: &Nets<'_>,
        real: &Tensor,
        labels: Option<&Tensor>,
        step: u64,
        rng: &mut ChaCha8Rng,
    ) -> Result<Metrics> {
        let n = real.dim(0)?;
        let dev = real.device();
        let z = normal(n, cfg.latent_dim, rng, dev)?;
        let Nets { g, d_frozen, .. } = *nets;
        let fake = g(&z, labels)?.detach();
        let (real_logits, fake_logits) = nets.discriminate(real, &fake, labels)?;
        let d_loss = discriminator_smoothed(&real_logits, &fake_logits, cfg.label_smoothing)?;
        self.opt_d.step(&d_loss.backward()?)?;
        let d_real = scalar(&candle_nn::ops::sigmoid(&real_logits)?)?;
        let d_fake = scalar(&candle_nn::ops::sigmoid(&fake_logits)?)?;
        if step % cfg.k as u64 == cfg.k as u64 - 1 {
            let z = normal(n, cfg.latent_dim, rng, dev)?;
            let g_labels = match (nets.classes, nets.class_shares) {
                (0, _) => None,
                (_, Some(shares)) => {
                    let ids: Vec<u32> = (0..n)
                        .map(|_| draw_share(shares, rng.random::<f64>()))
                        .collect();
                    Some(Tensor::from_vec(ids, n, dev)?)
                }
                (classes, None) => {
                    let ids: Vec<u32> = (0..n)
                        .map(|_| rng.random_range(0..classes as u32))
                        .collect();
                    Some(Tensor::from_vec(ids, n, dev)?)
                }
            };
            let logits = d_frozen(&g(&z, g_labels.as_ref())?, g_labels.as_ref())?;
            let g_loss = match cfg.g_loss {
                GeneratorLoss::Saturating => generator_saturating(&logits)?,
                GeneratorLoss::NonSaturating => generator_non_saturating(&logits)?,
            };
            let grads = g_loss.backward()?;
            self.last_g_grad = grad_norm(&grads, self.opt_g.vars())?;
            self.opt_g.step(&grads)?;
            if let Some(ema) = &self.ema {
                ema.update(self.opt_g.t)?;
            }
            self.last_g_loss = scalar(&g_loss)?;
        }
        Ok(vec![
            (Metric::DLoss, scalar(&d_loss)?),
            (Metric::GLoss, self.last_g_loss),
            (Metric::DReal, d_real),
            (Metric::DFake, d_fake),
            (Metric::GGradNorm, self.last_g_grad),
        ])
    }
    // ANCHOR_END: algorithm_1

    /// Runs `generate` with G's averaged weights when the model keeps an average, else
    /// with its live weights: what every sample a user sees is drawn through.
    pub fn sampling<R>(&self, generate: impl FnOnce() -> Result<R>) -> Result<R> {
        match &self.ema {
            Some(ema) => ema.with_averages(generate),
            None => generate(),
        }
    }

    /// Mean D(x) on test images and D(G(z)) on as many fakes.
    pub fn eval(
        &self,
        g: Net<'_>,
        d: Net<'_>,
        real: &Tensor,
        labels: Option<&Tensor>,
        latent: usize,
        rng: &mut ChaCha8Rng,
    ) -> Result<Metrics> {
        let z = normal(real.dim(0)?, latent, rng, real.device())?;
        let fake = g(&z, labels)?;
        Ok(vec![
            (
                Metric::DReal,
                scalar(&candle_nn::ops::sigmoid(&d(real, labels)?)?)?,
            ),
            (
                Metric::DFake,
                scalar(&candle_nn::ops::sigmoid(&d(&fake, labels)?)?)?,
            ),
        ])
    }
}

/// The losses watched for divergence in a GAN after step `step`: D's, and G's once the
/// first generator step (at step k − 1) has given it a value.
pub fn gan_losses(step: u64, k: usize) -> &'static [Metric] {
    if step + 1 >= k as u64 {
        &[Metric::DLoss, Metric::GLoss]
    } else {
        &[Metric::DLoss]
    }
}

/// The MLP GAN: G z → h → 2h → 4h → image (tanh), D image → 2h → h → logit.
///
/// With `NeuralConfig::clusters` > 0 (the default), G and D are the conditional GAN's nets
/// (`cgan`) conditioned on k-means clusters of the training images in place of the labels
/// the GAN does not read, as the DCGAN's are (`pixel_clusters`); `--clusters 0` is the
/// report's unconditional GAN.
pub struct Gan {
    cfg: NeuralConfig,
    shape: ImageShape,
    params: ParamStore,
    nets: GanNets,
    adv: Adversarial,
}

/// The report's unconditional nets, or the conditional GAN's nets conditioned on clusters
/// of the training images.
enum GanNets {
    Plain {
        g: Mlp,
        d: Mlp,
    },
    Clustered {
        nets: ConditionalMlpNets,
        clusters: PixelClusters,
    },
}

impl Gan {
    pub fn new(
        cfg: NeuralConfig,
        shape: ImageShape,
        params: ParamStore,
        vb: VarBuilder,
    ) -> Result<Self> {
        let (h, dim) = (cfg.hidden, shape.dim());
        let (nets, g_params, d_params) = if cfg.clusters > 0 {
            let (nets, g_params, d_params) =
                ConditionalMlpNets::new(&cfg, shape, cfg.clusters, &params, &vb)?;
            let clusters = PixelClusters::new(cfg.clusters, dim, &vb, &params)?;
            (GanNets::Clustered { nets, clusters }, g_params, d_params)
        } else {
            let (g, g_params) = params.group(|| {
                let sizes = [cfg.latent_dim, h, 2 * h, 4 * h, dim];
                Mlp::new(&sizes, Activation::Tanh, vb.pp("g"))
            })?;
            let (d, d_params) =
                params.group(|| Mlp::new(&[dim, 2 * h, h, 1], Activation::Identity, vb.pp("d")))?;
            (GanNets::Plain { g, d }, g_params, d_params)
        };
        let adv = Adversarial::new(&params, &g_params, &d_params, &cfg)?;
        Ok(Self {
            cfg,
            shape,
            params,
            nets,
            adv,
        })
    }
}

impl Model for Gan {
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
        vec![("d", &mut self.adv.opt_d), ("g", &mut self.adv.opt_g)]
    }
    fn watched_losses(&self, step: u64) -> &'static [Metric] {
        gan_losses(step, self.cfg.k)
    }
    fn pixel_clusters(&self) -> Option<&PixelClusters> {
        match &self.nets {
            GanNets::Plain { .. } => None,
            GanNets::Clustered { clusters, .. } => Some(clusters),
        }
    }

    fn train_step(&mut self, batch: &Batch, step: u64, rng: &mut ChaCha8Rng) -> Result<Metrics> {
        let real = batch.images.flatten_from(1)?;
        match &self.nets {
            GanNets::Plain { g, d } => {
                let dropout = Dropout::for_step(self.cfg.d_dropout, rng);
                let generator = |z: &Tensor, _: Option<&Tensor>| g.forward(z);
                let disc = |x: &Tensor, _: Option<&Tensor>| match &dropout {
                    Some(p) => d.forward_dropout(x, false, p),
                    None => d.forward(x),
                };
                let frozen = |x: &Tensor, _: Option<&Tensor>| match &dropout {
                    Some(p) => d.forward_dropout(x, true, p),
                    None => d.forward_frozen(x),
                };
                let nets = Nets {
                    g: &generator,
                    d: &disc,
                    d_frozen: &frozen,
                    rows_independent: true,
                    classes: 0,
                    class_shares: None,
                };
                self.adv.step(&self.cfg, &nets, &real, None, step, rng)
            }
            GanNets::Clustered { nets, clusters } => {
                // Each real image is seen with its nearest cluster; G's step draws
                // clusters with their shares of the training images.
                let labels = clusters.assign(&batch.images)?;
                let shares = clusters.shares()?;
                nets.train_step(
                    &mut self.adv,
                    &self.cfg,
                    &real,
                    &labels,
                    Some(&shares),
                    step,
                    rng,
                )
            }
        }
    }

    fn eval_batch(&self, batch: &Batch, rng: &mut ChaCha8Rng) -> Result<Metrics> {
        let real = batch.images.flatten_from(1)?;
        match &self.nets {
            GanNets::Plain { g, d } => {
                let generator = |z: &Tensor, _: Option<&Tensor>| g.forward(z);
                let disc = |x: &Tensor, _: Option<&Tensor>| d.forward(x);
                self.adv
                    .eval(&generator, &disc, &real, None, self.cfg.latent_dim, rng)
            }
            GanNets::Clustered { nets, clusters } => {
                let labels = clusters.assign(&batch.images)?;
                nets.eval_batch(&self.adv, &self.cfg, &real, &labels, rng)
            }
        }
    }

    fn generate(&self, z: &Tensor, _labels: Option<&Tensor>) -> Result<Tensor> {
        let s = self.shape;
        let flat = match &self.nets {
            GanNets::Plain { g, .. } => self.adv.sampling(|| g.forward(z))?,
            GanNets::Clustered { nets, clusters } => {
                let (labels, z) = clusters.pick(z)?;
                self.adv.sampling(|| nets.generator(&z, Some(&labels)))?
            }
        };
        flat.reshape((z.dim(0)?, s.channels, s.height, s.width))
    }
}

/// The class whose slice of the cumulative `shares` holds `u` in [0, 1); the last class
/// takes any u the rounded shares leave over.
fn draw_share(shares: &[f32], u: f64) -> u32 {
    let mut acc = 0.0;
    for (c, &w) in shares.iter().enumerate() {
        acc += w as f64;
        if u < acc {
            return c as u32;
        }
    }
    shares.len().saturating_sub(1) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::neural::losses::discriminator;
    use candle_core::{DType, Device, Var};

    /// The frozen forward pass is the same function of the input, passes the same gradient
    /// back to it, and leaves D's weights without gradients.
    #[test]
    fn frozen_discriminator_gives_the_input_the_same_gradient_and_its_weights_none() {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let d = Mlp::new(&[6, 5, 4, 1], Activation::Identity, vb.pp("d")).unwrap();
        let xs: Vec<f32> = (0..18).map(|i| (i as f32 * 0.37).cos()).collect();
        let mut seen = Vec::new();
        for frozen in [false, true] {
            let x = Var::from_vec(xs.clone(), (3, 6), &Device::Cpu).unwrap();
            let y = if frozen {
                d.forward_frozen(x.as_tensor())
            } else {
                d.forward(x.as_tensor())
            }
            .unwrap();
            let grads = y.sum_all().unwrap().backward().unwrap();
            let weight_grads = varmap
                .all_vars()
                .iter()
                .filter(|v| grads.get(v.as_tensor()).is_some())
                .count();
            assert_eq!(weight_grads, if frozen { 0 } else { 6 });
            let gx = grads.get(x.as_tensor()).unwrap();
            seen.push((
                y.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                gx.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            ));
        }
        assert_eq!(seen[0], seen[1]);
    }

    /// The discriminator step's joint pass over real and fake rows gives the same logits,
    /// loss and weight gradients as two passes; the cGAN's labels go with both halves.
    #[test]
    fn joint_discriminator_pass_matches_two_passes() {
        for classes in [0, 3] {
            let varmap = VarMap::new();
            let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
            let d = Mlp::new(&[6 + classes, 5, 4, 1], Activation::Identity, vb.pp("d")).unwrap();
            let rows = |seed: f32| {
                let v: Vec<f32> = (0..24).map(|i| ((i as f32 + seed) * 0.61).sin()).collect();
                Tensor::from_vec(v, (4, 6), &Device::Cpu).unwrap()
            };
            let (real, fake) = (rows(0.0), rows(9.0));
            let labels = (classes > 0)
                .then(|| Tensor::from_vec(vec![0u32, 2, 1, 2], 4, &Device::Cpu).unwrap());
            let disc = |x: &Tensor, l: Option<&Tensor>| match l {
                Some(l) => d.forward(&Tensor::cat(&[x, &super::super::one_hot(l, classes)?], 1)?),
                None => d.forward(x),
            };
            let mut seen = Vec::new();
            for rows_independent in [false, true] {
                let nets = Nets {
                    g: &disc,
                    d: &disc,
                    d_frozen: &disc,
                    rows_independent,
                    classes,
                    class_shares: None,
                };
                let (r, f) = nets.discriminate(&real, &fake, labels.as_ref()).unwrap();
                let loss = discriminator(&r, &f).unwrap();
                let grads = loss.backward().unwrap();
                let mut values = vec![scalar(&loss).unwrap() as f32];
                for t in [&r, &f] {
                    values.extend(t.flatten_all().unwrap().to_vec1::<f32>().unwrap());
                }
                let data = varmap.data().lock().unwrap();
                let mut names: Vec<&String> = data.keys().collect();
                names.sort();
                for v in names.into_iter().map(|name| &data[name]) {
                    let g = grads
                        .get(v.as_tensor())
                        .expect("every weight has a gradient");
                    values.extend(g.flatten_all().unwrap().to_vec1::<f32>().unwrap());
                }
                seen.push(values);
            }
            assert_eq!(seen[0].len(), seen[1].len());
            for (a, b) in seen[0].iter().zip(&seen[1]) {
                assert!((a - b).abs() <= 1e-6 * (1.0 + a.abs()), "{a} vs {b}");
            }
        }
    }
}
