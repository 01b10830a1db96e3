//! Report 4.2: the deep convolutional GAN (Radford, Metz and Chintala 2016). Following the
//! paper's guidelines: no pooling (strided convolutions in D, transposed convolutions in G),
//! batch norm in both nets (not on G's output nor D's input layer), ReLU in G with tanh at
//! the output, LeakyReLU(0.2) in D, and no hidden fully connected layers (G's projection of
//! z and D's final score are the only dense maps).
//!
//! Sizes: 28x28 (MNIST: 7 → 14 → 28) and 32x32 or 64x64 (CIFAR-10, CelebA-style folders:
//! 4 → 8 → … → size), any channel count. Every resampling layer is kernel 4, stride 2,
//! padding 1, with no output padding (candle's transposed-convolution backward ignores it).
//! Batch norm uses batch statistics while training and the running averages for
//! generation; the running averages are saved with the weights.
//!
//! By default (`NeuralConfig::clusters`) G and D are conditioned on k-means clusters of the
//! training images, with the conditional DCGAN's nets (`cdcgan`), in place of the labels
//! the DCGAN does not read: see `pixel_clusters`. `--clusters 0` is the report's
//! unconditional DCGAN.

use super::cdcgan::ConditionalNets;
use super::gan::{Adversarial, Nets, gan_losses};
use super::kernels::linear::Activation;
use super::layers::{BatchNorm2d, Dense, DownConv, Dropout, ParamStore, UpConv};
use super::pixel_clusters::PixelClusters;
use super::{ImageShape, Metric, Metrics, Model, NeuralConfig};
use crate::data::Batch;
use crate::neural::optim::Adam;
use candle_core::{Module, Result, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand_chacha::ChaCha8Rng;

/// D's activation: LeakyReLU with slope 0.2, as Radford et al. use.
pub(crate) const LEAKY: Activation = Activation::LeakyRelu(0.2);

/// Start side and number of stride-2 steps for an image side.
pub fn plan(side: usize) -> Option<(usize, usize)> {
    match side {
        28 => Some((7, 2)),
        32 => Some((4, 3)),
        64 => Some((4, 4)),
        _ => None,
    }
}

/// The start side and the number of doublings for `shape`, or why it cannot be drawn.
fn plan_for(shape: ImageShape) -> Result<(usize, usize)> {
    if shape.height != shape.width {
        candle_core::bail!(
            "the DCGAN needs square images, got {}x{}",
            shape.height,
            shape.width
        );
    }
    plan(shape.height).ok_or_else(|| {
        candle_core::Error::Msg(format!(
            "the DCGAN supports 28x28, 32x32 and 64x64 images, got {0}x{0}",
            shape.height
        ))
    })
}

/// z → dense projection to h·2^(n−1) maps of the start side → n transposed convolutions,
/// each doubling the side and halving the channels, to the image (tanh).
pub(crate) struct Generator {
    project: Dense,
    bn0: BatchNorm2d,
    /// Each upsampling and the batch norm after it (none after the output layer).
    ups: Vec<(UpConv, Option<BatchNorm2d>)>,
    /// Channels and side of the projection's maps.
    start: (usize, usize),
}

impl Generator {
    /// A generator reading `inputs` numbers per image: the code z, with the conditional
    /// DCGAN's one-hot label after it.
    pub(crate) fn new(
        cfg: &NeuralConfig,
        inputs: usize,
        shape: ImageShape,
        vb: VarBuilder,
    ) -> Result<Self> {
        let (s0, n_up) = plan_for(shape)?;
        // Channels before each upsampling: h·2^(n_up−1), …, h; then the image's channels.
        let chans: Vec<usize> = (0..n_up)
            .map(|i| cfg.hidden << (n_up - 1 - i))
            .chain([shape.channels])
            .collect();
        let project = Dense::new(
            inputs,
            chans[0] * s0 * s0,
            Activation::Identity,
            vb.pp("project"),
        )?;
        let bn0 = BatchNorm2d::new(chans[0], Activation::Relu, vb.pp("bn0"))?;
        let ups = (0..n_up)
            .map(|i| {
                let last = i + 1 == n_up;
                // The output layer has no batch norm: its tanh is fused into the
                // convolution; elsewhere the ReLU is fused into the batch norm.
                let act = if last {
                    Activation::Tanh
                } else {
                    Activation::Identity
                };
                let up = UpConv::new(chans[i], chans[i + 1], act, vb.pp(format!("convt{i}")))?;
                let bn = (!last)
                    .then(|| {
                        BatchNorm2d::new(
                            chans[i + 1],
                            Activation::Relu,
                            vb.pp(format!("bn{}", i + 1)),
                        )
                    })
                    .transpose()?;
                Ok((up, bn))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            project,
            bn0,
            ups,
            start: (chans[0], s0),
        })
    }

    /// With `train`, batch norm uses the batch's statistics and updates its running ones.
    pub(crate) fn forward(&self, z: &Tensor, train: bool) -> Result<Tensor> {
        let (c, s) = self.start;
        let mut h = self.project.forward(z)?.reshape((z.dim(0)?, c, s, s))?;
        h = self.bn0.forward_t(&h, train, false)?;
        for (up, bn) in &self.ups {
            h = up.forward(&h)?;
            if let Some(bn) = bn {
                h = bn.forward_t(&h, train, false)?;
            }
        }
        Ok(h)
    }

    pub(crate) fn statistics(&self) -> Vec<&Tensor> {
        let bns =
            std::iter::once(&self.bn0).chain(self.ups.iter().filter_map(|(_, bn)| bn.as_ref()));
        bns.flat_map(BatchNorm2d::statistics).collect()
    }
}

/// image → n strided convolutions, each halving the side and doubling the channels from h
/// → dense score.
pub(crate) struct Discriminator {
    /// Each downsampling and the batch norm after it (none after the input layer).
    downs: Vec<(DownConv, Option<BatchNorm2d>)>,
    score: Dense,
    /// The size of φ(x), the score's input.
    feature_dim: usize,
}

impl Discriminator {
    pub(crate) fn new(cfg: &NeuralConfig, shape: ImageShape, vb: VarBuilder) -> Result<Self> {
        let (s0, n_down) = plan_for(shape)?;
        let chans: Vec<usize> = std::iter::once(shape.channels)
            .chain((0..n_down).map(|i| cfg.hidden << i))
            .collect();
        let downs = (0..n_down)
            .map(|i| {
                let first = i == 0;
                // Without batch norm (the first layer) the LeakyReLU is fused into the
                // convolution; with it, into the batch norm.
                let act = if first { LEAKY } else { Activation::Identity };
                let down = DownConv::new(chans[i], chans[i + 1], act, vb.pp(format!("conv{i}")))?;
                let bn = (!first)
                    .then(|| BatchNorm2d::new(chans[i + 1], LEAKY, vb.pp(format!("bn{i}"))))
                    .transpose()?;
                Ok((down, bn))
            })
            .collect::<Result<Vec<_>>>()?;
        let feature_dim = chans[n_down] * s0 * s0;
        let score = Dense::new(feature_dim, 1, Activation::Identity, vb.pp("score"))?;
        Ok(Self {
            downs,
            score,
            feature_dim,
        })
    }

    /// The features φ(x) the score reads: the last convolution's maps, flattened. With
    /// `frozen`, D's own weights get no gradient (the generator's step reads only the
    /// input's); `dropout`, while training, zeroes activations after each layer.
    pub(crate) fn features(
        &self,
        x: &Tensor,
        train: bool,
        frozen: bool,
        dropout: Option<&Dropout>,
    ) -> Result<Tensor> {
        let mut h = x.clone();
        for (down, bn) in &self.downs {
            h = down.forward_t(&h, frozen)?;
            if let Some(bn) = bn {
                h = bn.forward_t(&h, train, frozen)?;
            }
            if let Some(p) = dropout {
                h = p.apply(&h)?;
            }
        }
        h.flatten_from(1)
    }

    /// The unconditional part of the logit, w·φ(x) + b.
    pub(crate) fn score(&self, phi: &Tensor, frozen: bool) -> Result<Tensor> {
        if frozen {
            self.score.forward_frozen(phi)
        } else {
            self.score.forward(phi)
        }
    }

    /// The size of φ(x).
    pub(crate) fn feature_dim(&self) -> usize {
        self.feature_dim
    }

    /// The logit of each image (see [`Self::features`]).
    fn forward(
        &self,
        x: &Tensor,
        train: bool,
        frozen: bool,
        dropout: Option<&Dropout>,
    ) -> Result<Tensor> {
        self.score(&self.features(x, train, frozen, dropout)?, frozen)
    }

    pub(crate) fn statistics(&self) -> Vec<&Tensor> {
        let bns = self.downs.iter().filter_map(|(_, bn)| bn.as_ref());
        bns.flat_map(BatchNorm2d::statistics).collect()
    }
}

/// The DCGAN's generator and discriminator.
pub struct Dcgan {
    cfg: NeuralConfig,
    shape: ImageShape,
    params: ParamStore,
    nets: DcganNets,
    adv: Adversarial,
}

/// The report's unconditional nets, or the conditional DCGAN's nets conditioned on
/// clusters of the training images (`NeuralConfig::clusters`).
enum DcganNets {
    Plain {
        g: Generator,
        d: Discriminator,
    },
    Clustered {
        nets: ConditionalNets,
        clusters: PixelClusters,
    },
}

impl Dcgan {
    pub fn new(
        cfg: NeuralConfig,
        shape: ImageShape,
        params: ParamStore,
        vb: VarBuilder,
    ) -> Result<Self> {
        let (nets, g_params, d_params) = if cfg.clusters > 0 {
            let (nets, g_params, d_params) =
                ConditionalNets::new(&cfg, shape, cfg.clusters, &params, &vb)?;
            let clusters = PixelClusters::new(cfg.clusters, shape.dim(), &vb, &params)?;
            (DcganNets::Clustered { nets, clusters }, g_params, d_params)
        } else {
            let (g, g_params) =
                params.group(|| Generator::new(&cfg, cfg.latent_dim, shape, vb.pp("g")))?;
            let (d, d_params) = params.group(|| Discriminator::new(&cfg, shape, vb.pp("d")))?;
            // Batch norm's running statistics follow the batches, not an optimiser.
            params.mark_statistics(&g.statistics())?;
            params.mark_statistics(&d.statistics())?;
            (DcganNets::Plain { g, d }, g_params, d_params)
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

impl Model for Dcgan {
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
            DcganNets::Plain { .. } => None,
            DcganNets::Clustered { clusters, .. } => Some(clusters),
        }
    }

    fn train_step(&mut self, batch: &Batch, step: u64, rng: &mut ChaCha8Rng) -> Result<Metrics> {
        match &self.nets {
            DcganNets::Plain { g, d } => {
                let dropout = Dropout::for_step(self.cfg.d_dropout, rng);
                let dropout = dropout.as_ref();
                let generator = |z: &Tensor, _: Option<&Tensor>| g.forward(z, true);
                let disc = |x: &Tensor, _: Option<&Tensor>| d.forward(x, true, false, dropout);
                let frozen = |x: &Tensor, _: Option<&Tensor>| d.forward(x, true, true, dropout);
                let nets = Nets {
                    g: &generator,
                    d: &disc,
                    d_frozen: &frozen,
                    // D's batch norm normalises the real and the fake batch each by its own
                    // statistics.
                    rows_independent: false,
                    classes: 0,
                    class_shares: None,
                };
                self.adv
                    .step(&self.cfg, &nets, &batch.images, None, step, rng)
            }
            DcganNets::Clustered { nets, clusters } => {
                // Each real image is seen with its nearest cluster; G's step draws
                // clusters with their shares of the training images.
                let labels = clusters.assign(&batch.images)?;
                let shares = clusters.shares()?;
                nets.train_step(
                    &mut self.adv,
                    &self.cfg,
                    &batch.images,
                    &labels,
                    Some(&shares),
                    step,
                    rng,
                )
            }
        }
    }

    fn eval_batch(&self, batch: &Batch, rng: &mut ChaCha8Rng) -> Result<Metrics> {
        match &self.nets {
            DcganNets::Plain { g, d } => {
                let generator = |z: &Tensor, _: Option<&Tensor>| g.forward(z, false);
                let disc = |x: &Tensor, _: Option<&Tensor>| d.forward(x, false, false, None);
                let latent = self.cfg.latent_dim;
                self.adv
                    .eval(&generator, &disc, &batch.images, None, latent, rng)
            }
            DcganNets::Clustered { nets, clusters } => {
                let labels = clusters.assign(&batch.images)?;
                nets.eval_batch(&self.adv, &self.cfg, &batch.images, &labels, rng)
            }
        }
    }

    fn generate(&self, z: &Tensor, _labels: Option<&Tensor>) -> Result<Tensor> {
        match &self.nets {
            DcganNets::Plain { g, .. } => self.adv.sampling(|| g.forward(z, false)),
            DcganNets::Clustered { nets, clusters } => {
                let (labels, z) = clusters.pick(z)?;
                self.adv
                    .sampling(|| nets.generator(&z, Some(&labels), false))
            }
        }
    }
}
