//! The one trainer every neural model runs under. It owns the loop (epochs, seeded batches,
//! steps), the evaluation on the test part, the sample grids from a fixed noise batch, and
//! the checkpoints. It runs on its own thread and talks only through messages: a stream of
//! [`TrainEvent`]s out and [`TrainCommand`]s in, so the TUI, the CLI, the figure generator
//! and the tests drive it the same way. The event channel is unbounded: a slow consumer
//! never slows training.
//!
//! Reproducibility: epoch e visits the images in an order drawn from (seed, e), and step s
//! draws its noise from (seed, s), so a run resumed from a checkpoint continues the same
//! curve as one that was never interrupted.

pub mod checkpoint;
pub mod code_mixture;
mod device;
pub mod divergence;
pub mod pixel_clusters;
pub mod runs;

pub use checkpoint::CheckpointError;
pub use device::{DeviceChoice, DeviceError};

use crate::data::{PixelScale, Split};
use crate::neural::{self, ImageShape, Metric, Metrics, Model, ModelKind, NeuralConfig};
use crate::render::Grid;
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError, channel};
use std::time::Instant;

/// What to train and how.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    pub model: NeuralConfig,
    pub epochs: usize,
    pub batch_size: usize,
    pub seed: u64,
    pub device: DeviceChoice,
    /// Where checkpoints and grids go; nothing is written when `None`.
    pub out_dir: Option<PathBuf>,
    /// Steps between checkpoints (0: only at the end of each epoch and of the run).
    pub checkpoint_every: u64,
    /// Steps between sample grids (0: only at the end of each epoch).
    pub sample_every: u64,
    /// Images in the sample grid.
    pub grid_size: usize,
    /// Test batches evaluated at the end of each epoch (all if `None`).
    pub eval_batches: Option<usize>,
    /// Complete checkpoints kept on disk.
    pub keep_checkpoints: usize,
    /// Stop after this many steps in total (for tests and benchmarks).
    pub max_steps: Option<u64>,
    /// On resume, this learning rate replaces the checkpoint's (how a run that diverged
    /// continues more gently); `None` keeps the checkpoint's.
    pub resume_lr: Option<f64>,
    /// After the run ends (finished or stopped), keep the model and answer sample,
    /// interpolation and checkpoint commands until told to stop or the front end goes away:
    /// a finished run is the one most worth exploring. Only for [`spawn`]: [`train`]
    /// returns when the run ends.
    pub linger: bool,
}

/// The default length of a run of `kind` on the embedded digits, as (epochs, batch size):
/// what the TUI, the CLI and the scoreboard use unless told otherwise. Each is chosen so
/// that the run ends with samples a person reads as digits in at most about three minutes
/// on two CPU cores. The GANs take batches of 64, twice the generator steps per epoch of
/// 128: their quality follows the number of steps more than the number of images, and the
/// DCGAN needs several hundred steps before its strokes join into digits.
pub fn default_budget(kind: ModelKind) -> (usize, usize) {
    match kind {
        // A step is cheap: 150 epochs of the denoising autoencoder with 512 hidden units
        // take under two minutes and bring the legible share of its mixture-drawn samples
        // above 0.9 (book 3.6).
        ModelKind::Autoencoder => (150, 128),
        // 120 epochs (under two and a half minutes) bring the samples drawn through the
        // code mixture to FD 7.0 and a legible share of 0.89 (15.9 and 0.88 after 40; means
        // over seeds 0-2) and the importance-weighted test NLL to 88.8 nats at seed 0; the
        // test −ELBO passes its lowest, 95.4, near epoch 75 and is 97.7 at the end (book
        // 3.7).
        ModelKind::Vae => (120, 128),
        // With 40 clusters, 90 epochs (11,250 steps, under three minutes) bring the
        // legible share above 0.9 (book 4.1).
        ModelKind::Gan => (90, 64),
        // 50 epochs (under two minutes) bring conditional accuracy above 0.95 (0.968 and
        // 0.963 at seeds 0 and 1; 0.948 after 40).
        ModelKind::Cgan => (50, 64),
        // With 40 clusters, 25 epochs (under three minutes) bring the legible share above
        // 0.9 (book 4.2).
        ModelKind::Dcgan => (25, 64),
        ModelKind::Cdcgan => (15, 64),
    }
}

impl TrainConfig {
    /// A run of `model` with its default budget ([`default_budget`]), seed 0, on the CPU.
    pub fn new(model: NeuralConfig) -> Self {
        let (epochs, batch_size) = default_budget(model.kind);
        Self {
            model,
            epochs,
            batch_size,
            seed: 0,
            device: DeviceChoice::Cpu,
            out_dir: None,
            checkpoint_every: 0,
            sample_every: 50,
            grid_size: 64,
            eval_batches: None,
            keep_checkpoints: 2,
            max_steps: None,
            resume_lr: None,
            linger: false,
        }
    }
}

/// What the trainer reports.
#[derive(Debug, Clone)]
pub enum TrainEvent {
    Started {
        model: ModelKind,
        device: DeviceChoice,
        parameters: usize,
        steps_per_epoch: u64,
        total_steps: u64,
        start_step: u64,
    },
    Step {
        step: u64,
        epoch: usize,
        metrics: Metrics,
        images_per_sec: f64,
    },
    Epoch {
        epoch: usize,
        step: u64,
        train: Metrics,
        test: Metrics,
    },
    /// The grid from the fixed noise batch (or the autoencoder's reconstructions).
    Samples {
        step: u64,
        grid: Grid,
    },
    Checkpoint {
        step: u64,
        path: PathBuf,
    },
    /// Images along a latent path (rows: linear, then spherical), from `Interpolate`.
    Interpolation {
        step: u64,
        grid: Grid,
    },
    Paused {
        step: u64,
    },
    Resumed {
        step: u64,
    },
    Finished {
        step: u64,
        stopped_early: bool,
    },
    Failed {
        step: u64,
        message: String,
    },
}

/// What a front end can ask of a running trainer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainCommand {
    Pause,
    Resume,
    Stop,
    SampleNow,
    SaveNow,
    /// Decode the path between two codes drawn from `seed`, in `steps` images, linearly
    /// and spherically (conditional models: the class is `seed % classes`).
    Interpolate {
        seed: u64,
        steps: usize,
    },
}

/// A running trainer: its events, its command channel and its thread.
pub struct TrainHandle {
    pub events: Receiver<TrainEvent>,
    pub commands: Sender<TrainCommand>,
    pub thread: std::thread::JoinHandle<()>,
}

/// Why a run could not start, or stopped with an error.
///
/// Like the other error types of the library's new modules, each message holds its cause's
/// text in full, so one line says everything wherever it is shown (the TUI's status, an
/// event, the CLI); the cause is not also linked as the error's `source`, which would make
/// a chained report print it twice.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A run setting out of range; the message names it and what was expected.
    #[error("{0}")]
    Setting(String),
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error(transparent)]
    Model(#[from] neural::ConfigError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("{}: checkpoint of a {found}, not a {wanted}", ckpt.display())]
    WrongModel {
        ckpt: PathBuf,
        found: &'static str,
        wanted: &'static str,
    },
    #[error("{}: checkpoint for {} images, the dataset has {}", ckpt.display(), shape_text(found), shape_text(wanted))]
    WrongShape {
        ckpt: PathBuf,
        found: ImageShape,
        wanted: ImageShape,
    },
    #[error("{}: checkpoint trained on {found}, but this run's data is {wanted}; resume it on the data it was trained on (--dataset and --data-dir), or start a new run", ckpt.display())]
    WrongDataset {
        ckpt: PathBuf,
        found: String,
        wanted: String,
    },
    #[error("could not start the trainer thread: {0}")]
    Thread(std::io::Error),
    /// A tensor operation failed at `step`.
    #[error("step {step}: {cause}")]
    Tensor {
        step: u64,
        cause: candle_core::Error,
    },
    #[error("step {step}: {cause}")]
    Grid {
        step: u64,
        cause: crate::render::grid::PngError,
    },
    /// A loss became NaN or infinite, or exploded (see [`divergence`]). `last_good` is
    /// the newest checkpoint that trained soundly, the one to resume with a smaller
    /// learning rate; every newer checkpoint is marked diverged.
    #[error("{}", diverged_message(at, .last_good.as_deref(), *.lr))]
    Diverged {
        at: Divergence,
        last_good: Option<PathBuf>,
        /// The learning rate the run diverged with.
        lr: f64,
    },
    /// The run's metrics file could not be written; the run stopped with a checkpoint.
    #[error("writing {}: {cause}; training stopped with a checkpoint", path.display())]
    MetricsLog {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// The mixture a model draws its codes from could not be fitted to the training codes.
    #[error(
        "step {step}: fitting the {components}-component code mixture to the training codes: {cause}"
    )]
    CodeMixture {
        step: u64,
        components: usize,
        cause: String,
    },
    /// The clusters an unlabelled GAN conditions on could not be fitted to the training
    /// images.
    #[error("fitting the model's {clusters} clusters to the training images: {cause}")]
    Clusters { clusters: usize, cause: String },
    /// What a run on the trainer thread reported when it failed.
    #[error("{message}")]
    Failed { step: u64, message: String },
}

/// What diverged, when and how; displayed as a sentence (also the text of a
/// checkpoint's mark).
#[derive(Debug, Clone, PartialEq)]
pub struct Divergence {
    pub loss: Metric,
    /// Its value at `step`.
    pub value: f64,
    /// The step the run stopped at, and its epoch.
    pub step: u64,
    pub epoch: usize,
    /// The first step of the divergence.
    pub since: u64,
    pub why: divergence::Why,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (loss, value, step, epoch) = (self.loss, self.value, self.step, self.epoch);
        match self.why {
            divergence::Why::NotFinite => {
                write!(f, "{loss} became {value} at step {step} (epoch {epoch})")
            }
            divergence::Why::Exploded { threshold } => write!(
                f,
                "{loss} stayed above {threshold:.4} ({} times its reference level) for {} steps from step {}, reaching {value:.4e} at step {step} (epoch {epoch})",
                divergence::FACTOR,
                divergence::STREAK,
                self.since
            ),
        }
    }
}

fn diverged_message(at: &Divergence, last_good: Option<&std::path::Path>, lr: f64) -> String {
    let smaller = lr / 10.0;
    let smaller = if (1e-3..1e3).contains(&smaller) {
        format!("{smaller}")
    } else {
        format!("{smaller:e}")
    };
    match last_good {
        Some(p) => format!(
            "{at}; training stopped. The last good checkpoint is {}: resume it with a smaller learning rate, e.g. --resume {} --lr {smaller}. Newer checkpoints are marked {}.",
            p.display(),
            p.display(),
            checkpoint::DIVERGED_MARK
        ),
        None => format!(
            "{at}; training stopped. No checkpoint trained soundly for {} steps (any are marked {}): start again with a smaller learning rate, e.g. --lr {smaller}.",
            divergence::STREAK,
            checkpoint::DIVERGED_MARK
        ),
    }
}

fn shape_text(s: &ImageShape) -> String {
    format!("{}x{}x{}", s.channels, s.height, s.width)
}

/// The model saved in a checkpoint, or in a run folder's newest one, ready to generate
/// (on the CPU), with the checkpoint's meta data.
pub fn load_model(
    path: &std::path::Path,
) -> Result<(Box<dyn Model>, checkpoint::Meta), TrainError> {
    let ckpt = checkpoint::resolve(path)?;
    let meta = checkpoint::read_meta(&ckpt)?;
    let mut model = neural::build(&meta.model, meta.shape, meta.num_classes, &Device::Cpu, 0)?;
    checkpoint::load_into(&ckpt, model.as_mut(), &meta, &Device::Cpu)?;
    Ok((model, meta))
}

/// The shape and class count a model needs from a dataset.
pub fn shape_of(split: &Split) -> ImageShape {
    let [_, c, h, w] = split.train.shape();
    ImageShape {
        channels: c,
        height: h,
        width: w,
    }
}

/// Everything prepared before the thread starts, so bad input fails before any work.
struct Prepared {
    model: Box<dyn Model>,
    device: Device,
    start_step: u64,
    /// The checkpoint resumed from.
    resumed: Option<PathBuf>,
}

fn prepare(
    cfg: &mut TrainConfig,
    split: &Split,
    resume: Option<&std::path::Path>,
) -> Result<Prepared, TrainError> {
    let setting = |m: &str| Err(TrainError::Setting(m.to_string()));
    if cfg.epochs == 0 {
        return setting("epochs must be at least 1, got 0");
    }
    if cfg.batch_size == 0 {
        return setting("batch size must be at least 1, got 0");
    }
    if cfg.grid_size == 0 {
        return setting("grid size must be at least 1, got 0");
    }
    let device = cfg.device.open()?;
    let shape = shape_of(split);
    let classes = split.train.num_classes().unwrap_or(0);
    if cfg.model.kind.is_conditional() && split.train.labels().is_none() {
        return Err(TrainError::Setting(format!(
            "the {} needs labels; {} has none",
            cfg.model.kind.name(),
            split.train.name
        )));
    }
    let mut start_step = 0;
    let mut resume_from = None;
    if let Some(path) = resume {
        let ckpt = checkpoint::resolve(path)?;
        let meta = checkpoint::read_meta(&ckpt)?;
        if meta.model.kind != cfg.model.kind {
            return Err(TrainError::WrongModel {
                ckpt,
                found: meta.model.kind.name(),
                wanted: cfg.model.kind.name(),
            });
        }
        if meta.shape != shape {
            return Err(TrainError::WrongShape {
                ckpt,
                found: meta.shape,
                wanted: shape,
            });
        }
        // Same-shaped data of another kind (Fashion-MNIST for MNIST) would silently make the
        // curve two curves. The embedded digits and full MNIST share a name: continuing on
        // more of the same digits is allowed.
        if meta.dataset != split.train.name {
            return Err(TrainError::WrongDataset {
                ckpt,
                found: meta.dataset.clone(),
                wanted: split.train.name.clone(),
            });
        }
        // The checkpoint's model, seed and batch size define the curve being continued;
        // only the learning rate may change, to continue a diverged run more gently.
        cfg.model = meta.model.clone();
        if let Some(lr) = cfg.resume_lr {
            cfg.model.lr = lr;
            cfg.model.validate()?;
        }
        cfg.seed = meta.seed;
        cfg.batch_size = meta.batch_size;
        start_step = meta.step;
        resume_from = Some((ckpt, meta));
    }
    // A fit to the training images needs at least as many images as it has parts (checked
    // after a checkpoint's own settings replaced the command line's).
    let too_few = |what: String, flag: &str| {
        TrainError::Setting(format!(
            "{} has {} training images, too few for {what}; ask for at most {} with {flag}",
            split.train.name,
            split.train.len(),
            split.train.len()
        ))
    };
    let mixes = cfg.model.code_sampling == neural::CodeSampling::Mixture
        && matches!(cfg.model.kind, ModelKind::Autoencoder | ModelKind::Vae);
    if mixes && split.train.len() < cfg.model.code_components {
        let what = format!("a code mixture of {} components", cfg.model.code_components);
        return Err(too_few(what, "--code-components"));
    }
    if cfg.model.clusters > split.train.len() {
        let what = format!("{} clusters", cfg.model.clusters);
        return Err(too_few(what, "--clusters"));
    }
    if split.train.len() < cfg.batch_size {
        return Err(TrainError::Setting(format!(
            "batch size {} is larger than the {} training images",
            cfg.batch_size,
            split.train.len()
        )));
    }
    let mut model = neural::build(&cfg.model, shape, classes, &device, cfg.seed)?;
    let mut resumed = None;
    if let Some((ckpt, meta)) = resume_from {
        checkpoint::load_into(&ckpt, model.as_mut(), &meta, &device)?;
        resumed = Some(ckpt);
    }
    Ok(Prepared {
        model,
        device,
        start_step,
        resumed,
    })
}

/// Validates, builds (or resumes) the model and starts training on a new thread.
pub fn spawn(
    mut cfg: TrainConfig,
    split: Split,
    resume: Option<PathBuf>,
) -> Result<TrainHandle, TrainError> {
    let prepared = prepare(&mut cfg, &split, resume.as_deref())?;
    let (etx, erx) = channel();
    let (ctx, crx) = channel();
    let thread = std::thread::Builder::new()
        .name("genmod-trainer".into())
        .spawn(move || crate::util::on_compute_pool(move || run(cfg, split, prepared, etx, crx)))
        .map_err(TrainError::Thread)?;
    Ok(TrainHandle {
        events: erx,
        commands: ctx,
        thread,
    })
}

/// Trains a model, handing every event to `on_event` on the calling thread until the run
/// ends. Setting `stop` (from a signal handler, another thread or `on_event` itself) ends
/// the run after the current step with a final checkpoint, as [`TrainCommand::Stop`] does.
///
/// This is the entry point of every face that does not steer a run as it goes: the CLI,
/// the figures, the scoreboard and the tests. The TUI, which also pauses, samples and
/// interpolates on request, holds the [`TrainHandle`] that [`spawn`] returns.
pub fn train(
    cfg: TrainConfig,
    split: Split,
    resume: Option<PathBuf>,
    stop: &AtomicBool,
    mut on_event: impl FnMut(&TrainEvent),
) -> Result<(), TrainError> {
    let handle = spawn(cfg, split, resume)?;
    let mut failure = None;
    let mut stop_sent = false;
    loop {
        if !stop_sent && stop.load(Ordering::Relaxed) {
            // A run that already ended has dropped its receiver; nothing is lost then.
            let _ = handle.commands.send(TrainCommand::Stop);
            stop_sent = true;
        }
        let ev = match handle.events.recv_timeout(STOP_POLL) {
            Ok(ev) => ev,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if let TrainEvent::Failed { step, message } = &ev {
            failure = Some(TrainError::Failed {
                step: *step,
                message: message.clone(),
            });
        }
        on_event(&ev);
    }
    let _ = handle.thread.join();
    failure.map_or(Ok(()), Err)
}

/// How often [`train`] looks at its stop flag while no event arrives: a stop request is
/// acted on within this time plus one step.
const STOP_POLL: std::time::Duration = std::time::Duration::from_millis(50);

fn step_seed(seed: u64, step: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ step.wrapping_mul(0xD1B5_4A32_D192_ED03) ^ 0x5EED
}

struct Loop {
    cfg: TrainConfig,
    split: Split,
    model: Box<dyn Model>,
    device: Device,
    events: Sender<TrainEvent>,
    fixed_z: Tensor,
    fixed_labels: Option<Tensor>,
    fixed_test: Tensor,
    last_checkpoint: Option<PathBuf>,
    /// Which checkpoint a divergence falls back to.
    fallback: divergence::Fallback,
    /// The run folder's metrics file (none without a run folder).
    metrics_log: Option<runs::MetricsLog>,
    watch: divergence::Watch,
    /// The step the model's code mixture was last fitted at (`CodeSampling::Mixture`).
    mixture_step: Option<u64>,
}

fn run(
    cfg: TrainConfig,
    split: Split,
    p: Prepared,
    events: Sender<TrainEvent>,
    commands: Receiver<TrainCommand>,
) {
    let step = p.start_step;
    let mut l = match Loop::new(cfg, split, p, events.clone()) {
        Ok(l) => l,
        Err(e) => {
            let message = e.to_string();
            let _ = events.send(TrainEvent::Failed { step, message });
            return;
        }
    };
    match l.train(step, &commands) {
        Ok(step) if l.cfg.linger => {
            if let Err(e) = l.linger(step, &commands) {
                let message = e.to_string();
                let _ = events.send(TrainEvent::Failed { step, message });
            }
        }
        Ok(_) => {}
        Err((step, e)) => {
            let message = e.to_string();
            let _ = events.send(TrainEvent::Failed { step, message });
        }
    }
}

impl Loop {
    fn new(
        cfg: TrainConfig,
        split: Split,
        p: Prepared,
        events: Sender<TrainEvent>,
    ) -> Result<Self, TrainError> {
        let step = p.start_step;
        let e = |cause| TrainError::Tensor { step, cause };
        // A fresh clustered GAN's clusters, before its first step (a resumed one loaded its own).
        if let Some(clusters) = p.model.pixel_clusters()
            && !clusters.fitted().map_err(e)?
        {
            pixel_clusters::fit(p.model.as_ref(), &split.train, &p.device, cfg.seed).map_err(
                |cause| TrainError::Clusters {
                    clusters: clusters.clusters(),
                    cause,
                },
            )?;
        }
        let mut rng = crate::util::Stream::FixedNoise.rng(cfg.seed);
        let n = cfg.grid_size;
        let fixed_z = neural::normal(n, cfg.model.latent_dim, &mut rng, &p.device).map_err(e)?;
        let classes = p.model.num_classes();
        let fixed_labels = if classes > 0 {
            let ids: Vec<u32> = (0..n).map(|i| (i % classes) as u32).collect();
            Some(Tensor::from_vec(ids, n, &p.device).map_err(e)?)
        } else {
            None
        };
        let metrics_log = match &cfg.out_dir {
            Some(dir) => Some(
                std::fs::create_dir_all(dir)
                    .and_then(|()| runs::MetricsLog::open(dir, step))
                    .map_err(|cause| TrainError::MetricsLog {
                        path: dir.join(runs::METRICS_FILE),
                        cause,
                    })?,
            ),
            None => None,
        };
        let half = (n / 2).clamp(1, split.test.len());
        let idx: Vec<usize> = (0..half).collect();
        let fixed_test = split
            .test
            .batch_of(&idx, &p.model.pixel_scale().table(), &p.device)
            .map_err(e)?
            .images;
        Ok(Self {
            cfg,
            split,
            model: p.model,
            device: p.device,
            events,
            fixed_z,
            fixed_labels,
            fixed_test,
            last_checkpoint: None,
            mixture_step: None,
            // The checkpoint a run resumes from trained soundly unless it is marked: a
            // divergence right after resuming (a larger learning rate, say) falls back to it.
            fallback: divergence::Fallback::new(
                p.resumed
                    .filter(|c| !checkpoint::is_diverged(c))
                    .map(|c| (step, c)),
            ),
            watch: divergence::Watch::new(),
            metrics_log,
        })
    }

    fn send(&self, ev: TrainEvent) {
        // A front end that went away does not stop training.
        let _ = self.events.send(ev);
    }

    /// Refits the model's code mixture to the training codes, unless it was fitted at this
    /// step already; nothing for models without one. The run refits quickly at each
    /// epoch's end, so that every checkpoint holds a mixture of its own encoder's codes,
    /// and afresh when it ends.
    fn refit_mixture(&mut self, step: u64, how: code_mixture::Refit) -> Result<(), TrainError> {
        if self.model.code_mixture().is_none() || self.mixture_step == Some(step) {
            return Ok(());
        }
        code_mixture::refit(
            self.model.as_ref(),
            &self.split.train,
            &self.device,
            self.cfg.seed,
            how,
        )
        .map_err(|cause| TrainError::CodeMixture {
            step,
            components: self.cfg.model.code_components,
            cause,
        })?;
        self.mixture_step = Some(step);
        Ok(())
    }

    /// Fits the code mixture if it never was (the first sample grid, or an interpolation,
    /// before the first epoch ends): generating needs one. A mixture loaded with a
    /// resumed checkpoint counts as fitted.
    fn ensure_mixture(&mut self, step: u64) -> Result<(), TrainError> {
        let unfitted = match self.model.code_mixture() {
            Some(m) => m
                .get()
                .map_err(|cause| TrainError::Tensor { step, cause })?
                .is_none(),
            None => false,
        };
        if unfitted {
            self.refit_mixture(step, code_mixture::Refit::Quick)?;
        }
        Ok(())
    }

    fn samples(&mut self, step: u64) -> Result<(), TrainError> {
        self.ensure_mixture(step)?;
        let e = |cause| TrainError::Tensor { step, cause };
        let imgs = self
            .model
            .preview(&self.fixed_z, self.fixed_labels.as_ref(), &self.fixed_test)
            .map_err(e)?;
        let grid = to_grid(&imgs, self.model.pixel_scale(), self.model.num_classes()).map_err(e)?;
        if let Some(dir) = &self.cfg.out_dir {
            let p = dir.join(runs::SAMPLES_FILE);
            grid.upscale(2)
                .save_png(&p)
                .map_err(|cause| TrainError::Grid { step, cause })?;
        }
        self.send(TrainEvent::Samples { step, grid });
        Ok(())
    }

    fn interpolate(&mut self, step: u64, seed: u64, steps: usize) -> Result<(), TrainError> {
        self.ensure_mixture(step)?;
        let e = |cause| TrainError::Tensor { step, cause };
        let steps = steps.clamp(2, 32);
        let latent = self.cfg.model.latent_dim;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let ends = neural::normal(2, latent, &mut rng, &self.device).map_err(e)?;
        let classes = self.model.num_classes();
        let labels = if classes > 0 {
            Some(
                Tensor::from_vec(
                    vec![(seed % classes as u64) as u32; 2 * steps],
                    2 * steps,
                    &self.device,
                )
                .map_err(e)?,
            )
        } else {
            None
        };
        let imgs = neural::interpolate::images(self.model.as_ref(), &ends, steps, labels.as_ref())
            .map_err(e)?;
        let (n, c, h, w) = imgs.dims4().map_err(e)?;
        let v = imgs.flatten_all().map_err(e)?.to_vec1::<f32>().map_err(e)?;
        let grid = Grid::from_f32(&v, n, c, h, w, steps, self.model.pixel_scale());
        self.send(TrainEvent::Interpolation { step, grid });
        Ok(())
    }

    fn checkpoint(&mut self, step: u64) -> Result<(), TrainError> {
        let Some(dir) = self.cfg.out_dir.clone() else {
            return Ok(());
        };
        let meta = checkpoint::Meta {
            format: checkpoint::FORMAT,
            model: self.cfg.model.clone(),
            shape: self.model.shape(),
            num_classes: self.model.num_classes(),
            step,
            seed: self.cfg.seed,
            batch_size: self.cfg.batch_size,
            dataset: self.split.train.name.clone(),
            optimizer_steps: Default::default(),
        };
        let path = checkpoint::save(
            &dir,
            self.model.as_mut(),
            &meta,
            self.cfg.keep_checkpoints,
            &self.fallback.protected(),
        )?;
        self.last_checkpoint = Some(path.clone());
        self.fallback.written(step, path.clone());
        self.send(TrainEvent::Checkpoint { step, path });
        Ok(())
    }

    fn evaluate(&self, step: u64, epoch: usize) -> Result<Metrics, TrainError> {
        let e = |cause| TrainError::Tensor { step, cause };
        let mut rng = ChaCha8Rng::seed_from_u64(step_seed(
            crate::util::Stream::Evaluation.seed(self.cfg.seed),
            epoch as u64,
        ));
        let table = self.model.pixel_scale().table();
        let n = self.split.test.len();
        let bs = self.cfg.batch_size.min(n);
        let max = self.cfg.eval_batches.unwrap_or(usize::MAX);
        let mut sums: Vec<(Metric, f64)> = Vec::new();
        let mut count = 0usize;
        for b in 0..n.div_ceil(bs).min(max) {
            let idx: Vec<usize> = (b * bs..((b + 1) * bs).min(n)).collect();
            let batch = self
                .split
                .test
                .batch_of(&idx, &table, &self.device)
                .map_err(e)?;
            let m = self.model.eval_batch(&batch, &mut rng).map_err(e)?;
            if sums.is_empty() {
                sums = m.iter().map(|(k, _)| (*k, 0.0)).collect();
            }
            for (s, (_, v)) in sums.iter_mut().zip(&m) {
                s.1 += v * idx.len() as f64;
            }
            count += idx.len();
        }
        Ok(sums
            .into_iter()
            .map(|(k, v)| (k, v / count.max(1) as f64))
            .collect())
    }

    /// Trains to the end or until stopped; the step it ended at.
    fn train(
        &mut self,
        start: u64,
        commands: &Receiver<TrainCommand>,
    ) -> Result<u64, (u64, Box<TrainError>)> {
        let bs = self.cfg.batch_size;
        let spe = (self.split.train.len() / bs) as u64;
        let mut total = spe * self.cfg.epochs as u64;
        if let Some(m) = self.cfg.max_steps {
            total = total.min(m);
        }
        self.send(TrainEvent::Started {
            model: self.cfg.model.kind,
            device: self.cfg.device,
            parameters: self.parameter_count(),
            steps_per_epoch: spe,
            total_steps: total,
            start_step: start,
        });
        let table = self.model.pixel_scale().table();
        let mut order = Vec::new();
        let mut order_epoch = usize::MAX;
        let mut means = EpochMeans::default();
        let mut rate = RateMeter::new();
        let mut step = start;
        let fail = |step: u64| move |e: TrainError| (step, Box::new(e));
        while step < total {
            if self
                .obey(step, commands, &mut rate)
                .map_err(fail(step))?
                .is_break()
            {
                return Ok(step);
            }
            let epoch = (step / spe) as usize;
            let b = (step % spe) as usize;
            if order_epoch != epoch {
                order = self.split.train.epoch_order(self.cfg.seed, epoch as u64);
                order_epoch = epoch;
            }
            let metrics = self
                .step(step, epoch, &order[b * bs..(b + 1) * bs], &table)
                .map_err(fail(step))?;
            step += 1;
            if let Some(log) = &mut self.metrics_log
                && let Err(cause) = log.append(step, epoch, &metrics)
            {
                let path = log.path().to_path_buf();
                // Keep the work done so far; the error says why the run ended.
                let _ = self.checkpoint(step);
                return Err((step, Box::new(TrainError::MetricsLog { path, cause })));
            }
            means.add(&metrics);
            let ips = rate.tick(bs);
            self.send(TrainEvent::Step {
                step,
                epoch,
                metrics,
                images_per_sec: ips,
            });
            if self.cfg.sample_every > 0 && step.is_multiple_of(self.cfg.sample_every) {
                self.samples(step).map_err(fail(step))?;
            }
            if self.cfg.checkpoint_every > 0 && step.is_multiple_of(self.cfg.checkpoint_every) {
                self.checkpoint(step).map_err(fail(step))?;
            }
            if step.is_multiple_of(spe) || step == total {
                self.end_epoch(step, epoch, means.take(), step == total)
                    .map_err(fail(step))?;
            }
        }
        self.send(TrainEvent::Finished {
            step,
            stopped_early: false,
        });
        Ok(step)
    }

    /// Answers commands on the ended run's model until told to stop: an ended run waits
    /// as a paused one does, and a stray Resume does not end it.
    fn linger(&mut self, step: u64, commands: &Receiver<TrainCommand>) -> Result<(), TrainError> {
        while self.wait_paused(step, commands)? {}
        Ok(())
    }

    fn parameter_count(&self) -> usize {
        let vars = self.model.varmap().all_vars();
        vars.iter().map(|v| v.elem_count()).sum()
    }

    /// Carries out the front end's commands, between steps; `Break` when the run stopped.
    fn obey(
        &mut self,
        step: u64,
        commands: &Receiver<TrainCommand>,
        rate: &mut RateMeter,
    ) -> Result<ControlFlow<()>, TrainError> {
        loop {
            match commands.try_recv() {
                Ok(TrainCommand::Pause) => {
                    self.send(TrainEvent::Paused { step });
                    if !self.wait_paused(step, commands)? {
                        self.stop(step)?;
                        return Ok(ControlFlow::Break(()));
                    }
                    self.send(TrainEvent::Resumed { step });
                    *rate = RateMeter::new();
                }
                Ok(TrainCommand::Stop) => {
                    self.stop(step)?;
                    return Ok(ControlFlow::Break(()));
                }
                Ok(TrainCommand::SampleNow) => self.samples(step)?,
                Ok(TrainCommand::SaveNow) => self.checkpoint(step)?,
                Ok(TrainCommand::Interpolate { seed, steps }) => {
                    self.interpolate(step, seed, steps)?
                }
                Ok(TrainCommand::Resume) => {}
                Err(TryRecvError::Empty) => return Ok(ControlFlow::Continue(())),
                // The front end is gone: finish the run as configured.
                Err(TryRecvError::Disconnected) => return Ok(ControlFlow::Continue(())),
            }
        }
    }

    /// One optimisation step on the images `indices`; a diverged loss stops the run
    /// ([`divergence`] has the rule).
    fn step(
        &mut self,
        step: u64,
        epoch: usize,
        indices: &[usize],
        table: &[f32; 256],
    ) -> Result<Metrics, TrainError> {
        let tensor = |cause| TrainError::Tensor { step, cause };
        let batch = self
            .split
            .train
            .batch_of(indices, table, &self.device)
            .map_err(tensor)?;
        let mut rng = ChaCha8Rng::seed_from_u64(step_seed(self.cfg.seed, step));
        let metrics = self
            .model
            .train_step(&batch, step, &mut rng)
            .map_err(tensor)?;
        let watched = self.model.watched_losses(step);
        let verdict = self.watch.observe(step, &metrics, watched);
        self.fallback.judged(step, &verdict);
        if let divergence::Verdict::Diverged {
            loss,
            value,
            since,
            why,
        } = verdict
        {
            let at = Divergence {
                loss,
                value,
                step,
                epoch,
                since,
                why,
            };
            let last_good = self.fallback.good().cloned();
            if let Some(dir) = &self.cfg.out_dir {
                // Best effort: the error below says the same, and a failed mark must not
                // hide it.
                let _ = checkpoint::mark_diverged(
                    dir,
                    last_good.as_ref().map(|g| g.0),
                    &at.to_string(),
                );
            }
            return Err(TrainError::Diverged {
                at,
                last_good: last_good.map(|g| g.1),
                lr: self.cfg.model.lr,
            });
        }
        Ok(metrics)
    }

    /// The test metrics, the epoch's means, a sample grid and a checkpoint (unless one was
    /// just written) at the end of an epoch or of the run.
    fn end_epoch(
        &mut self,
        step: u64,
        epoch: usize,
        train: Metrics,
        last: bool,
    ) -> Result<(), TrainError> {
        let how = if last {
            code_mixture::Refit::Final
        } else {
            code_mixture::Refit::Quick
        };
        self.refit_mixture(step, how)?;
        let test = self.evaluate(step, epoch)?;
        self.send(TrainEvent::Epoch {
            epoch,
            step,
            train,
            test,
        });
        self.samples(step)?;
        if self
            .last_checkpoint
            .as_ref()
            .is_none_or(|p| !p.ends_with(format!("ckpt-{step:010}")))
        {
            self.checkpoint(step)?;
        }
        Ok(())
    }

    /// Blocks while paused; returns false if asked to stop.
    fn wait_paused(
        &mut self,
        step: u64,
        commands: &Receiver<TrainCommand>,
    ) -> Result<bool, TrainError> {
        loop {
            match commands.recv() {
                Ok(TrainCommand::Resume) => return Ok(true),
                Ok(TrainCommand::Stop) | Err(_) => return Ok(false),
                Ok(TrainCommand::SampleNow) => self.samples(step)?,
                Ok(TrainCommand::SaveNow) => self.checkpoint(step)?,
                Ok(TrainCommand::Interpolate { seed, steps }) => {
                    self.interpolate(step, seed, steps)?
                }
                Ok(TrainCommand::Pause) => {}
            }
        }
    }

    fn stop(&mut self, step: u64) -> Result<(), TrainError> {
        self.refit_mixture(step, code_mixture::Refit::Final)?;
        self.checkpoint(step)?;
        self.send(TrainEvent::Finished {
            step,
            stopped_early: true,
        });
        Ok(())
    }
}

/// The running means of a step's metrics over an epoch; NaN values (a GAN's generator loss
/// before its first step) are left out of the sums.
#[derive(Default)]
struct EpochMeans {
    sums: Vec<(Metric, f64)>,
    steps: u64,
}

impl EpochMeans {
    fn add(&mut self, metrics: &Metrics) {
        if self.sums.is_empty() {
            self.sums = metrics.iter().map(|(k, _)| (*k, 0.0)).collect();
        }
        for (s, (_, v)) in self.sums.iter_mut().zip(metrics) {
            if v.is_finite() {
                s.1 += v;
            }
        }
        self.steps += 1;
    }

    /// The means so far, starting a new epoch.
    fn take(&mut self) -> Metrics {
        let steps = self.steps.max(1) as f64;
        let means = self.sums.iter().map(|(k, v)| (*k, v / steps)).collect();
        *self = Self::default();
        means
    }
}

/// Images per second over the recent steps (an exponential moving average).
struct RateMeter {
    last: Instant,
    ema: Option<f64>,
}

impl RateMeter {
    fn new() -> Self {
        Self {
            last: Instant::now(),
            ema: None,
        }
    }

    fn tick(&mut self, images: usize) -> f64 {
        let dt = self.last.elapsed().as_secs_f64().max(1e-9);
        self.last = Instant::now();
        let r = images as f64 / dt;
        let v = self.ema.map_or(r, |e| 0.9 * e + 0.1 * r);
        self.ema = Some(v);
        v
    }
}

/// Images (N x C x H x W, in `scale`) as a grid; conditional models get one column per class.
pub fn to_grid(images: &Tensor, scale: PixelScale, classes: usize) -> candle_core::Result<Grid> {
    let (n, c, h, w) = images.dims4()?;
    let v = images
        .flatten_all()?
        .to_dtype(candle_core::DType::F32)?
        .to_vec1::<f32>()?;
    let cols = if classes > 0 {
        classes
    } else {
        (n as f64).sqrt().ceil() as usize
    };
    Ok(Grid::from_f32(&v, n, c, h, w, cols, scale))
}
