//! `genmod bench lockstep`: is a GAN's training step in genmod the same arithmetic as in
//! PyTorch?
//!
//! `bench quality` compares where two frameworks end after thousands of steps, each with its
//! own random stream; a gap there can come from a defect or from chance. This suite takes
//! chance out. genmod trains a GAN for some steps and records every random input it draws:
//! each batch of digits, the noise of the discriminator's and of the generator's step, the
//! generator's labels and every dropout mask of the MLP discriminators, in the order the
//! training step draws them (a [`Dropout`] seed first, then the two noise batches, then the
//! labels). PyTorch (`bench/reference/pytorch_lockstep.py`) replays the same steps from
//! genmod's initial weights twice, in float32 and float64, and compares the weights (the
//! generator's moving average and batch norm's running statistics too) with genmod's after
//! 1, 10 and 100 steps.
//!
//! A GAN's training is chaotic: a rounding difference in one pre-activation near a
//! LeakyReLU's kink grows step by step until the runs are unrelated. So genmod's distance
//! from PyTorch is read beside PyTorch's own float32 run's distance from its float64 run,
//! which differ by rounding alone. The first step's losses, which depend on the replayed
//! noise and masks only, show that the replay is the run genmod made.

use super::suite::BenchError;
use crate::data::arrays::{Elements, npy_bytes};
use crate::data::mnist;
use crate::neural::layers::Dropout;
use crate::neural::{self, ImageShape, Metric, ModelKind, NeuralConfig, normal};
use candle_core::Device;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What `bench lockstep` runs.
#[derive(Debug, Clone)]
pub struct LockstepOptions {
    /// The GANs to replay.
    pub models: Vec<ModelKind>,
    /// Steps per run (at least 1).
    pub steps: u64,
    /// Seeds 0..seeds.
    pub seeds: u64,
    /// Where the recorded inputs and weights are kept.
    pub work_dir: PathBuf,
    /// The Python interpreter that has torch, numpy and safetensors.
    pub python: PathBuf,
}

/// The steps after which weights are compared.
fn checkpoints(steps: u64) -> Vec<u64> {
    let mut at: Vec<u64> = [1, 10, 100, 1000]
        .into_iter()
        .filter(|&s| s < steps)
        .collect();
    at.push(steps);
    at
}

/// How far one run's weights are from another's after some steps.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Distance {
    pub step: u64,
    /// genmod against PyTorch float32, PyTorch float64, and PyTorch float32 against float64:
    /// the median over the weight tensors of max |a − b| / max |b|.
    pub genmod_f32: f64,
    pub genmod_f64: f64,
    pub f32_f64: f64,
}

/// The first step's losses on both sides.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct FirstLosses {
    pub genmod_d: f64,
    pub genmod_g: f64,
    pub pytorch_d: f64,
    pub pytorch_g: f64,
}

/// The comparison of one model and seed.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Replay {
    pub model: String,
    pub seed: u64,
    pub first: FirstLosses,
    pub distances: Vec<Distance>,
}

fn lockstep(message: impl Into<String>) -> BenchError {
    BenchError::Lockstep(message.into())
}

/// Records and replays every model and seed of `opts`; `log` follows progress.
pub fn run(opts: &LockstepOptions, log: &mut dyn FnMut(&str)) -> Result<Vec<Replay>, BenchError> {
    if opts.steps == 0 || opts.seeds == 0 {
        return Err(lockstep("--steps and --seeds must be at least 1"));
    }
    if let Some(other) = opts.models.iter().find(|k| !k.is_gan()) {
        return Err(lockstep(format!(
            "--models: {} is not replayed (the GANs are: gan, dcgan, cgan, cdcgan)",
            other.name()
        )));
    }
    let mut out = Vec::new();
    for &kind in &opts.models {
        for seed in 0..opts.seeds {
            let dir = opts.work_dir.join(format!("{}-seed{seed}", kind.name()));
            std::fs::create_dir_all(&dir)
                .map_err(|e| lockstep(format!("{}: {e}", dir.display())))?;
            log(&format!(
                "{} seed {seed}: genmod, {} steps, recording its inputs",
                kind.name(),
                opts.steps
            ));
            let mut cfg = NeuralConfig::new(kind);
            // The MLP GAN and the DCGAN are replayed with the report's unconditional nets:
            // their default runs condition them on clusters of the images, which makes
            // their steps the conditional nets', replayed under `cgan` and `cdcgan`. The
            // MLP GAN keeps the unclustered recipe's dropout in D, whose masks the replay
            // reads from the recording.
            if matches!(kind, ModelKind::Gan | ModelKind::Dcgan) {
                cfg.clusters = 0;
            }
            if kind == ModelKind::Gan {
                cfg.d_dropout = 0.5;
            }
            record(&cfg, seed, opts.steps, &dir)?;
            log(&format!(
                "{} seed {seed}: PyTorch float32 and float64, replaying them",
                kind.name()
            ));
            out.push(replay(opts, &cfg, seed, &dir)?);
        }
    }
    Ok(out)
}

/// Trains `steps` steps in genmod, writing the initial weights, every random input, the
/// losses and the weights at each checkpoint into `dir`.
fn record(cfg: &NeuralConfig, seed: u64, steps: u64, dir: &Path) -> Result<(), BenchError> {
    let tensor = |e: candle_core::Error| lockstep(e.to_string());
    let split = mnist::embedded();
    let classes = if cfg.kind.is_conditional() { 10 } else { 0 };
    let shape = ImageShape {
        channels: 1,
        height: 28,
        width: 28,
    };
    let dev = Device::Cpu;
    let mut model =
        neural::build(cfg, shape, classes, &dev, seed).map_err(|e| lockstep(e.to_string()))?;
    let save = |name: &str, model: &dyn neural::Model| {
        let path = dir.join(name);
        model
            .varmap()
            .save(&path)
            .map_err(|e| lockstep(format!("{}: {e}", path.display())))
    };
    save("init.safetensors", model.as_ref())?;
    if cfg.d_dropout > 0.0 && cfg.kind.is_convolutional() {
        return Err(lockstep(
            "dropout in the convolutional discriminator is not replayed",
        ));
    }
    // The batch of the model's default run, which `bench quality` trains too.
    let (bs, latent, h) = (
        crate::train::default_budget(cfg.kind).1,
        cfg.latent_dim,
        cfg.hidden,
    );
    let per_epoch = (split.train.len() / bs) as u64;
    let table = model.pixel_scale().table();
    let mut inputs = Inputs::default();
    let at = checkpoints(steps);
    let mut order = Vec::new();
    for step in 0..steps {
        let (epoch, b) = (step / per_epoch, (step % per_epoch) as usize);
        if b == 0 {
            order = split.train.epoch_order(seed, epoch);
        }
        let batch = split
            .train
            .batch_of(&order[b * bs..(b + 1) * bs], &table, &dev)
            .map_err(tensor)?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(1_000_003) ^ step);
        // The draws of `Gan::train_step` and `Cgan::train_step`, in their order.
        let mut draws = rng.clone();
        if cfg.d_dropout > 0.0 {
            let dropout = Dropout::new(cfg.d_dropout, draws.random());
            // D's step sees the real and the fake batch as one batch of 2n rows, G's step n
            // rows; each hidden activation (2h, then h wide) gets its own mask.
            for rows in [2 * bs, bs] {
                for width in [2 * h, h] {
                    inputs.masks.extend(dropout.keep_pattern(rows * width));
                }
            }
        }
        for z in [&mut inputs.z_d, &mut inputs.z_g] {
            let noise = normal(bs, latent, &mut draws, &dev).map_err(tensor)?;
            z.extend(
                noise
                    .flatten_all()
                    .and_then(|t| t.to_vec1::<f32>())
                    .map_err(tensor)?,
            );
        }
        if classes > 0 {
            inputs
                .g_labels
                .extend((0..bs).map(|_| draws.random_range(0..classes as u32) as i64));
        }
        let metrics = model.train_step(&batch, step, &mut rng).map_err(tensor)?;
        let loss = |m: Metric| {
            metrics
                .iter()
                .find(|(k, _)| *k == m)
                .map_or(f64::NAN, |v| v.1)
        };
        inputs
            .losses
            .extend([loss(Metric::DLoss), loss(Metric::GLoss)]);
        inputs.x.extend(
            batch
                .images
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(tensor)?,
        );
        if let Some(l) = &batch.labels {
            inputs.labels.extend(
                l.to_vec1::<u32>()
                    .map_err(tensor)?
                    .into_iter()
                    .map(i64::from),
            );
        }
        if at.contains(&(step + 1)) {
            save(&format!("genmod-{}.safetensors", step + 1), model.as_ref())?;
        }
    }
    inputs.write(dir, steps as usize, bs, latent, h, classes > 0)
}

/// Every random input of a recorded run, step after step.
#[derive(Default)]
struct Inputs {
    x: Vec<f32>,
    labels: Vec<i64>,
    z_d: Vec<f32>,
    z_g: Vec<f32>,
    g_labels: Vec<i64>,
    /// 1 where dropout keeps an activation.
    masks: Vec<u8>,
    /// (D's loss, G's loss) per step.
    losses: Vec<f64>,
}

impl Inputs {
    fn write(
        self,
        dir: &Path,
        steps: usize,
        bs: usize,
        latent: usize,
        h: usize,
        conditional: bool,
    ) -> Result<(), BenchError> {
        let put = |name: &str, dims: &[usize], e: Elements| {
            let path = dir.join(name);
            crate::util::atomic_write(&path, &npy_bytes(dims, &e))
                .map_err(|e| lockstep(format!("{}: {e}", path.display())))
        };
        put("x.npy", &[steps, bs, 784], Elements::F32(self.x))?;
        put("z_d.npy", &[steps, bs, latent], Elements::F32(self.z_d))?;
        put("z_g.npy", &[steps, bs, latent], Elements::F32(self.z_g))?;
        let losses = self.losses.iter().map(|&v| v as f32).collect();
        put("losses.npy", &[steps, 2], Elements::F32(losses))?;
        if conditional {
            put("labels.npy", &[steps, bs], Elements::Int(self.labels))?;
            put("g_labels.npy", &[steps, bs], Elements::Int(self.g_labels))?;
        }
        if !self.masks.is_empty() {
            put(
                "masks.npy",
                &[steps, 3 * bs * 3 * h],
                Elements::U8(self.masks),
            )?;
        }
        Ok(())
    }
}

/// Runs the PyTorch replay over `dir` and reads its comparison.
fn replay(
    opts: &LockstepOptions,
    cfg: &NeuralConfig,
    seed: u64,
    dir: &Path,
) -> Result<Replay, BenchError> {
    let script = super::suite::reference_script("pytorch_lockstep.py");
    let config = serde_json::to_string(cfg).expect("a config serialises");
    let steps: Vec<String> = checkpoints(opts.steps).iter().map(u64::to_string).collect();
    let output = Command::new(&opts.python)
        .arg(&script)
        .args(["--model", cfg.kind.name()])
        .arg("--dir")
        .arg(dir)
        .args(["--config", &config])
        .args(["--seed", &seed.to_string()])
        .args(["--checkpoints", &steps.join(",")])
        .env("GENMOD_THREADS", rayon::current_num_threads().to_string())
        .output()
        .map_err(|e| lockstep(format!("running {}: {e}", opts.python.display())))?;
    if !output.status.success() {
        return Err(lockstep(format!(
            "{} failed for {} seed {seed}: {}",
            script.display(),
            cfg.kind.name(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    serde_json::from_slice(&output.stdout).map_err(|cause| BenchError::ReferenceOutput {
        what: "pytorch_lockstep.py".into(),
        cause,
    })
}

/// The comparison as Markdown.
pub fn markdown(replays: &[Replay]) -> String {
    let mut s = String::from(
        "Arithmetic parity: genmod's training steps replayed in PyTorch from the same initial \
         weights and the same random inputs (batches, noise, labels, dropout masks), in float32 \
         and float64. Distance: the median over the weight tensors (the generator's moving \
         average and batch norm's running statistics included) of max |a − b| / max |b|. \
         genmod's distance from PyTorch is to be read beside PyTorch float32's from float64, \
         which is rounding alone.\n\n\
         | model | seed | first step: D loss, G loss (genmod / PyTorch float32) | after step | genmod vs float32 | genmod vs float64 | float32 vs float64 |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for r in replays {
        let first = format!(
            "{:.6} / {:.6}, {:.6} / {:.6}",
            r.first.genmod_d, r.first.pytorch_d, r.first.genmod_g, r.first.pytorch_g
        );
        for (i, d) in r.distances.iter().enumerate() {
            let (model, seed, first) = if i == 0 {
                (r.model.as_str(), r.seed.to_string(), first.as_str())
            } else {
                ("", String::new(), "")
            };
            s.push_str(&format!(
                "| {model} | {seed} | {first} | {} | {:.1e} | {:.1e} | {:.1e} |\n",
                d.step, d.genmod_f32, d.genmod_f64, d.f32_f64
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_stop_at_the_last_step() {
        assert_eq!(checkpoints(1), vec![1]);
        assert_eq!(checkpoints(100), vec![1, 10, 100]);
        assert_eq!(checkpoints(250), vec![1, 10, 100, 250]);
    }

    /// The inputs the bench records are the ones the GAN's own step used: the
    /// discriminator's loss of the first step, recomputed with plain tensor operations from
    /// the recorded batch, noise and masks and the initial weights, is the loss the step
    /// reported. A change to the order of the step's draws breaks this test.
    #[test]
    fn the_recorded_inputs_reproduce_the_first_step() {
        use candle_core::Tensor;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        // The report's unclustered nets with dropout in D, as the lockstep replays them.
        let mut cfg = NeuralConfig::new(ModelKind::Gan);
        cfg.clusters = 0;
        cfg.d_dropout = 0.5;
        record(&cfg, 3, 1, dir).unwrap();
        let dev = Device::Cpu;
        let read = |name: &str| {
            let a = crate::data::arrays::read(&dir.join(name)).unwrap();
            match a.elements {
                Elements::F32(v) => v,
                Elements::U8(v) => v.into_iter().map(f32::from).collect(),
                Elements::Int(v) => v.into_iter().map(|i| i as f32).collect(),
            }
        };
        let (bs, h) = (64, cfg.hidden);
        let x = Tensor::from_vec(read("x.npy"), (bs, 784), &dev).unwrap();
        let z = Tensor::from_vec(read("z_d.npy"), (bs, cfg.latent_dim), &dev).unwrap();
        let masks = read("masks.npy");
        let w = candle_core::safetensors::load(dir.join("init.safetensors"), &dev).unwrap();
        let layer = |name: String, input: &Tensor| {
            let (wt, b) = (&w[&format!("{name}.weight")], &w[&format!("{name}.bias")]);
            input
                .matmul(&wt.t().unwrap())
                .unwrap()
                .broadcast_add(b)
                .unwrap()
        };
        let leaky = |t: &Tensor| candle_nn::ops::leaky_relu(t, 0.2).unwrap();
        let mut fake = z;
        for i in 0..4 {
            fake = layer(format!("g.l{i}"), &fake);
            fake = if i < 3 {
                leaky(&fake)
            } else {
                fake.tanh().unwrap()
            };
        }
        let mut hidden = Tensor::cat(&[&x, &fake], 0).unwrap();
        let mut offset = 0;
        for (i, width) in [2 * h, h].into_iter().enumerate() {
            let n = 2 * bs * width;
            let keep: Vec<f32> = masks[offset..offset + n].iter().map(|k| k * 2.0).collect();
            offset += n;
            let keep = Tensor::from_vec(keep, (2 * bs, width), &dev).unwrap();
            hidden = (leaky(&layer(format!("d.l{i}"), &hidden)) * keep).unwrap();
        }
        let logits = layer("d.l2".into(), &hidden);
        let softplus = |t: Tensor| (t.exp().unwrap() + 1.0).unwrap().log().unwrap();
        let real = softplus(logits.narrow(0, 0, bs).unwrap().neg().unwrap());
        let fake = softplus(logits.narrow(0, bs, bs).unwrap());
        let d_loss = (real.mean_all().unwrap() + fake.mean_all().unwrap())
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let logged = read("losses.npy")[0];
        assert!(
            (d_loss - logged).abs() < 1e-4,
            "recomputed D loss {d_loss}, the step logged {logged}"
        );
        // A wrong mask gives another loss: the check can fail.
        assert!(masks.contains(&0.0) && masks.contains(&1.0));
    }
}
