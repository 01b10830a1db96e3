//! Report 3.6: an MLP autoencoder, h = g(Wx + b), x̂ = f(W*h + c), trained to reconstruct
//! its input. Options: under- or over-complete code, squared error or binary cross-entropy,
//! an L2 penalty λ‖θ‖², tied weights W* = Wᵀ, and denoising (Vincent et al. 2008: the input
//! is corrupted with Gaussian noise, the target stays clean). With a 2-D code the codes of
//! the test digits show the scattered, gappy latent space of figure 3.9.

use super::kernels::linear::{Activation, WeightLayout, dense_with};
use super::layers::{ParamInit, ParamStore};
use super::losses::{bce_with_logits, squared_error};
use super::{ImageShape, Metric, Metrics, Model, NeuralConfig, ReconLoss, normal, scalar};
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
    opt: Adam,
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
        let opt = Adam::new(
            params.trainable(&params.all()),
            AdamConfig::new(cfg.lr, cfg.beta1),
        )?;
        Ok(Self {
            cfg,
            shape,
            params,
            enc,
            dec,
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
    fn loss_names(&self) -> &'static [Metric] {
        &[Metric::Loss, Metric::Recon]
    }

    fn train_step(&mut self, batch: &Batch, _step: u64, rng: &mut ChaCha8Rng) -> Result<Metrics> {
        let x = batch.images.flatten_from(1)?;
        let input = if self.cfg.denoise_std > 0.0 {
            let noise = normal(x.dim(0)?, x.dim(1)?, rng, x.device())?;
            (&x + (noise * self.cfg.denoise_std)?)?.clamp(0f32, 1f32)?
        } else {
            x.clone()
        };
        let logits = self.decode_logits(&self.code(&input)?)?;
        let recon = self.recon_loss(&logits, &x)?;
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
        let s = self.shape;
        candle_nn::ops::sigmoid(&self.decode_logits(z)?)?.reshape((
            z.dim(0)?,
            s.channels,
            s.height,
            s.width,
        ))
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
        let recon = self.generate(&self.code(&x)?, None)?;
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
