//! The conditional DCGAN: the convolutional nets of 4.2 conditioned on the label as the
//! conditional GAN of 4.3 is. Not in the report, which conditions only its MLP GAN; kept
//! beside it because convolutions draw cleaner strokes than the MLP's pixels and the label
//! removes the DCGAN's mode hopping between classes.
//!
//! - G reads z ⊕ one-hot(y) into the DCGAN generator's dense projection (Mirza and Osindero
//!   2014 feed the label the same way).
//! - D is the DCGAN discriminator's convolutions, giving features φ(x), and a projection
//!   head: logit = w·φ(x) + b + e_y·φ(x), with a learnt vector e_y per class (Miyato and
//!   Koyama 2018). The inner product asks whether the image fits its label, not only
//!   whether it looks real; concatenating the label to the pixels, the report's way, lets
//!   a GAN ignore it (book, 4.3).
//!
//! Batch norm in both nets normalises the real and the fake batch each by its own
//! statistics, as in the DCGAN.

use super::dcgan::{Discriminator, Generator};
use super::gan::{Adversarial, Nets, gan_losses};
use super::layers::{Dropout, ParamGroup, ParamStore, embedding, projection};
use super::{ImageShape, Metric, Metrics, Model, NeuralConfig, one_hot};
use crate::data::Batch;
use crate::neural::optim::Adam;
use candle_core::{Result, Tensor};
use candle_nn::{Embedding, VarBuilder, VarMap};
use rand_chacha::ChaCha8Rng;

/// The conditional DCGAN: its nets, and the optimisers that train them.
pub struct Cdcgan {
    cfg: NeuralConfig,
    shape: ImageShape,
    params: ParamStore,
    nets: ConditionalNets,
    adv: Adversarial,
}

/// G and D with the label's embedding: apart from the optimisers, so that a training step
/// can read the nets while it steps the optimisers.
pub(crate) struct ConditionalNets {
    classes: usize,
    g: Generator,
    d: Discriminator,
    /// e_y, one row per class, of the size of φ(x).
    embed: Embedding,
}

impl Cdcgan {
    pub fn new(
        cfg: NeuralConfig,
        shape: ImageShape,
        classes: usize,
        params: ParamStore,
        vb: VarBuilder,
    ) -> Result<Self> {
        let (nets, g_params, d_params) = ConditionalNets::new(&cfg, shape, classes, &params, &vb)?;
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

impl ConditionalNets {
    /// G and D for `classes` labels (G under `g.`, D and e_y under `d.`), with their
    /// parameter groups; batch norm's running statistics are marked as statistics.
    pub(crate) fn new(
        cfg: &NeuralConfig,
        shape: ImageShape,
        classes: usize,
        params: &ParamStore,
        vb: &VarBuilder,
    ) -> Result<(Self, ParamGroup, ParamGroup)> {
        let (g, g_params) =
            params.group(|| Generator::new(cfg, cfg.latent_dim + classes, shape, vb.pp("g")))?;
        let ((d, embed), d_params) = params.group(|| {
            let d = Discriminator::new(cfg, shape, vb.pp("d"))?;
            let embed = embedding(classes, d.feature_dim(), vb.pp("d").pp("embed"))?;
            Ok((d, embed))
        })?;
        params.mark_statistics(&g.statistics())?;
        params.mark_statistics(&d.statistics())?;
        let nets = Self {
            classes,
            g,
            d,
            embed,
        };
        Ok((nets, g_params, d_params))
    }

    fn labels_of(labels: Option<&Tensor>) -> Result<&Tensor> {
        labels.ok_or_else(|| candle_core::Error::Msg("the conditional DCGAN needs labels".into()))
    }

    /// G(z, y); with `train`, batch norm uses the batch's statistics.
    pub(crate) fn generator(
        &self,
        z: &Tensor,
        labels: Option<&Tensor>,
        train: bool,
    ) -> Result<Tensor> {
        let y = one_hot(Self::labels_of(labels)?, self.classes)?;
        self.g.forward(&Tensor::cat(&[z, &y], 1)?, train)
    }

    /// D's logits for images `x` seen with `labels`: w·φ(x) + b + e_y·φ(x). With `frozen`
    /// no gradient reaches D's weights (the generator's step).
    pub(crate) fn logits(
        &self,
        x: &Tensor,
        labels: Option<&Tensor>,
        train: bool,
        frozen: bool,
        dropout: Option<&Dropout>,
    ) -> Result<Tensor> {
        let phi = self.d.features(x, train, frozen, dropout)?;
        let label_term = projection(&self.embed, Self::labels_of(labels)?, &phi, frozen)?;
        self.d.score(&phi, frozen)? + label_term
    }

    /// One step of Algorithm 1 on `images` seen with `labels`. G's step draws its labels
    /// uniformly, or with `shares` when the classes are unequal by design.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn train_step(
        &self,
        adv: &mut Adversarial,
        cfg: &NeuralConfig,
        images: &Tensor,
        labels: &Tensor,
        shares: Option<&[f32]>,
        step: u64,
        rng: &mut ChaCha8Rng,
    ) -> Result<Metrics> {
        let dropout = Dropout::for_step(cfg.d_dropout, rng);
        let dropout = dropout.as_ref();
        let generator = |z: &Tensor, l: Option<&Tensor>| self.generator(z, l, true);
        let disc = |x: &Tensor, l: Option<&Tensor>| self.logits(x, l, true, false, dropout);
        let frozen = |x: &Tensor, l: Option<&Tensor>| self.logits(x, l, true, true, dropout);
        let nets = Nets {
            g: &generator,
            d: &disc,
            d_frozen: &frozen,
            // Batch norm: the real and the fake batch are normalised apart.
            rows_independent: false,
            classes: self.classes,
            class_shares: shares,
        };
        adv.step(cfg, &nets, images, Some(labels), step, rng)
    }

    /// Mean D(x) on test `images` seen with `labels`, and D(G(z)) on as many fakes.
    pub(crate) fn eval_batch(
        &self,
        adv: &Adversarial,
        cfg: &NeuralConfig,
        images: &Tensor,
        labels: &Tensor,
        rng: &mut ChaCha8Rng,
    ) -> Result<Metrics> {
        let generator = |z: &Tensor, l: Option<&Tensor>| self.generator(z, l, false);
        let disc = |x: &Tensor, l: Option<&Tensor>| self.logits(x, l, false, false, None);
        adv.eval(&generator, &disc, images, Some(labels), cfg.latent_dim, rng)
    }
}

impl Model for Cdcgan {
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
        let labels = ConditionalNets::labels_of(batch.labels.as_ref())?;
        self.nets.train_step(
            &mut self.adv,
            &self.cfg,
            &batch.images,
            labels,
            None,
            step,
            rng,
        )
    }

    fn eval_batch(&self, batch: &Batch, rng: &mut ChaCha8Rng) -> Result<Metrics> {
        let labels = ConditionalNets::labels_of(batch.labels.as_ref())?;
        self.nets
            .eval_batch(&self.adv, &self.cfg, &batch.images, labels, rng)
    }

    fn generate(&self, z: &Tensor, labels: Option<&Tensor>) -> Result<Tensor> {
        self.adv.sampling(|| self.nets.generator(z, labels, false))
    }
}
