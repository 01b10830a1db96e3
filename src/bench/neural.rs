//! Neural workloads: steady-state training throughput (images per second) of each model at
//! a given batch size, on the embedded digits, the same nets as `bench/reference/pytorch_neural.py`.

use crate::data::mnist;
use crate::neural::Activation;
use crate::neural::{self, ModelKind, NeuralConfig};
use crate::train::shape_of;
use candle_core::Device;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

/// Median images per second over three timed blocks of `steps` steps, after 5 warm-up steps,
/// on a compute pool as the trainer runs.
pub fn throughput(kind: ModelKind, batch: usize, steps: usize) -> f64 {
    crate::util::on_compute_pool(|| throughput_here(kind, batch, steps))
}

fn throughput_here(kind: ModelKind, batch: usize, steps: usize) -> f64 {
    let split = mnist::embedded();
    let cfg = NeuralConfig::new(kind);
    let mut model = neural::build(&cfg, shape_of(&split), 10, &Device::Cpu, 0).expect("model");
    let table = model.pixel_scale().table();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let order = split.train.epoch_order(0, 0);
    let mut step = 0u64;
    let mut run = |n: usize, step: &mut u64| {
        for _ in 0..n {
            let b = (*step as usize * batch) % (order.len() - batch);
            let batch = split
                .train
                .batch_of(&order[b..b + batch], &table, &Device::Cpu)
                .expect("batch");
            model.train_step(&batch, *step, &mut rng).expect("step");
            *step += 1;
        }
    };
    run(5, &mut step);
    let mut rates: Vec<f64> = (0..3)
        .map(|_| {
            let t = Instant::now();
            run(steps, &mut step);
            (batch * steps) as f64 / t.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[1]
}

/// Median images per second of sampling: `batch` codes decoded by an untrained model's
/// generator, three timed rounds of `rounds` batches after one warm-up batch. No gradients
/// are recorded (plain tensors, no variables), as in `torch.no_grad()`.
pub fn sampling_throughput(kind: ModelKind, batch: usize, rounds: usize) -> f64 {
    crate::util::on_compute_pool(|| sampling_here(kind, batch, rounds))
}

fn sampling_here(kind: ModelKind, batch: usize, rounds: usize) -> f64 {
    let split = mnist::embedded();
    let cfg = NeuralConfig::new(kind);
    let model = neural::build(&cfg, shape_of(&split), 10, &Device::Cpu, 0).expect("model");
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let labels = (model.num_classes() > 0).then(|| {
        let ids: Vec<u32> = (0..batch as u32).map(|i| i % 10).collect();
        candle_core::Tensor::from_vec(ids, batch, &Device::Cpu).expect("labels")
    });
    let once = |rng: &mut ChaCha8Rng| {
        let z = neural::normal(batch, cfg.latent_dim, rng, &Device::Cpu).expect("codes");
        let x = model.generate(&z, labels.as_ref()).expect("generate");
        // Read the values back, as a user saving images would.
        x.flatten_all()
            .expect("flatten")
            .to_vec1::<f32>()
            .expect("values")
    };
    once(&mut rng);
    let mut rates: Vec<f64> = (0..3)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..rounds {
                std::hint::black_box(once(&mut rng));
            }
            (batch * rounds) as f64 / t.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[1]
}

/// Seconds from nothing loaded to the first 8x8 grid of VAE samples in memory: decode the
/// embedded digits, build the model, decode 64 codes, tile them. Run it in a fresh process
/// (`genmod bench` does) so that nothing is cached.
pub fn time_to_first_grid() -> f64 {
    let t = Instant::now();
    let split = mnist::embedded();
    let cfg = NeuralConfig::new(ModelKind::Vae);
    let model = neural::build(&cfg, shape_of(&split), 10, &Device::Cpu, 0).expect("model");
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
