//! `genmod`: the headless command line. Argument parsing and wiring only; the work is in
//! the library.

use anyhow::{Context, Result, bail};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use clap::{Args, Parser, Subcommand};
use genmod::bench::suite::{BenchOptions, Suite};
use genmod::classical::catalog::{self, ClassicalConfig, ImageModel};
use genmod::classical::demo::Demo;
use genmod::classical::gmm::GmmCovariance;
use genmod::cli::{DataArgs, choice};
use genmod::data::download;
use genmod::neural::{
    CodeSampling, Conditioning, GeneratorLoss, KlSchedule, ModelKind, NeuralConfig, ReconLoss,
    WeightInit,
};
use genmod::render::Grid;
use genmod::train::runs::RunFolder;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "genmod",
    version,
    about = "Classical and deep generative models, headless"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// CPU threads for training and the matrix products (default: the physical cores).
    #[arg(long, global = true, value_parser = clap::value_parser!(u32).range(1..=1024))]
    threads: Option<u32>,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect, preview and download datasets.
    #[command(subcommand)]
    Data(DataCommand),
    /// Print a completion script for a shell, e.g. `genmod completions bash >
    /// ~/.local/share/bash-completion/completions/genmod`.
    Completions {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `genmod man > genmod.1 && man ./genmod.1`.
    Man,
    /// Fit a classical model (report 3.2-3.5) and score it on the test part.
    Fit(FitArgs),
    /// Fit a classical model and write its samples as a PNG grid, one class per column.
    Sample {
        #[command(flatten)]
        fit: FitArgs,
        /// Samples per class (the mixture draws ten times this many).
        #[arg(long, default_value_t = 8)]
        per_class: usize,
        /// Output PNG.
        #[arg(long)]
        out: PathBuf,
    },
    /// Train a neural model (report 3.6-4.3) with checkpoints and sample grids.
    Train(Box<TrainArgs>),
    /// Regenerate every figure of the book (trains what it needs; about 25 minutes on two cores).
    Figures {
        /// Folder of the PNGs; the likelihood table goes to its sibling `generated/`.
        #[arg(long, default_value = "book/src/figures")]
        out: PathBuf,
        /// A tiny configuration, for tests: seconds, not meaningful pictures.
        #[arg(long)]
        quick: bool,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Only these groups, comma-separated (all if not given).
        #[arg(long, value_parser = choice::<genmod::figures::FigureGroup>(), value_delimiter = ',')]
        only: Vec<genmod::figures::FigureGroup>,
    },
    /// Score every model on the test digits: likelihoods, Fréchet distance, precision and
    /// recall, mode coverage, conditional accuracy. Writes eval.md and eval.json.
    Eval {
        /// Folder for eval.md and eval.json.
        #[arg(long, default_value = "runs/eval")]
        out: PathBuf,
        /// A folder of run folders: each model's row uses MODEL/ there, or else the newest
        /// MODEL-… run (models with neither are trained into MODEL/ there).
        #[arg(long)]
        runs: Option<PathBuf>,
        /// Samples drawn from each model.
        #[arg(long, default_value_t = 10_000)]
        samples: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// A tiny configuration, for tests.
        #[arg(long)]
        quick: bool,
        /// Only these rows, comma-separated (all if not given; the real digits always).
        #[arg(long, value_parser = choice::<genmod::eval::EvalGroup>(), value_delimiter = ',')]
        only: Vec<genmod::eval::EvalGroup>,
        /// Only train (or load) the cached digit classifier and print its test accuracy.
        #[arg(long)]
        classifier_only: bool,
        /// Score samples from a file (NPY or IDX; uint8 0-255 or float32 in --pixel-range,
        /// shaped (N, 28, 28), (N, 1, 28, 28) or (N, 784)), e.g. another generator's. Only
        /// the file and the real digits are scored unless --only names models too.
        #[arg(long)]
        sample_file: Option<PathBuf>,
        /// The digit each sample of --sample-file was asked for (integers, one per sample):
        /// gives the file's conditional accuracy.
        #[arg(long, requires = "sample_file")]
        sample_labels: Option<PathBuf>,
        /// Repeat for seeds SEED..SEED+N (training each model once per seed; with --runs,
        /// sampling the same checkpoints with each seed) and report the mean with the range
        /// of FD, precision and recall.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
        seeds: u64,
        /// How --sample-file's float32 pixels are encoded.
        #[arg(long, value_parser = choice::<genmod::eval::PixelRange>(), default_value = "zero-one", requires = "sample_file")]
        pixel_range: genmod::eval::PixelRange,
    },
    /// Write samples of a trained neural model to an NPY file (float32 in [0, 1], N x C x H
    /// x W), with the asked-for labels beside it for the conditional GAN: the draws
    /// `genmod eval` scores, for other tools or `eval --sample-file`.
    Generate {
        /// A run folder or checkpoint folder (the newest checkpoint of a run is used).
        #[arg(long)]
        checkpoint: PathBuf,
        /// How many samples.
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
        count: u64,
        /// Seed of the codes (the scoreboard uses its own --seed).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Output NPY file; labels go to NAME.labels.npy.
        #[arg(long)]
        out: PathBuf,
        /// Also write the first 64 samples as a PNG grid here.
        #[arg(long)]
        png: Option<PathBuf>,
    },
    /// Time genmod's workloads beside scikit-learn's or PyTorch's (bench/reference/), in one
    /// run.
    Bench {
        /// Which workloads.
        #[arg(value_enum, value_parser = choice::<Suite>(), default_value_t = Suite::Classical)]
        suite: Suite,
        /// Measurements per workload: for `neural`, interleaved pairs (genmod, then the
        /// reference); for `default-runs`, runs per model; medians are reported.
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// Skip the reference script.
        #[arg(long)]
        no_reference: bool,
        /// measure: the one measurement to make, as JSON (what `bench neural` asks a fresh
        /// process for, to read its peak memory).
        #[arg(long, hide = true)]
        request: Option<String>,
        /// Also write the Markdown table here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// quality, ablation, lockstep and default-runs: only these models, comma-separated
        /// (all if not given; the lockstep has the four GANs, the ablation every model).
        #[arg(long, value_parser = choice::<ModelKind>(), value_delimiter = ',')]
        models: Vec<ModelKind>,
        /// quality: seeds 0..N per model (default 3); ablation and lockstep: seeds 0..N per
        /// variant or model (default 1).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        seeds: Option<u64>,
        /// quality: the first seed (the seeds run are FIRST..FIRST+N), so that a later run
        /// can add seeds to an earlier one's.
        #[arg(long, default_value_t = 0)]
        first_seed: u64,
        /// quality: steps per run (default: each model's default budget); lockstep: steps
        /// replayed (default 100).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        steps: Option<u64>,
        /// quality and ablation: samples per run, scored.
        #[arg(long, default_value_t = 5000)]
        samples: usize,
        /// quality and lockstep: folder for initial weights, samples, recorded inputs and
        /// trained weights (default runs/bench-quality, runs/bench-lockstep).
        #[arg(long)]
        work_dir: Option<PathBuf>,
        /// The Python interpreter that runs the reference scripts: torch for `neural`, also
        /// numpy and safetensors for `quality`, scikit-learn for `classical`.
        #[arg(long, default_value = "python3")]
        python: PathBuf,
        /// neural: also train the VAE, the MLP GAN and the DCGAN on this folder's
        /// MNIST-format training images (full MNIST, or `genmod data export --train-count
        /// 60000`), to show throughput and memory at full size.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// The 2-D pictures: `boundary` (figure 3.2) or `clusters` (figure 3.5), as PNG.
    Demo {
        /// Which picture.
        #[arg(value_parser = choice::<Demo>())]
        which: Demo,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Side of each panel in pixels.
        #[arg(long, default_value_t = 360)]
        size: usize,
    },
    /// The Play Tennis table of report 3.1-3.2: joint multinomial, naive Bayes, samples.
    Tennis {
        /// Pseudo-count: 0 for the MLE, 1 for Laplace smoothing.
        #[arg(long, default_value_t = 1.0)]
        alpha: f64,
        /// Days to sample from each model.
        #[arg(long, default_value_t = 5)]
        samples: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

/// Training progress on a terminal: a bar of the run's steps with its rate and ETA, the
/// epoch lines printed above it. Where stderr is not a terminal (a log file, CI) the bar
/// is hidden and the epoch lines are the progress.
struct StepBar(indicatif::ProgressBar);

impl StepBar {
    fn new(start: u64, total: u64) -> Self {
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(total),
            indicatif::ProgressDrawTarget::stderr_with_hz(10),
        );
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps · {elapsed} · ETA {eta} · {msg}",
        ) {
            bar.set_style(style.progress_chars("█▌ "));
        }
        bar.set_position(start);
        // The rate and ETA count from here, not from step 0 of a resumed run.
        bar.reset_eta();
        Self(bar)
    }

    /// A line on stdout, with the bar moved out of its way.
    fn line(&self, text: &str) {
        self.0.suspend(|| println!("{text}"));
    }
}

/// Progress of long work counted in units (scoreboard rows, groups of figures): a bar with
/// the rate and ETA on a terminal, log lines above it. Where stderr is not a terminal the
/// bar is hidden and each finished unit prints a plain line instead.
struct WorkBar {
    bar: indicatif::ProgressBar,
    unit: &'static str,
}

impl WorkBar {
    fn new(unit: &'static str) -> Self {
        let bar = indicatif::ProgressBar::with_draw_target(
            None,
            indicatif::ProgressDrawTarget::stderr_with_hz(4),
        );
        if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
            "{{bar:30}} {{pos}}/{{len}} {unit} · {{elapsed}} · ETA {{eta}} · {{msg}}"
        )) {
            bar.set_style(style.progress_chars("█▌ "));
        }
        bar.enable_steady_tick(std::time::Duration::from_millis(500));
        Self { bar, unit }
    }
}

impl genmod::util::Progress for WorkBar {
    fn line(&mut self, text: &str) {
        self.bar.set_message(text.to_string());
        self.bar.suspend(|| eprintln!("{text}"));
    }

    fn advance(&mut self, done: u64, total: u64) {
        self.bar.set_length(total);
        self.bar.set_position(done);
        if self.bar.is_hidden() && done > 0 {
            eprintln!("{done}/{total} {} done", self.unit);
        }
    }
}

impl Drop for WorkBar {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// A neural model, its hyperparameters and the run's settings.
#[derive(Args, Clone)]
struct TrainArgs {
    /// The model to train.
    #[arg(value_parser = choice::<ModelKind>())]
    model: ModelKind,
    #[command(flatten)]
    data: DataArgs,
    /// Passes over the training images (default: the model's budget: autoencoder 150, VAE
    /// 120, GAN 90, DCGAN 25, conditional GAN 50, conditional DCGAN 15).
    #[arg(long)]
    epochs: Option<usize>,
    /// Images per step (default: 64 for the GANs, 128 for the autoencoder and the VAE).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Learning rate (default 1e-3, the GANs 4e-4); with --resume it
    /// replaces the checkpoint's.
    #[arg(long)]
    lr: Option<f64>,
    /// Adam's first-moment decay (default: 0.5 for the GANs, 0.9 for the others).
    #[arg(long)]
    beta1: Option<f64>,
    /// Adam's second-moment decay (default 0.999; 0.99 adapts the step sizes faster).
    #[arg(long)]
    beta2: Option<f64>,
    /// Size of the code z (default: autoencoder 32, VAE 20, GANs 100).
    #[arg(long)]
    latent: Option<usize>,
    /// Hidden width (default: autoencoder 512, VAE 400, GAN 256, the DCGANs 64).
    #[arg(long)]
    hidden: Option<usize>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: genmod::train::DeviceChoice,
    /// Parent folder of run folders: a new run gets its own, MODEL-YYYYMMDD-HHMMSS (UTC).
    #[arg(long, default_value = "runs")]
    runs_dir: PathBuf,
    /// This exact run folder instead (checkpoints, samples.png, metrics.csv); refused if it
    /// already holds a run, unless it is the run being resumed or --overwrite is given.
    #[arg(long)]
    out: Option<PathBuf>,
    /// With --out: replace the run already in that folder (its checkpoints, samples.png
    /// and metrics.csv; other files stay).
    #[arg(long, requires = "out")]
    overwrite: bool,
    /// Continue from a checkpoint, or a run folder's newest good checkpoint, in that run's
    /// folder (unless --out names another).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// VAE: how the KL and reconstruction terms are weighted during the warm-up.
    #[arg(long, value_enum, value_parser = choice::<KlSchedule>(), default_value_t = KlSchedule::Standard)]
    kl_schedule: KlSchedule,
    /// VAE: warm-up steps of the KL schedule.
    #[arg(long, default_value_t = 500)]
    warmup_steps: u64,
    /// GANs: discriminator steps per generator step.
    #[arg(long, default_value_t = 1)]
    k: usize,
    /// GANs: the generator's loss.
    #[arg(long, value_enum, value_parser = choice::<GeneratorLoss>(), default_value_t = GeneratorLoss::NonSaturating)]
    g_loss: GeneratorLoss,
    /// GANs: sample from a moving average of the generator's weights with this decay per
    /// step (e.g. 0.999); 0 samples the live weights.
    #[arg(long)]
    ema: Option<f64>,
    /// Conditional GAN and clustered MLP GAN: how the discriminator sees the label or the
    /// cluster (the conditional DCGAN and the clustered DCGAN: by projection only).
    #[arg(long, value_parser = choice::<Conditioning>())]
    conditioning: Option<Conditioning>,
    /// GANs: one-sided label smoothing; D's target for real images is 1 minus this (0: off).
    #[arg(long)]
    label_smoothing: Option<f64>,
    /// MLP GAN and conditional GAN: dropout probability after each hidden layer of the
    /// discriminator while it trains (0: off).
    #[arg(long)]
    d_dropout: Option<f64>,
    /// How weights start: pytorch (uniform in ±1/sqrt(fan_in)) or dcgan (N(0, 0.02²)).
    #[arg(long, value_parser = choice::<WeightInit>())]
    init: Option<WeightInit>,
    /// Autoencoder and VAE: where the codes of samples come from: a mixture fitted by EM to
    /// the training images' codes (the default), N(0, I) (the VAE's prior, the report's
    /// sampling), or, for the autoencoder, one Gaussian fitted to the codes.
    #[arg(long, value_parser = choice::<CodeSampling>())]
    code_sampling: Option<CodeSampling>,
    /// Autoencoder and VAE with --code-sampling mixture: the mixture's components (default
    /// 200).
    #[arg(long)]
    code_components: Option<usize>,
    /// MLP GAN and DCGAN: condition G and D on this many k-means clusters of the training
    /// images, in place of labels (default 40; 0: the report's unconditional GAN or DCGAN).
    #[arg(long)]
    clusters: Option<usize>,
    /// Autoencoder: the reconstruction loss.
    #[arg(long, value_enum, value_parser = choice::<ReconLoss>(), default_value_t = ReconLoss::Bce)]
    recon: ReconLoss,
    /// Autoencoder: tie decoder weights to the encoder's (W* = W^T).
    #[arg(long)]
    tied: bool,
    /// Autoencoder: std of the Gaussian noise added to the encoder's inputs while it trains
    /// (denoising; default 0.3, 0: off).
    #[arg(long)]
    denoise: Option<f64>,
    /// Autoencoder: L2 penalty on the weights.
    #[arg(long, default_value_t = 0.0)]
    l2: f64,
    /// Steps between checkpoints (0: at each epoch's end).
    #[arg(long, default_value_t = 0)]
    checkpoint_every: u64,
    /// Steps between sample grids (0: at each epoch's end).
    #[arg(long, default_value_t = 100)]
    sample_every: u64,
    /// Stop after this many steps in total.
    #[arg(long)]
    max_steps: Option<u64>,
    /// Also append every step's metrics to this CSV file (step,epoch,name,value rows; the
    /// run folder's metrics.csv has them anyway).
    #[arg(long)]
    metrics_log: Option<PathBuf>,
}

impl TrainArgs {
    fn config(&self) -> Result<genmod::train::TrainConfig> {
        let kind = self.model;
        let mut m = NeuralConfig::new(kind);
        if let Some(v) = self.lr {
            m.lr = v;
        }
        if let Some(v) = self.beta1 {
            m.beta1 = v;
        }
        if let Some(v) = self.beta2 {
            m.beta2 = v;
        }
        if let Some(v) = self.latent {
            m.latent_dim = v;
        }
        if let Some(v) = self.hidden {
            m.hidden = v;
        }
        m.kl_schedule = self.kl_schedule;
        m.warmup_steps = self.warmup_steps;
        m.k = self.k;
        m.g_loss = self.g_loss;
        if let Some(v) = self.ema {
            m.ema_decay = v;
        }
        if let Some(v) = self.label_smoothing {
            m.label_smoothing = v;
        }
        if let Some(v) = self.d_dropout {
            m.d_dropout = v;
        }
        if let Some(v) = self.init {
            m.weight_init = v;
        }
        if let Some(c) = self.code_components {
            m.code_components = c;
        }
        if let Some(c) = self.clusters {
            m.clusters = c;
        }
        if let Some(c) = self.code_sampling {
            m.code_sampling = c;
        }
        if let Some(c) = self.conditioning {
            m.conditioning = c;
        }
        m.recon = self.recon;
        m.tied = self.tied;
        if let Some(v) = self.denoise {
            m.denoise_std = v;
        }
        m.l2 = self.l2;
        m.validate()?;
        let mut c = genmod::train::TrainConfig::new(m);
        if let Some(e) = self.epochs {
            c.epochs = e;
        }
        if let Some(b) = self.batch_size {
            c.batch_size = b;
        }
        c.seed = self.data.seed;
        c.device = self.device;
        c.checkpoint_every = self.checkpoint_every;
        c.sample_every = self.sample_every;
        c.max_steps = self.max_steps;
        // With --resume the checkpoint fixes the model; an explicit --lr still applies,
        // which is how a diverged run continues more gently.
        c.resume_lr = self.resume.as_ref().and(self.lr);
        Ok(c)
    }

    fn run(&self) -> Result<()> {
        use genmod::train::TrainEvent;
        use std::sync::atomic::{AtomicBool, Ordering};
        let mut cfg = self.config()?;
        let source = self.data.source()?;
        let (split, _) = source.load(self.data.seed)?;
        let folder = match &self.out {
            Some(dir) => RunFolder::Exact {
                dir: dir.clone(),
                overwrite: self.overwrite,
            },
            None => RunFolder::New(self.runs_dir.clone()),
        };
        let parent_existed = self.runs_dir.exists();
        let out = genmod::train::runs::settle(&folder, cfg.model.kind, self.resume.as_deref())?;
        cfg.out_dir = Some(out.clone());
        let kind = cfg.model.kind;
        let mut metrics_log = match &self.metrics_log {
            Some(p) => Some(
                genmod::train::runs::MetricsLog::append_to(p)
                    .with_context(|| format!("opening --metrics-log {}", p.display()))?,
            ),
            None => None,
        };
        // SIGTERM and SIGHUP (an SSH drop) stop training with a final checkpoint.
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        for sig in [
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGHUP,
            signal_hook::consts::SIGINT,
        ] {
            signal_hook::flag::register(sig, std::sync::Arc::clone(&stop))?;
        }
        eprintln!(
            "training {} on {} ({}); run folder {}",
            kind.name(),
            source.describe(),
            cfg.device,
            out.display()
        );
        let fmt = |m: &genmod::neural::Metrics| {
            m.iter()
                .filter(|(_, v)| v.is_finite())
                .map(|(k, v)| format!("{k} {v:.4}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (mut ips, mut total) = (0.0, 0);
        let mut bar: Option<StepBar> = None;
        let mut log_error: Option<std::io::Error> = None;
        let result = genmod::train::train(cfg, split, self.resume.clone(), &stop, |ev| match ev {
            TrainEvent::Started {
                parameters,
                total_steps,
                start_step,
                steps_per_epoch,
                ..
            } => {
                total = *total_steps;
                eprintln!(
                    "{parameters} parameters, {steps_per_epoch} steps per epoch, steps {start_step}..{total_steps}"
                );
                bar = Some(StepBar::new(*start_step, *total_steps));
            }
            TrainEvent::Step {
                step,
                epoch,
                metrics,
                images_per_sec,
            } => {
                ips = *images_per_sec;
                if let Some(b) = &bar {
                    b.0.set_position(*step);
                    if step % 10 == 0 {
                        let first = metrics.iter().find(|(_, v)| v.is_finite());
                        b.0.set_message(match first {
                            Some((k, v)) => format!("{ips:.0} img/s · {k} {v:.4}"),
                            None => format!("{ips:.0} img/s"),
                        });
                    }
                }
                if let Some(log) = &mut metrics_log
                    && log_error.is_none()
                    && let Err(e) = log.append(*step, *epoch, metrics)
                {
                    // The run stops with a checkpoint rather than go on unlogged.
                    log_error = Some(e);
                    stop.store(true, Ordering::Relaxed);
                }
            }
            TrainEvent::Epoch {
                epoch,
                step,
                train,
                test,
            } => {
                let line = format!(
                    "epoch {} (step {step}/{total}, {ips:.0} img/s) train: {} | test: {}",
                    epoch + 1,
                    fmt(train),
                    fmt(test)
                );
                match &bar {
                    Some(b) => b.line(&line),
                    None => println!("{line}"),
                }
            }
            TrainEvent::Checkpoint { path, .. } => match &bar {
                Some(b) => b.0.suspend(|| eprintln!("checkpoint {}", path.display())),
                None => eprintln!("checkpoint {}", path.display()),
            },
            TrainEvent::Finished {
                step,
                stopped_early,
            } => {
                if let Some(b) = bar.take() {
                    b.0.finish_and_clear();
                }
                if *stopped_early && log_error.is_none() {
                    eprintln!("stop requested (signal): stopped with a checkpoint");
                }
                println!(
                    "{} at step {step}; samples in {}",
                    if *stopped_early {
                        "stopped"
                    } else {
                        "finished"
                    },
                    out.join(genmod::train::runs::SAMPLES_FILE).display()
                );
            }
            _ => {}
        });
        if let Some(b) = bar.take() {
            b.0.abandon();
        }
        if result.is_err() && matches!(folder, RunFolder::New(_)) {
            // A run that failed before writing anything leaves no empty folder behind
            // (remove_dir refuses a folder that holds anything).
            if std::fs::remove_dir(&out).is_ok() && !parent_existed {
                let _ = std::fs::remove_dir(&self.runs_dir);
            }
        }
        if let (Some(e), Some(p)) = (log_error, &self.metrics_log) {
            bail!("writing --metrics-log {}: {e}", p.display());
        }
        result.context("training failed")
    }
}

/// A classical model and its hyperparameters.
#[derive(Args, Clone)]
struct FitArgs {
    /// The model to fit.
    #[arg(long, value_parser = choice::<ImageModel>())]
    model: ImageModel,
    #[command(flatten)]
    data: DataArgs,
    /// Naive Bayes pseudo-count.
    #[arg(long, default_value_t = 1.0)]
    alpha: f64,
    /// Gaussian naive Bayes variance floor, as a fraction of the largest variance.
    #[arg(long, default_value_t = 1e-2)]
    var_smoothing: f64,
    /// GDA shrinkage towards a scaled identity, in [0, 1].
    #[arg(long, default_value_t = 0.1)]
    shrinkage: f64,
    /// Mixture components (per class for gmm-per-class; default 10, or 3 per class).
    #[arg(long)]
    components: Option<usize>,
    /// Mixture covariances.
    #[arg(long, value_enum, value_parser = choice::<GmmCovariance>(), default_value_t = GmmCovariance::Diagonal)]
    covariance: GmmCovariance,
    /// EM iteration cap.
    #[arg(long, default_value_t = 100)]
    max_iter: usize,
    /// EM stops when the mean log-likelihood changes by less than this.
    #[arg(long, default_value_t = 1e-3)]
    tol: f64,
    /// Use only the first N training images.
    #[arg(long)]
    train_limit: Option<usize>,
}

impl FitArgs {
    fn config(&self) -> Result<ClassicalConfig> {
        let mut cfg = ClassicalConfig::new(self.model);
        cfg.alpha = self.alpha;
        cfg.var_smoothing = self.var_smoothing;
        cfg.shrinkage = self.shrinkage;
        if let Some(c) = self.components {
            cfg.components = c;
        }
        cfg.gmm_covariance = self.covariance;
        cfg.max_iter = self.max_iter;
        cfg.tol = self.tol;
        cfg.seed = self.data.seed;
        cfg.train_limit = self.train_limit;
        Ok(cfg)
    }

    fn run(&self) -> Result<(catalog::Fitted, catalog::FitReport)> {
        let cfg = self.config()?;
        let source = self.data.source()?;
        let (split, _) = source.load(self.data.seed)?;
        if split.train.labels().is_none() && cfg.model != ImageModel::Gmm {
            bail!(
                "{} needs labels; {} has none (use --model gmm)",
                cfg.model.name(),
                source.describe()
            );
        }
        eprintln!("fitting {} on {} ...", cfg.model.name(), source.describe());
        let verbose = cfg.model == ImageModel::Gmm;
        let out = catalog::fit(&cfg, &split, |it, ll| {
            if verbose {
                eprintln!("  EM iteration {it}: mean log-likelihood {ll:.3}");
            }
        })?;
        print!("{}", out.1.describe());
        Ok(out)
    }
}

#[derive(Subcommand)]
enum DataCommand {
    /// Print a dataset's shape and class counts.
    Info(DataArgs),
    /// Write the first images of a dataset as a PNG grid.
    Grid {
        #[command(flatten)]
        data: DataArgs,
        /// Number of images.
        #[arg(long, default_value_t = 64)]
        count: usize,
        /// Output PNG.
        #[arg(long)]
        out: PathBuf,
    },
    /// Write the embedded digits as the four MNIST files into a folder, for `--data-dir`;
    /// with `--train-count` above 8,004 the extra training images are shifted copies (a
    /// full-size folder for timing and memory runs, not new handwriting).
    Export {
        /// Folder to write (created if missing; the four files are replaced).
        #[arg(long)]
        out: PathBuf,
        /// Training images: 60000 for MNIST's size.
        #[arg(long, default_value_t = 8004)]
        train_count: usize,
        /// Seed of the copies' shifts.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Download a dataset into the cache and verify its checksums.
    Fetch {
        /// mnist, fashion-mnist or cifar10.
        name: String,
        /// Cache folder (default: $GENMOD_CACHE, else ~/.cache/genmod).
        #[arg(long)]
        cache: Option<PathBuf>,
        /// Base URL to fetch from instead of the published mirrors (repeatable).
        #[arg(long)]
        mirror: Vec<String>,
    },
}

fn main() {
    // SAFETY: the first statement of main: no other thread exists yet.
    unsafe { genmod::util::settle_thread_count() };
    genmod::util::keep_freed_memory();
    if let Err(e) = run(Cli::parse()) {
        eprintln!(
            "error: {}",
            genmod::util::printable_lines(&format!("{e:#}"))
        );
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Data(cmd) => data(cmd),
        Command::Fit(args) => args.run().map(|_| ()),
        Command::Train(args) => args.run(),
        Command::Eval {
            out,
            runs,
            samples,
            seed,
            quick,
            only,
            classifier_only,
            sample_file,
            sample_labels,
            pixel_range,
            seeds,
        } => {
            if classifier_only {
                let split = genmod::data::mnist::embedded();
                let (_, acc) = genmod::eval::classifier::DigitClassifier::load_or_train(
                    &download::default_cache_dir(),
                    &split,
                    seed,
                    &mut |m| eprintln!("{m}"),
                )?;
                println!("digit classifier test accuracy: {:.2}%", 100.0 * acc);
                return Ok(());
            }
            if samples < 10 {
                bail!("--samples must be at least 10, got {samples}");
            }
            let cfg = genmod::eval::EvalConfig {
                seed,
                samples,
                pr_samples: 2000,
                runs,
                cache: download::default_cache_dir(),
                quick,
                only,
                files: sample_file
                    .map(|images| genmod::eval::SampleFile {
                        images,
                        labels: sample_labels,
                        range: pixel_range,
                    })
                    .into_iter()
                    .collect(),
                seeds,
            };
            let report = genmod::eval::evaluate(&cfg, &mut WorkBar::new("rows"))?;
            print!("{}", report.markdown());
            let (md, js) = genmod::eval::write(&report, &out)?;
            eprintln!("wrote {} and {}", md.display(), js.display());
            Ok(())
        }
        Command::Generate {
            checkpoint,
            count,
            seed,
            out,
            png,
        } => {
            let g =
                genmod::eval::generate(&checkpoint, count as usize, seed, &out, png.as_deref())?;
            println!(
                "wrote {count} samples of {} (step {}) to {}",
                g.model.name(),
                g.step,
                g.samples.display()
            );
            if let Some(l) = g.labels {
                println!("wrote their labels to {}", l.display());
            }
            if let Some(p) = g.grid {
                println!(
                    "wrote a grid of the first {} to {}",
                    count.min(64),
                    p.display()
                );
            }
            Ok(())
        }
        Command::Figures {
            out,
            quick,
            seed,
            only,
        } => {
            let cfg = genmod::figures::FigureConfig {
                out,
                quick,
                seed,
                only,
            };
            let start = std::time::Instant::now();
            let files = genmod::figures::generate(&cfg, &mut WorkBar::new("groups of figures"))?;
            for f in &files {
                println!("wrote {}", f.display());
            }
            eprintln!(
                "{} files in {:.0} s",
                files.len(),
                start.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Sample {
            fit,
            per_class,
            out,
        } => {
            if per_class == 0 {
                bail!("--per-class must be at least 1");
            }
            let (split, _) = fit.data.source()?.load(fit.data.seed)?;
            let (fitted, _) = fit.run()?;
            let [_, c, h, w] = split.train.shape();
            fitted
                .sample_grid(per_class, [c, h, w], fit.data.seed)
                .upscale(2)
                .save_png(&out)?;
            let n = per_class * fitted.grid_columns();
            println!("wrote {n} samples to {}", out.display());
            Ok(())
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "genmod", &mut std::io::stdout());
            Ok(())
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?;
            Ok(())
        }
        Command::Tennis {
            alpha,
            samples,
            seed,
        } => tennis(alpha, samples, seed),
        Command::Demo {
            which,
            out,
            seed,
            size,
        } => {
            if !(200..=4000).contains(&size) {
                bail!(
                    "--size must be between 200 pixels (room for the axes and labels) and 4000, got {size}"
                );
            }
            let grid = match which {
                Demo::Boundary => genmod::figures::boundary_figure(seed, size)?,
                Demo::Clusters => {
                    let (grid, g) = genmod::figures::cluster_figure(seed, size)?;
                    println!(
                        "EM: {} iterations, mean log-likelihood {:.4} -> {:.4}, weights {:.3?}",
                        g.history.len(),
                        g.history[0],
                        g.history[g.history.len() - 1],
                        g.weights
                    );
                    grid
                }
            };
            grid.save_png(&out)?;
            println!("wrote {}", out.display());
            Ok(())
        }
        Command::Bench {
            suite,
            reps,
            no_reference,
            request,
            out,
            models,
            seeds,
            first_seed,
            steps,
            samples,
            work_dir,
            python,
            data_dir,
        } => {
            if data_dir.is_some() && suite != Suite::Neural {
                anyhow::bail!("--data-dir applies to `bench neural` only");
            }
            if steps.is_some() && !matches!(suite, Suite::Quality | Suite::Lockstep) {
                anyhow::bail!(
                    "--steps applies to `bench quality` and `bench lockstep` only (the ablation's variants set their own budgets)"
                );
            }
            if first_seed != 0 && suite != Suite::Quality {
                anyhow::bail!("--first-seed applies to `bench quality` only");
            }
            // The models asked for, or those of ModelKind::ALL that `keep` admits.
            let chosen = |keep: fn(&ModelKind) -> bool| -> Vec<ModelKind> {
                if models.is_empty() {
                    ModelKind::ALL.into_iter().filter(keep).collect()
                } else {
                    models.clone()
                }
            };
            let opts = BenchOptions {
                data_dir,
                reps,
                no_reference,
                python: python.clone(),
                request,
                genmod_exe: std::env::current_exe().context("finding the genmod executable")?,
                quality: genmod::bench::quality::QualityOptions {
                    models: chosen(|_| true),
                    seeds: seeds.unwrap_or(3),
                    first_seed,
                    steps,
                    samples,
                    cache: download::default_cache_dir(),
                    work_dir: work_dir
                        .clone()
                        .unwrap_or_else(|| "runs/bench-quality".into()),
                    python: python.clone(),
                },
                lockstep: genmod::bench::lockstep::LockstepOptions {
                    models: chosen(|k| k.is_gan()),
                    steps: steps.unwrap_or(100),
                    seeds: seeds.unwrap_or(1),
                    work_dir: work_dir.unwrap_or_else(|| "runs/bench-lockstep".into()),
                    python,
                },
                default_runs: genmod::bench::default_runs::DefaultRunsOptions {
                    models: chosen(|_| true),
                },
                ablation: genmod::bench::ablation::AblationOptions {
                    models: chosen(|k| !genmod::bench::ablation::variants(*k).is_empty()),
                    seeds: seeds.unwrap_or(1),
                    samples,
                    cache: download::default_cache_dir(),
                },
            };
            let table = genmod::bench::suite::run(suite, &opts, &mut |m| eprintln!("{m}"))?;
            print!("{table}");
            if let Some(p) = out {
                genmod::util::atomic_write(&p, table.as_bytes())
                    .with_context(|| format!("writing {}", p.display()))?;
            }
            Ok(())
        }
    }
}

fn data(cmd: DataCommand) -> Result<()> {
    match cmd {
        DataCommand::Info(args) => {
            let source = args.source()?;
            let (split, report) = source.load(args.seed)?;
            println!("dataset: {}", source.describe());
            print!("{}", split.describe());
            if let Some(r) = report {
                println!("folder: {}", r.summary());
            }
        }
        DataCommand::Grid { data, count, out } => {
            if count == 0 {
                bail!("--count must be at least 1");
            }
            let (split, _) = data.source()?.load(data.seed)?;
            let ds = split.train.take(count);
            let [n, c, h, w] = ds.shape();
            let cols = (n as f64).sqrt().ceil() as usize;
            Grid::from_u8(ds.pixels(), n, c, h, w, cols)
                .upscale(2)
                .save_png(&out)?;
            println!("wrote {n} images to {}", out.display());
        }
        DataCommand::Export {
            out,
            train_count,
            seed,
        } => {
            if train_count == 0 {
                bail!("--train-count must be at least 1");
            }
            genmod::data::mnist::write_embedded(&out, train_count, seed)?;
            println!(
                "wrote {train_count} training and 1996 test digits to {}",
                out.display()
            );
        }
        DataCommand::Fetch {
            name,
            cache,
            mirror,
        } => {
            let manifest = download::manifest(&name).with_context(|| {
                let hint = genmod::util::closest(&name, &download::DATASETS)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                format!(
                    "unknown dataset `{name}`{hint}; expected one of: {}",
                    download::DATASETS.join(", ")
                )
            })?;
            let cache = cache.unwrap_or_else(download::default_cache_dir);
            let mirrors = (!mirror.is_empty()).then_some(mirror);
            // A bar per file with its rate and ETA on a terminal; elsewhere a line every half
            // second.
            let bar = indicatif::ProgressBar::with_draw_target(
                None,
                indicatif::ProgressDrawTarget::stderr_with_hz(4),
            );
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{msg} {bar:30} {bytes}/{total_bytes} · {binary_bytes_per_sec} · ETA {eta}",
            ) {
                bar.set_style(style.progress_chars("█▌ "));
            }
            let mut last_report = std::time::Instant::now();
            let mut file = String::new();
            let dir = download::fetch(
                &manifest,
                &cache,
                mirrors.as_deref(),
                &mut |f, got, total| {
                    if file != f {
                        file = f.to_string();
                        bar.set_message(file.clone());
                        bar.reset();
                    }
                    bar.set_length(total.unwrap_or(0));
                    bar.set_position(got);
                    if bar.is_hidden() && last_report.elapsed().as_millis() > 500 {
                        last_report = std::time::Instant::now();
                        match total {
                            Some(t) => eprintln!("{f}: {got}/{t} bytes"),
                            None => eprintln!("{f}: {got} bytes"),
                        }
                    }
                },
            );
            bar.finish_and_clear();
            let dir = dir?;
            println!("{name}: verified in {}", dir.display());
            println!("use it with: --dataset {name} --data-dir {}", dir.display());
        }
    }
    Ok(())
}

fn tennis(alpha: f64, samples: usize, seed: u64) -> Result<()> {
    let r = genmod::classical::tennis::report(alpha, samples, seed)?;
    println!(
        "Joint multinomial over {} cells from {} days ({} cells seen), alpha = {alpha}:",
        r.cells, r.days, r.seen_cells
    );
    println!(
        "  p(seen-once day) = {:.4}, p(unseen day) = {:.4}, sum = {:.4}",
        r.p_seen_day, r.p_unseen_day, r.total
    );
    println!(
        "  the report's (n+1)/(N+1) would sum to {:.4}, not 1",
        r.report_total
    );
    println!("Days sampled from the multinomial:");
    for d in &r.sampled_days {
        println!("  {}", d.to_string().trim_end_matches("No").trim_end());
    }
    println!(
        "Naive Bayes: p(Play=No) = {:.4}, p(Play=Yes) = {:.4}",
        r.prior[0], r.prior[1]
    );
    println!("  training accuracy: {}/{}", r.training_correct, r.days);
    for (days, name) in [(&r.sampled_yes, "Yes"), (&r.sampled_no, "No")] {
        println!("Days sampled from naive Bayes given Play = {name}:");
        for d in days {
            println!("  {d}");
        }
    }
    Ok(())
}
