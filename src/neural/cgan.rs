//! Report 4.3: the conditional GAN (Mirza and Osindero 2014). G sees the label as a one-hot
//! vector concatenated to its code, so G(z, y) can be asked for a chosen class. D sees it
//! either the report's way, concatenated to the pixels, or through a projection (Miyato and
//! Koyama 2018, [`Conditioning`]). Training is the shared adversarial step
//! ([`super::gan::Adversarial`]); the generator's step draws its labels uniformly. Whether
//! samples honour their label is measured by the conditional accuracy of the evaluation (a
//! GAN can learn to ignore the label).
//!
//! The nets (`ConditionalMlpNets`) also serve the MLP GAN conditioned on clusters of its
//! training images (`gan`, `pixel_clusters`).

use super::gan::{Adversarial, Nets, gan_losses};
use super::kernels::linear::Activation;
use super::layers::{Dense, Dropout, Mlp, ParamGroup, ParamStore, embedding, projection};
use super::{Conditioning, ImageShape, Metric, Metrics, Model, NeuralConfig, one_hot};
use crate::data::Batch;
use crate::neural::optim::Adam;
use candle_core::{Module, Result, Tensor};
use candle_nn::{Embedding, VarBuilder, VarMap};
use rand_chacha::ChaCha8Rng;

/// MLP nets as the GAN's, with `num_classes` one-hot inputs added to G's code and D seeing
/// the label as `cfg.conditioning` says.
pub struct Cgan {
    cfg: NeuralConfig,
    shape: ImageShape,
    params: ParamStore,
    nets: ConditionalMlpNets,
    adv: Adversarial,
}

/// G(z, y) and D(x, y) of the conditional MLP GAN, apart from the optimisers, so that a
/// training step can read the nets while it steps the optimisers.
pub(crate) struct ConditionalMlpNets {
    classes: usize,
    /// z ⊕ one-hot → h → 2h → 4h → image (tanh).
    g: Mlp,
    d: Discriminator,
}

/// D(x, y) of the conditional GAN.
enum Discriminator {
    /// image ⊕ one-hot → 2h → h → logit.
    Concat(Mlp),
    /// φ(x): image → 2h → h, then w·φ(x) + e_y·φ(x).
    Projection {
        body: Mlp,
        head: Dense,
        embed: Embedding,
    },
}

impl Discriminator {
    fn new(cfg: &NeuralConfig, dim: usize, classes: usize, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden;
        Ok(match cfg.conditioning {
            Conditioning::Concat => Discriminator::Concat(Mlp::new(
                &[dim + classes, 2 * h, h, 1],
                Activation::Identity,
                vb,
            )?),
            // The body ends in LeakyReLU: its output is the features φ(x) the head and the
            // label's embedding both read.
            Conditioning::Projection => Discriminator::Projection {
                body: Mlp::new(&[dim, 2 * h, h], Activation::LeakyRelu(0.2), vb.clone())?,
                head: Dense::new(h, 1, Activation::Identity, vb.pp("head"))?,
                embed: embedding(classes, h, vb.pp("embed"))?,
            },
        })
    }

    /// The logits of images `x` (N x pixels) seen with `labels`; with `frozen`, gradients
    /// reach `x` only (the generator's step); `dropout` after each hidden layer while D
    /// trains.
    fn logits(
        &self,
        x: &Tensor,
        labels: &Tensor,
        classes: usize,
        frozen: bool,
        dropout: Option<&Dropout>,
    ) -> Result<Tensor> {
        match self {
            Discriminator::Concat(mlp) => {
                let input = Tensor::cat(&[x, &one_hot(labels, classes)?], 1)?;
                match dropout {
                    Some(p) => mlp.forward_dropout(&input, frozen, p),
                    None if frozen => mlp.forward_frozen(&input),
                    None => mlp.forward(&input),
                }
            }
            Discriminator::Projection { body, head, embed } => {
                // The body's last layer is hidden here too: φ(x) gets dropout as well.
                let phi = match dropout {
                    Some(p) => p.apply(&body.forward_dropout(x, frozen, p)?)?,
                    None if frozen => body.forward_frozen(x)?,
                    None => body.forward(x)?,
                };
                let label_term = projection(embed, labels, &phi, frozen)?;
                let score = if frozen {
                    head.forward_frozen(&phi)?
                } else {
                    head.forward(&phi)?
                };
                score + label_term
            }
        }
    }
}

impl ConditionalMlpNets {
    /// G (under `g.`) and D (under `d.`) for `classes` labels, with their parameter groups.
    pub(crate) fn new(
        cfg: &NeuralConfig,
        shape: ImageShape,
        classes: usize,
        params: &ParamStore,
        vb: &VarBuilder,
    ) -> Result<(Self, ParamGroup, ParamGroup)> {
        let (h, dim) = (cfg.hidden, shape.dim());
        let (g, g_params) = params.group(|| {
            let sizes = [cfg.latent_dim + classes, h, 2 * h, 4 * h, dim];
            Mlp::new(&sizes, Activation::Tanh, vb.pp("g"))
        })?;
        let (d, d_params) = params.group(|| Discriminator::new(cfg, dim, classes, vb.pp("d")))?;
        Ok((Self { classes, g, d }, g_params, d_params))
    }

    fn labels_of(labels: Option<&Tensor>) -> Result<&Tensor> {
        labels.ok_or_else(|| candle_core::Error::Msg("the conditional GAN needs labels".into()))
    }

    /// G(z, y): flat images (N x pixels).
    pub(crate) fn generator(&self, z: &Tensor, labels: Option<&Tensor>) -> Result<Tensor> {
        let y = one_hot(Self::labels_of(labels)?, self.classes)?;
        self.g.forward(&Tensor::cat(&[z, &y], 1)?)
    }

    /// D's logits for flat images `x` seen with `labels` (see [`Discriminator::logits`]).
    fn logits(
        &self,
        x: &Tensor,
        labels: Option<&Tensor>,
        frozen: bool,
        dropout: Option<&Dropout>,
    ) -> Result<Tensor> {
        self.d
            .logits(x, Self::labels_of(labels)?, self.classes, frozen, dropout)
    }

    /// One step of Algorithm 1 on flat images `real` seen with `labels`. G's step draws its
    /// labels uniformly, or with `shares` when the classes are unequal by design.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn train_step(
        &self,
        adv: &mut Adversarial,
        cfg: &NeuralConfig,
        real: &Tensor,
        labels: &Tensor,
        shares: Option<&[f32]>,
        step: u64,
        rng: &mut ChaCha8Rng,
    ) -> Result<Metrics> {
        let dropout = Dropout::for_step(cfg.d_dropout, rng);
        let dropout = dropout.as_ref();
        let generator = |z: &Tensor, l: Option<&Tensor>| self.generator(z, l);
        let disc = |x: &Tensor, l: Option<&Tensor>| self.logits(x, l, false, dropout);
        let frozen = |x: &Tensor, l: Option<&Tensor>| self.logits(x, l, true, dropout);
        let nets = Nets {
            g: &generator,
            d: &disc,
            d_frozen: &frozen,
            rows_independent: true,
            classes: self.classes,
            class_shares: shares,
        };
        adv.step(cfg, &nets, real, Some(labels), step, rng)
    }

    /// Mean D(x) on flat test images `real` seen with `labels`, and D(G(z)) on as many
    /// fakes.
    pub(crate) fn eval_batch(
        &self,
        adv: &Adversarial,
        cfg: &NeuralConfig,
        real: &Tensor,
        labels: &Tensor,
        rng: &mut ChaCha8Rng,
    ) -> Result<Metrics> {
        let generator = |z: &Tensor, l: Option<&Tensor>| self.generator(z, l);
        let disc = |x: &Tensor, l: Option<&Tensor>| self.logits(x, l, false, None);
        adv.eval(&generator, &disc, real, Some(labels), cfg.latent_dim, rng)
    }
}

impl Cgan {
    pub fn new(
        cfg: NeuralConfig,
        shape: ImageShape,
        classes: usize,
        params: ParamStore,
        vb: VarBuilder,
    ) -> Result<Self> {
        let (nets, g_params, d_params) =
            ConditionalMlpNets::new(&cfg, shape, classes, &params, &vb)?;
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

impl Model for Cgan {
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
    fn num_classes(&self) -> usize {
        self.nets.classes
    }
    fn watched_losses(&self, step: u64) -> &'static [Metric] {
        gan_losses(step, self.cfg.k)
    }

    fn train_step(&mut self, batch: &Batch, step: u64, rng: &mut ChaCha8Rng) -> Result<Metrics> {
        let real = batch.images.flatten_from(1)?;
        let labels = ConditionalMlpNets::labels_of(batch.labels.as_ref())?;
        self.nets
            .train_step(&mut self.adv, &self.cfg, &real, labels, None, step, rng)
    }

    fn eval_batch(&self, batch: &Batch, rng: &mut ChaCha8Rng) -> Result<Metrics> {
        let real = batch.images.flatten_from(1)?;
        let labels = ConditionalMlpNets::labels_of(batch.labels.as_ref())?;
        self.nets
            .eval_batch(&self.adv, &self.cfg, &real, labels, rng)
    }

    fn generate(&self, z: &Tensor, labels: Option<&Tensor>) -> Result<Tensor> {
        let s = self.shape;
        self.adv
            .sampling(|| self.nets.generator(z, labels))?
            .reshape((z.dim(0)?, s.channels, s.height, s.width))
    }
}
