//! Report 4.3: the conditional GAN (Mirza and Osindero 2014). Both nets see the label as a
//! one-hot vector concatenated to their input, so G(z, y) can be asked for a chosen class.
//! Training is the shared adversarial step ([`super::gan::Adversarial`]); the generator's
//! step draws its labels uniformly. Whether samples honour their label is measured by the
//! conditional accuracy of the evaluation (a GAN can learn to ignore the label).

use super::gan::{Adversarial, GAN_LOSSES, Mlp, Nets};
use super::{ImageShape, Metric, Metrics, Model, NeuralConfig, one_hot};
use crate::data::Batch;
use crate::neural::optim::Adam;
use candle_core::{Result, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand_chacha::ChaCha8Rng;

/// MLP nets as the GAN's, with `num_classes` one-hot inputs added to each.
pub struct Cgan {
    cfg: NeuralConfig,
    shape: ImageShape,
    classes: usize,
    varmap: VarMap,
    g: Mlp,
    d: Mlp,
    adv: Adversarial,
}

impl Cgan {
    pub fn new(
        cfg: NeuralConfig,
        shape: ImageShape,
        classes: usize,
        varmap: VarMap,
        vb: VarBuilder,
    ) -> Result<Self> {
        let (h, dim) = (cfg.hidden, shape.dim());
        let g = Mlp::new(
            &[cfg.latent_dim + classes, h, 2 * h, 4 * h, dim],
            vb.pp("g"),
        )?;
        let d = Mlp::new(&[dim + classes, 2 * h, h, 1], vb.pp("d"))?;
        let adv = Adversarial::new(&varmap, &cfg)?;
        Ok(Self {
            cfg,
            shape,
            classes,
            varmap,
            g,
            d,
            adv,
        })
    }

    fn labels_of(labels: Option<&Tensor>) -> Result<&Tensor> {
        labels.ok_or_else(|| candle_core::Error::Msg("the conditional GAN needs labels".into()))
    }

    fn generator(&self, z: &Tensor, labels: Option<&Tensor>) -> Result<Tensor> {
        let y = one_hot(Self::labels_of(labels)?, self.classes)?;
        self.g.forward_tanh(&Tensor::cat(&[z, &y], 1)?)
    }

    fn disc(&self, x: &Tensor, labels: Option<&Tensor>) -> Result<Tensor> {
        let y = one_hot(Self::labels_of(labels)?, self.classes)?;
        self.d.forward(&Tensor::cat(&[x, &y], 1)?)
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
        &self.varmap
    }
    fn optimizers(&mut self) -> Vec<(&'static str, &mut Adam)> {
        vec![("d", &mut self.adv.opt_d), ("g", &mut self.adv.opt_g)]
    }
    fn num_classes(&self) -> usize {
        self.classes
    }
    fn loss_names(&self) -> &'static [Metric] {
        GAN_LOSSES
    }

    fn train_step(&mut self, batch: &Batch, step: u64, rng: &mut ChaCha8Rng) -> Result<Metrics> {
        let real = batch.images.flatten_from(1)?;
        let labels = batch.labels.as_ref();
        Self::labels_of(labels)?;
        let (g, d, k) = (&self.g, &self.d, self.classes);
        let generator = |z: &Tensor, l: Option<&Tensor>| {
            g.forward_tanh(&Tensor::cat(&[z, &one_hot(Self::labels_of(l)?, k)?], 1)?)
        };
        let disc = |x: &Tensor, l: Option<&Tensor>| {
            d.forward(&Tensor::cat(&[x, &one_hot(Self::labels_of(l)?, k)?], 1)?)
        };
        let frozen = |x: &Tensor, l: Option<&Tensor>| {
            d.forward_frozen(&Tensor::cat(&[x, &one_hot(Self::labels_of(l)?, k)?], 1)?)
        };
        let nets = Nets {
            g: &generator,
            d: &disc,
            d_frozen: &frozen,
            rows_independent: true,
            classes: k,
        };
        self.adv.step(&self.cfg, &nets, &real, labels, step, rng)
    }

    fn eval_batch(&self, batch: &Batch, rng: &mut ChaCha8Rng) -> Result<Metrics> {
        let real = batch.images.flatten_from(1)?;
        let generator = |z: &Tensor, l: Option<&Tensor>| self.generator(z, l);
        let disc = |x: &Tensor, l: Option<&Tensor>| self.disc(x, l);
        self.adv.eval(
            &generator,
            &disc,
            &real,
            batch.labels.as_ref(),
            self.cfg.latent_dim,
            rng,
        )
    }

    fn generate(&self, z: &Tensor, labels: Option<&Tensor>) -> Result<Tensor> {
        let s = self.shape;
        self.generator(z, labels)?
            .reshape((z.dim(0)?, s.channels, s.height, s.width))
    }
}
