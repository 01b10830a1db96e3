//! Neural workloads: training throughput (images per second) of each model at a given batch
//! size, sampling throughput, and the DCGAN's layers one at a time; the same nets as
//! `bench/reference/pytorch_neural.py`. Each function is one measurement: the suite
//! alternates them with the reference's (see [`super::suite`]).

use crate::data::{Batch, mnist};
use crate::neural::Activation;
use crate::neural::{self, CodeSampling, Conditioning, ImageShape, ModelKind, NeuralConfig};
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

/// The embedded digits' shape.
pub const DIGITS: ImageShape = ImageShape {
    channels: 1,
    height: 28,
    width: 28,
};

/// What one row of the neural suite trains or samples.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The table's name for the model.
    pub name: String,
    /// The reference script's name for the same model (`pytorch_neural.py`'s `Gan(model)`).
    pub key: &'static str,
    pub config: NeuralConfig,
    pub shape: ImageShape,
    /// A folder of MNIST-format files to train on instead of the embedded digits.
    pub data_dir: Option<std::path::PathBuf>,
}

impl Workload {
    /// The report's recipe of `kind`: no clusters, no moving average, no dropout, for the
    /// cGAN the label concatenated to D's input, the autoencoder's 256 hidden units without
    /// input noise, and the VAE's codes drawn from its prior, which is what the report's
    /// architectures cost and what the reference script builds. (The clustered MLP GAN's
    /// and DCGAN's steps are the conditional nets' steps, timed in the cGAN recipe's and
    /// the conditional DCGAN's rows.)
    pub fn report(kind: ModelKind) -> Self {
        let mut config = NeuralConfig::new(kind);
        config.clusters = 0;
        config.ema_decay = 0.0;
        config.d_dropout = 0.0;
        match kind {
            ModelKind::Cgan => config.conditioning = Conditioning::Concat,
            ModelKind::Autoencoder => {
                config.hidden = 256;
                config.denoise_std = 0.0;
            }
            ModelKind::Vae => config.code_sampling = CodeSampling::StandardNormal,
            _ => {}
        }
        let (name, key) = match kind {
            ModelKind::Autoencoder => ("autoencoder 784-256-32", "autoencoder"),
            ModelKind::Vae => ("VAE 784-400-20", "vae"),
            ModelKind::Gan => ("MLP GAN", "gan"),
            ModelKind::Cgan => ("conditional GAN", "cgan"),
            ModelKind::Dcgan => ("DCGAN 28x28", "dcgan"),
            ModelKind::Cdcgan => ("conditional DCGAN 28x28", "cdcgan"),
        };
        Self {
            name: name.into(),
            key,
            config,
            shape: DIGITS,
            data_dir: None,
        }
    }

    /// genmod's recipes of `kind` where they cost more than the report's: the unclustered
    /// MLP GAN's dropout in D and moving average of G, the cGAN's projection
    /// discriminator and moving average (`NeuralConfig::new`).
    pub fn recipe(kind: ModelKind) -> Self {
        let (name, key) = match kind {
            ModelKind::Gan => (
                "MLP GAN, unclustered recipe (D dropout, G average)",
                "gan_recipe",
            ),
            ModelKind::Cgan => (
                "conditional GAN, default recipe (projection D, G average)",
                "cgan_recipe",
            ),
            _ => return Self::report(kind),
        };
        let mut config = NeuralConfig::new(kind);
        if kind == ModelKind::Gan {
            config.clusters = 0;
            config.d_dropout = 0.5;
        }
        Self {
            name: name.into(),
            key,
            config,
            shape: DIGITS,
            data_dir: None,
        }
    }

    /// The report's DCGAN (no clusters) on `side`x`side` colour images (32: CIFAR-10; 64:
    /// CelebA-style folders).
    pub fn dcgan_colour(side: usize) -> Self {
        let mut config = NeuralConfig::new(ModelKind::Dcgan);
        config.clusters = 0;
        Self {
            name: format!("DCGAN {side}x{side}x3"),
            key: "dcgan",
            config,
            shape: ImageShape {
                channels: 3,
                height: side,
                width: side,
            },
            data_dir: None,
        }
    }

    /// The workload a request names (`model` and `shape`, as [`Self::request`] writes them).
    pub fn from_request(request: &serde_json::Value) -> Result<Self, String> {
        let model = request["model"]
            .as_str()
            .ok_or("the request names no model")?;
        let shape: Vec<usize> = match request.get("shape") {
            None => vec![1, 28, 28],
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| format!("shape: expected [channels, height, width], {e}"))?,
        };
        let kind = |name: &str| {
            ModelKind::ALL
                .into_iter()
                .find(|k| k.name() == name)
                .ok_or_else(|| format!("unknown model {name:?}"))
        };
        let mut w = match model.strip_suffix("_recipe") {
            Some(base) => Self::recipe(kind(base)?),
            None => Self::report(kind(model)?),
        };
        match shape[..] {
            [1, 28, 28] => {}
            [channels, side, width] if model == "dcgan" && side == width => {
                w = Self::dcgan_colour(side);
                w.shape.channels = channels;
            }
            _ => return Err(format!("{model}: no workload at shape {shape:?}")),
        }
        match &request["data"] {
            serde_json::Value::Null => {}
            serde_json::Value::String(dir) if w.shape == DIGITS => w.data_dir = Some(dir.into()),
            serde_json::Value::String(_) => {
                return Err(format!(
                    "data: a folder of MNIST files trains 28x28x1 workloads only, not {shape:?}"
                ));
            }
            other => return Err(format!("data: expected a folder's path, got {other}")),
        }
        Ok(w)
    }

    fn classes(&self) -> usize {
        if self.config.kind.is_conditional() {
            10
        } else {
            0
        }
    }

    /// The reference's request for the same workload (`pytorch_neural.py --serve`).
    pub fn request(&self, op: &str) -> serde_json::Value {
        let s = self.shape;
        let mut request = serde_json::json!({
            "op": op,
            "model": self.key,
            "shape": [s.channels, s.height, s.width],
        });
        if let Some(dir) = &self.data_dir {
            request["data"] = dir.display().to_string().into();
        }
        request
    }
}

/// One measurement described by a request of `pytorch_neural.py --serve`'s protocol, so that
/// both sides of a row are driven by the same words: training or sampling images per second,
/// or a DCGAN layer's seconds.
pub fn measure(request: &serde_json::Value) -> Result<f64, String> {
    let count = |field: &str| {
        request[field]
            .as_u64()
            .map(|v| v as usize)
            .filter(|&v| v > 0)
            .ok_or_else(|| format!("the request's {field} must be a positive integer"))
    };
    match request["op"].as_str() {
        Some("train") => training_throughput(
            &Workload::from_request(request)?,
            count("batch")?,
            count("steps")?,
        ),
        Some("sample") => sampling_throughput(
            &Workload::from_request(request)?,
            count("n")?,
            count("rounds")?,
        ),
        Some("layer") => {
            let key = request["key"].as_str().unwrap_or("");
            let layer = DCGAN_LAYERS
                .iter()
                .find(|l| l.key == key)
                .ok_or_else(|| format!("no DCGAN layer {key:?}"))?;
            dcgan_layer_seconds(layer, count("reps")?)
                .ok_or_else(|| format!("{}: it could not be built or run", layer.name))
        }
        other => Err(format!(
            "unknown op {other:?}: expected train, sample or layer"
        )),
    }
}

/// Images per second of `steps` training steps of a freshly built model at `batch`, after 3
/// warm-up steps, on a compute pool as the trainer runs. The digits for 28x28x1 (a batch
/// gathered and converted per step, as in training; the workload's folder's training
/// images where it names one), otherwise four fixed batches of uniform noise: the nets'
/// cost does not depend on the pixels.
pub fn training_throughput(w: &Workload, batch: usize, steps: usize) -> Result<f64, String> {
    crate::util::on_compute_pool(|| training_here(w, batch, steps)).map_err(|e| e.to_string())
}

fn training_here(w: &Workload, batch: usize, steps: usize) -> candle_core::Result<f64> {
    let dev = Device::Cpu;
    let mut model = neural::build(&w.config, w.shape, w.classes(), &dev, 0)
        .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut next: Box<dyn FnMut(u64) -> candle_core::Result<Batch>> = if w.shape == DIGITS {
        let split = match &w.data_dir {
            Some(dir) => mnist::load_dir(dir, mnist::Variant::Mnist)
                .map_err(|e| candle_core::Error::Msg(e.to_string()))?,
            None => mnist::embedded(),
        };
        let table = model.pixel_scale().table();
        let order = split.train.epoch_order(0, 0);
        Box::new(move |step| {
            let b = (step as usize * batch) % (order.len() - batch);
            split.train.batch_of(&order[b..b + batch], &table, &dev)
        })
    } else {
        let pool: Vec<Batch> = (0..4)
            .map(|_| noise_batch(batch, w.shape, &mut rng, &dev))
            .collect::<candle_core::Result<_>>()?;
        Box::new(move |step| Ok(pool[step as usize % pool.len()].clone()))
    };
    for step in 0..3 {
        model.train_step(&next(step)?, step, &mut rng)?;
    }
    let t = Instant::now();
    for step in 3..3 + steps as u64 {
        model.train_step(&next(step)?, step, &mut rng)?;
    }
    Ok((batch * steps) as f64 / t.elapsed().as_secs_f64())
}

/// A batch of uniform noise in [−1, 1] with random labels.
fn noise_batch(
    n: usize,
    shape: ImageShape,
    rng: &mut ChaCha8Rng,
    dev: &Device,
) -> candle_core::Result<Batch> {
    let pixels: Vec<f32> = (0..n * shape.dim())
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    let labels: Vec<u32> = (0..n).map(|_| rng.random_range(0..10)).collect();
    Ok(Batch {
        images: Tensor::from_vec(pixels, (n, shape.channels, shape.height, shape.width), dev)?,
        labels: Some(Tensor::from_vec(labels, n, dev)?),
        indices: (0..n).collect(),
    })
}

/// Images per second of sampling: `n` codes decoded `rounds` times by an untrained model's
/// generator (its moving average where the recipe keeps one) after one warm-up round. No
/// gradients are recorded (plain tensors, no variables), as in `torch.no_grad()`; the values
/// are read back, as a user saving images would.
pub fn sampling_throughput(w: &Workload, n: usize, rounds: usize) -> Result<f64, String> {
    crate::util::on_compute_pool(|| sampling_here(w, n, rounds)).map_err(|e| e.to_string())
}

fn sampling_here(w: &Workload, n: usize, rounds: usize) -> candle_core::Result<f64> {
    let dev = Device::Cpu;
    let model = neural::build(&w.config, w.shape, w.classes(), &dev, 0)
        .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let labels = (model.num_classes() > 0)
        .then(|| Tensor::from_vec((0..n as u32).map(|i| i % 10).collect(), n, &dev))
        .transpose()?;
    let once = |rng: &mut ChaCha8Rng| -> candle_core::Result<Vec<f32>> {
        let z = neural::normal(n, w.config.latent_dim, rng, &dev)?;
        model
            .generate(&z, labels.as_ref())?
            .flatten_all()?
            .to_vec1()
    };
    once(&mut rng)?;
    let t = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(once(&mut rng)?);
    }
    Ok((n * rounds) as f64 / t.elapsed().as_secs_f64())
}

/// Seconds from nothing loaded to the first 8x8 grid of VAE samples in memory: decode the
/// embedded digits, build the model, decode 64 codes, tile them. Run it in a fresh process
/// (`genmod bench` does) so that nothing is cached.
pub fn time_to_first_grid() -> f64 {
    let t = Instant::now();
    std::hint::black_box(mnist::embedded());
    // The report's VAE, which decodes draws from its prior as the reference's does (the
    // default's code mixture is fitted after training).
    let cfg = Workload::report(ModelKind::Vae).config;
    let model = neural::build(&cfg, DIGITS, 10, &Device::Cpu, 0).expect("model");
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let z = neural::normal(64, cfg.latent_dim, &mut rng, &Device::Cpu).expect("codes");
    let x = model.generate(&z, None).expect("generate");
    let v = x
        .flatten_all()
        .expect("flatten")
        .to_vec1::<f32>()
        .expect("values");
    let grid = crate::render::Grid::from_f32(&v, 64, 1, 28, 28, 8, model.pixel_scale());
    std::hint::black_box(grid);
    t.elapsed().as_secs_f64()
}

/// One layer as a function of its input.
type LayerFn = dyn Fn(&candle_core::Tensor) -> candle_core::Result<candle_core::Tensor>;

/// What a benchmarked DCGAN layer is, with the activation fused after it.
#[derive(Debug, Clone, Copy)]
pub enum LayerKind {
    /// Strided convolution to this many channels (D).
    Down(usize, Activation),
    /// Transposed convolution to this many channels (G).
    Up(usize, Activation),
    /// Batch norm in training mode (both nets).
    Norm(Activation),
}

/// One row of [`DCGAN_LAYERS`].
#[derive(Debug, Clone, Copy)]
pub struct DcganLayer {
    /// The reference script's key (`pytorch_neural.py --only KEY`).
    pub key: &'static str,
    pub name: &'static str,
    /// The input's shape, batch first.
    pub input: [usize; 4],
    pub kind: LayerKind,
}

/// The DCGAN's layers (28x28), one at a time: what each costs and where PyTorch leads.
pub const DCGAN_LAYERS: [DcganLayer; 6] = {
    use crate::neural::dcgan::LEAKY;
    use Activation::{Identity, Relu, Tanh};
    use LayerKind::{Down, Norm, Up};
    [
        DcganLayer {
            key: "layer_d1",
            name: "D conv 1->64, 28->14, LeakyReLU",
            input: [128, 1, 28, 28],
            kind: Down(64, LEAKY),
        },
        DcganLayer {
            key: "layer_d2",
            name: "D conv 64->128, 14->7",
            input: [128, 64, 14, 14],
            kind: Down(128, Identity),
        },
        DcganLayer {
            key: "layer_dbn",
            name: "D batch norm 128 at 7x7, LeakyReLU",
            input: [128, 128, 7, 7],
            kind: Norm(LEAKY),
        },
        DcganLayer {
            key: "layer_g1",
            name: "G transposed conv 128->64, 7->14",
            input: [128, 128, 7, 7],
            kind: Up(64, Identity),
        },
        DcganLayer {
            key: "layer_gbn",
            name: "G batch norm 64 at 14x14, ReLU",
            input: [128, 64, 14, 14],
            kind: Norm(Relu),
        },
        DcganLayer {
            key: "layer_g2",
            name: "G transposed conv 64->1, 14->28, tanh",
            input: [128, 64, 14, 14],
            kind: Up(1, Tanh),
        },
    ]
};

/// Median seconds of one forward and backward pass (input, weight and bias gradients, from
/// the sum of the output) through `layer`, in training mode, over `reps` timed runs after
/// warm-up; `None` if the layer cannot be built or run.
pub fn dcgan_layer_seconds(layer: &DcganLayer, reps: usize) -> Option<f64> {
    crate::util::on_compute_pool(|| dcgan_layer_here(layer, reps))
}

fn dcgan_layer_here(spec: &DcganLayer, reps: usize) -> Option<f64> {
    use crate::neural::layers::{BatchNorm2d, DownConv, ParamStore, UpConv};
    use candle_core::{Module, Var};
    let dev = Device::Cpu;
    let params = ParamStore::new();
    let vb = params.var_builder(&dev);
    let [n, c_in, h, w] = spec.input;
    let layer: Box<LayerFn> = match spec.kind {
        LayerKind::Down(c_out, act) => {
            let l = DownConv::new(c_in, c_out, act, vb).ok()?;
            Box::new(move |x| l.forward_t(x, false))
        }
        LayerKind::Up(c_out, act) => {
            let l = UpConv::new(c_in, c_out, act, vb).ok()?;
            Box::new(move |x| l.forward(x))
        }
        LayerKind::Norm(act) => {
            let bn = BatchNorm2d::new(c_in, act, vb).ok()?;
            Box::new(move |x| bn.forward_t(x, true, false))
        }
    };
    params.initialise(0, None).ok()?;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let values = neural::normal(n, c_in * h * w, &mut rng, &dev).ok()?;
    let x = Var::from_tensor(&values.reshape((n, c_in, h, w)).ok()?).ok()?;
    let pass = || -> candle_core::Result<()> {
        layer(x.as_tensor())?.sum_all()?.backward()?;
        Ok(())
    };
    pass().ok()?;
    let mut failed = false;
    let seconds = super::median_seconds(reps, || failed |= pass().is_err());
    (!failed).then_some(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rows named after the report's widths build those widths, as the reference
    /// script does (784-256-32 and 784-400-20), whatever genmod's defaults become.
    #[test]
    fn the_report_workloads_have_the_widths_their_names_give() {
        let ae = Workload::report(ModelKind::Autoencoder);
        assert_eq!((ae.config.hidden, ae.config.latent_dim), (256, 32));
        assert_eq!(ae.config.denoise_std, 0.0);
        assert!(ae.name.contains("784-256-32"));
        let vae = Workload::report(ModelKind::Vae);
        assert_eq!((vae.config.hidden, vae.config.latent_dim), (400, 20));
        assert_eq!(vae.config.code_sampling, CodeSampling::StandardNormal);
        assert!(vae.name.contains("784-400-20"));
    }
}
