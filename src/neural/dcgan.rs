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

use super::gan::{Adversarial, GAN_LOSSES, Nets};
use super::kernels::batch_norm;
use super::kernels::linear::{Activation, dense, dense_frozen};
use super::{ImageShape, Metric, Metrics, Model, NeuralConfig};
use crate::data::Batch;
use crate::neural::optim::Adam;
use candle_core::{Result, Tensor};
use candle_nn::{
    BatchNorm, Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig, Linear, VarBuilder,
    VarMap,
};
use rand_chacha::ChaCha8Rng;

pub(crate) fn up_cfg() -> ConvTranspose2dConfig {
    ConvTranspose2dConfig {
        padding: 1,
        output_padding: 0,
        stride: 2,
        dilation: 1,
    }
}

pub(crate) fn down_cfg() -> Conv2dConfig {
    Conv2dConfig {
        padding: 1,
        stride: 2,
        dilation: 1,
        groups: 1,
        cudnn_fwd_algo: None,
    }
}

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

struct Generator {
    project: Linear,
    bn0: BatchNorm,
    ups: Vec<(ConvTranspose2d, Option<BatchNorm>)>,
    start: (usize, usize),
}

struct Discriminator {
    downs: Vec<(Conv2d, Option<BatchNorm>)>,
    score: Linear,
}

/// The DCGAN's generator and discriminator.
pub struct Dcgan {
    cfg: NeuralConfig,
    shape: ImageShape,
    varmap: VarMap,
    g: Generator,
    d: Discriminator,
    adv: Adversarial,
}

impl Dcgan {
    pub fn new(
        cfg: NeuralConfig,
        shape: ImageShape,
        varmap: VarMap,
        vb: VarBuilder,
    ) -> Result<Self> {
        if shape.height != shape.width {
            candle_core::bail!(
                "the DCGAN needs square images, got {}x{}",
                shape.height,
                shape.width
            );
        }
        let (s0, n_up) = plan(shape.height).ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "the DCGAN supports 28x28, 32x32 and 64x64 images, got {0}x{0}",
                shape.height
            ))
        })?;
        let h = cfg.hidden;
        // Channels before each upsampling: h·2^(n_up−1), …, h; then the image's channels.
        let chans: Vec<usize> = (0..n_up)
            .map(|i| h << (n_up - 1 - i))
            .chain([shape.channels])
            .collect();
        let gvb = vb.pp("g");
        let project = candle_nn::linear(cfg.latent_dim, chans[0] * s0 * s0, gvb.pp("project"))?;
        let bn0 = candle_nn::batch_norm(chans[0], 1e-5, gvb.pp("bn0"))?;
        let mut ups = Vec::new();
        for i in 0..n_up {
            let conv = candle_nn::conv_transpose2d(
                chans[i],
                chans[i + 1],
                4,
                up_cfg(),
                gvb.pp(format!("convt{i}")),
            )?;
            let bn = if i + 1 < n_up {
                Some(candle_nn::batch_norm(
                    chans[i + 1],
                    1e-5,
                    gvb.pp(format!("bn{}", i + 1)),
                )?)
            } else {
                None
            };
            ups.push((conv, bn));
        }
        let dvb = vb.pp("d");
        let dchans: Vec<usize> = std::iter::once(shape.channels)
            .chain((0..n_up).map(|i| h << i))
            .collect();
        let mut downs = Vec::new();
        for i in 0..n_up {
            let conv = candle_nn::conv2d(
                dchans[i],
                dchans[i + 1],
                4,
                down_cfg(),
                dvb.pp(format!("conv{i}")),
            )?;
            let bn = if i > 0 {
                Some(candle_nn::batch_norm(
                    dchans[i + 1],
                    1e-5,
                    dvb.pp(format!("bn{i}")),
                )?)
            } else {
                None
            };
            downs.push((conv, bn));
        }
        let score = candle_nn::linear(dchans[n_up] * s0 * s0, 1, dvb.pp("score"))?;
        let adv = Adversarial::new(&varmap, &cfg)?;
        Ok(Self {
            cfg,
            shape,
            varmap,
            g: Generator {
                project,
                bn0,
                ups,
                start: (chans[0], s0),
            },
            d: Discriminator { downs, score },
            adv,
        })
    }
}

impl Generator {
    fn forward(&self, z: &Tensor, train: bool) -> Result<Tensor> {
        let (c, s) = self.start;
        let mut h = dense(&self.project, z, Activation::Identity)?.reshape((z.dim(0)?, c, s, s))?;
        h = batch_norm::forward_t(&self.bn0, &h, train, false, Activation::Relu)?;
        for (conv, bn) in &self.ups {
            // The last layer has no batch norm: its tanh is fused into the convolution.
            let act = match bn {
                Some(_) => Activation::Identity,
                None => Activation::Tanh,
            };
            h = super::kernels::conv::conv_transpose2d(
                conv,
                &h,
                up_cfg().stride,
                up_cfg().padding,
                act,
            )?;
            if let Some(bn) = bn {
                h = batch_norm::forward_t(bn, &h, train, false, Activation::Relu)?;
            }
        }
        Ok(h)
    }
}

impl Discriminator {
    /// The logit of each image; with `frozen`, D's own weights get no gradient (the
    /// generator's step reads only the input's).
    fn forward(&self, x: &Tensor, train: bool, frozen: bool) -> Result<Tensor> {
        let mut h = x.clone();
        for (conv, bn) in &self.downs {
            // Without batch norm (the first layer) the LeakyReLU is fused into the
            // convolution; with it, into the batch norm.
            let act = match bn {
                Some(_) => Activation::Identity,
                None => LEAKY,
            };
            let (stride, padding) = (down_cfg().stride, down_cfg().padding);
            h = super::kernels::conv::conv2d(conv, &h, stride, padding, frozen, act)?;
            if let Some(bn) = bn {
                h = batch_norm::forward_t(bn, &h, train, frozen, LEAKY)?;
            }
        }
        let h = h.flatten_from(1)?;
        if frozen {
            dense_frozen(&self.score, &h, Activation::Identity)
        } else {
            dense(&self.score, &h, Activation::Identity)
        }
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
        &self.varmap
    }
    fn optimizers(&mut self) -> Vec<(&'static str, &mut Adam)> {
        vec![("d", &mut self.adv.opt_d), ("g", &mut self.adv.opt_g)]
    }
    fn loss_names(&self) -> &'static [Metric] {
        GAN_LOSSES
    }

    fn train_step(&mut self, batch: &Batch, step: u64, rng: &mut ChaCha8Rng) -> Result<Metrics> {
        let (g, d) = (&self.g, &self.d);
        let generator = |z: &Tensor, _: Option<&Tensor>| g.forward(z, true);
        let disc = |x: &Tensor, _: Option<&Tensor>| d.forward(x, true, false);
        let frozen = |x: &Tensor, _: Option<&Tensor>| d.forward(x, true, true);
        let nets = Nets {
            g: &generator,
            d: &disc,
            d_frozen: &frozen,
            // D's batch norm normalises the real and the fake batch each by its own statistics.
            rows_independent: false,
            classes: 0,
        };
        self.adv
            .step(&self.cfg, &nets, &batch.images, None, step, rng)
    }

    fn eval_batch(&self, batch: &Batch, rng: &mut ChaCha8Rng) -> Result<Metrics> {
        let generator = |z: &Tensor, _: Option<&Tensor>| self.g.forward(z, false);
        let disc = |x: &Tensor, _: Option<&Tensor>| self.d.forward(x, false, false);
        self.adv.eval(
            &generator,
            &disc,
            &batch.images,
            None,
            self.cfg.latent_dim,
            rng,
        )
    }

    fn generate(&self, z: &Tensor, _labels: Option<&Tensor>) -> Result<Tensor> {
        self.adv.sampling(|| self.g.forward(z, false))
    }
}
