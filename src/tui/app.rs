//! The TUI's state and its update function: messages in, effects out. Nothing here touches
//! the terminal or spawns threads, so every screen can be driven by scripted messages in
//! tests and drawn on ratatui's TestBackend.

use super::graphics::ImageMode;
use crate::classical::catalog::{ClassicalConfig, FitReport, ImageModel};
use crate::data::DataSource;
use crate::neural::{
    CodeSampling, Conditioning, KlSchedule, Metric, Metrics, ModelKind, NeuralConfig, WeightInit,
};
use crate::render::Grid;
use crate::train::runs::{MetricRow, RunSummary};
use crate::train::{DeviceChoice, TrainCommand, TrainConfig, TrainEvent};
use clap::ValueEnum;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::collections::VecDeque;
use std::path::PathBuf;

/// What a list entry trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// Report 3.1 on Play Tennis: shown as a table, no training.
    Multinomial,
    Classical(ImageModel),
    Neural(ModelKind),
}

/// A model in the picker.
#[derive(Debug, Clone, Copy)]
pub struct ModelInfo {
    pub entry: Entry,
    pub section: &'static str,
    pub name: &'static str,
    pub blurb: &'static str,
}

/// The report's models, in chapter order.
pub const MODELS: [ModelInfo; 13] = [
    ModelInfo {
        entry: Entry::Multinomial,
        section: "3.1",
        name: "Multinomial",
        blurb: "one probability per joint outcome of Play Tennis (36 cells)",
    },
    ModelInfo {
        entry: Entry::Classical(ImageModel::NaiveBayes),
        section: "3.2",
        name: "Naive Bayes",
        blurb: "independent Bernoulli pixels given the class",
    },
    ModelInfo {
        entry: Entry::Classical(ImageModel::GaussianNb),
        section: "3.3",
        name: "Gaussian naive Bayes",
        blurb: "independent Gaussian pixels given the class",
    },
    ModelInfo {
        entry: Entry::Classical(ImageModel::Lda),
        section: "3.4",
        name: "GDA, shared covariance",
        blurb: "one full covariance for all digits: a linear boundary",
    },
    ModelInfo {
        entry: Entry::Classical(ImageModel::Qda),
        section: "3.4",
        name: "GDA, per-class covariance",
        blurb: "a full covariance per digit: a quadratic boundary",
    },
    ModelInfo {
        entry: Entry::Classical(ImageModel::Gmm),
        section: "3.5",
        name: "Gaussian mixture (EM)",
        blurb: "10 components found by EM, no labels",
    },
    ModelInfo {
        entry: Entry::Classical(ImageModel::GmmPerClass),
        section: "3.5",
        name: "Mixture per class (EM)",
        blurb: "3 components per digit: several ways to write it",
    },
    ModelInfo {
        entry: Entry::Neural(ModelKind::Autoencoder),
        section: "3.6",
        name: "Autoencoder",
        blurb: "compress to a code and reconstruct",
    },
    ModelInfo {
        entry: Entry::Neural(ModelKind::Vae),
        section: "3.7",
        name: "Variational autoencoder",
        blurb: "a Gaussian code, reparameterised, with KL annealing",
    },
    ModelInfo {
        entry: Entry::Neural(ModelKind::Gan),
        section: "4.1",
        name: "GAN",
        blurb: "generator against discriminator, MLPs",
    },
    ModelInfo {
        entry: Entry::Neural(ModelKind::Dcgan),
        section: "4.2",
        name: "DCGAN",
        blurb: "convolutional GAN with batch norm",
    },
    ModelInfo {
        entry: Entry::Neural(ModelKind::Cgan),
        section: "4.3",
        name: "Conditional GAN",
        blurb: "ask the generator for a chosen digit",
    },
    ModelInfo {
        entry: Entry::Neural(ModelKind::Cdcgan),
        section: "4.3",
        name: "Conditional DCGAN",
        blurb: "the DCGAN's convolutions, asked for a chosen digit",
    },
];

/// A hyperparameter of the form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Epochs,
    BatchSize,
    LearningRate,
    Latent,
    KlSchedule,
    K,
    Ema,
    DDropout,
    Conditioning,
    CodeSampling,
    /// Components of the code mixture (autoencoder and VAE).
    CodeComponents,
    /// Autoencoder: the noise added to the encoder's inputs while it trains.
    Denoise,
    Clusters,
    Init,
    Seed,
    Device,
    /// Which dataset a neural run trains on (a name of `DataSource::from_name`).
    Dataset,
    /// The dataset's folder (empty for the embedded digits).
    DataDir,
}

pub const FIELDS: [FieldKind; 18] = [
    FieldKind::Epochs,
    FieldKind::BatchSize,
    FieldKind::LearningRate,
    FieldKind::Latent,
    FieldKind::KlSchedule,
    FieldKind::K,
    FieldKind::Ema,
    FieldKind::DDropout,
    FieldKind::Conditioning,
    FieldKind::CodeSampling,
    FieldKind::CodeComponents,
    FieldKind::Denoise,
    FieldKind::Clusters,
    FieldKind::Init,
    FieldKind::Seed,
    FieldKind::Device,
    FieldKind::Dataset,
    FieldKind::DataDir,
];

impl FieldKind {
    pub fn label(self) -> &'static str {
        match self {
            FieldKind::Epochs => "epochs",
            FieldKind::BatchSize => "batch size",
            FieldKind::LearningRate => "learning rate",
            FieldKind::Latent => "latent size",
            FieldKind::KlSchedule => "KL schedule",
            FieldKind::K => "k (D steps)",
            FieldKind::Ema => "EMA of G",
            FieldKind::DDropout => "D dropout",
            FieldKind::Conditioning => "D conditioning",
            FieldKind::CodeSampling => "samples from",
            FieldKind::CodeComponents => "mixture size",
            FieldKind::Denoise => "input noise σ",
            FieldKind::Clusters => "clusters",
            FieldKind::Init => "weights init",
            FieldKind::Seed => "seed",
            FieldKind::Device => "device",
            FieldKind::Dataset => "dataset",
            FieldKind::DataDir => "data folder",
        }
    }

    /// Whether the field means anything for `entry`.
    pub fn applies(self, entry: Entry) -> bool {
        match (self, entry) {
            (_, Entry::Multinomial) => self == FieldKind::Seed,
            (FieldKind::Seed, _) => true,
            (_, Entry::Classical(_)) => false,
            (FieldKind::KlSchedule, Entry::Neural(k)) => k == ModelKind::Vae,
            (FieldKind::K | FieldKind::Ema, Entry::Neural(k)) => k.is_gan(),
            (FieldKind::DDropout, Entry::Neural(k)) => k.is_gan(),
            // The MLP GAN's D reads its clusters as the cGAN's reads labels.
            (FieldKind::Conditioning, Entry::Neural(k)) => {
                matches!(k, ModelKind::Cgan | ModelKind::Gan)
            }
            (FieldKind::CodeSampling | FieldKind::CodeComponents, Entry::Neural(k)) => {
                matches!(k, ModelKind::Autoencoder | ModelKind::Vae)
            }
            (FieldKind::Denoise, Entry::Neural(k)) => k == ModelKind::Autoencoder,
            (FieldKind::Clusters, Entry::Neural(k)) => {
                matches!(k, ModelKind::Gan | ModelKind::Dcgan)
            }
            (FieldKind::Init, Entry::Neural(k)) => k.is_gan(),
            // Classical fits use the dataset genmod-tui was started with.
            _ => true,
        }
    }

    /// The value's meaning, or why it is not acceptable.
    pub fn validate(self, v: &str, cuda: &Result<(), String>) -> Result<(), String> {
        let v = v.trim();
        let positive_int = |max: u64| match v.parse::<u64>() {
            Ok(0) => Err("must be at least 1".to_string()),
            Ok(n) if n > max => Err(format!("at most {max}")),
            Ok(_) => Ok(()),
            Err(_) => Err("a whole number".to_string()),
        };
        match self {
            FieldKind::Epochs => positive_int(100_000),
            FieldKind::BatchSize => positive_int(8192),
            FieldKind::Latent => positive_int(4096),
            FieldKind::CodeComponents => positive_int(crate::neural::MAX_CODE_COMPONENTS as u64),
            FieldKind::Denoise => match v.parse::<f64>() {
                Ok(x) if x.is_finite() && (0.0..=10.0).contains(&x) => Ok(()),
                Ok(_) => Err("in [0, 10]; 0 = off".to_string()),
                Err(_) => Err("a standard deviation such as 0.3, or 0".to_string()),
            },
            FieldKind::K => positive_int(100),
            FieldKind::Clusters => match v.parse::<usize>() {
                Ok(0) => Ok(()),
                Ok(1) => Err("0 (off) or at least 2".to_string()),
                Ok(n) if n > crate::neural::MAX_CLUSTERS => {
                    Err(format!("at most {}", crate::neural::MAX_CLUSTERS))
                }
                Ok(_) => Ok(()),
                Err(_) => Err("a whole number; 0 = off".to_string()),
            },
            FieldKind::Seed => v
                .parse::<u64>()
                .map(|_| ())
                .map_err(|_| "a whole number >= 0".to_string()),
            FieldKind::LearningRate => match v.parse::<f64>() {
                Ok(x) if x.is_finite() && x > 0.0 && x < 10.0 => Ok(()),
                Ok(_) => Err("finite, > 0 and < 10".to_string()),
                Err(_) => Err("a number such as 2e-4".to_string()),
            },
            FieldKind::DDropout => match v.parse::<f64>() {
                Ok(x) if (0.0..1.0).contains(&x) => Ok(()),
                Ok(_) => Err("in [0, 1); 0 = off".to_string()),
                Err(_) => Err("a probability such as 0.5, or 0".to_string()),
            },
            FieldKind::Ema => match v.parse::<f64>() {
                Ok(x) if (0.0..1.0).contains(&x) => Ok(()),
                Ok(_) => Err("in [0, 1); 0 = off".to_string()),
                Err(_) => Err("a decay such as 0.999, or 0".to_string()),
            },
            FieldKind::Conditioning => Conditioning::from_str(v, false)
                .map(|_| ())
                .map_err(|_| "projection or concat".to_string()),
            FieldKind::CodeSampling => CodeSampling::from_str(v, false)
                .map(|_| ())
                .map_err(|_| "mixture, fitted-gaussian or standard-normal".to_string()),
            FieldKind::Init => WeightInit::from_str(v, false)
                .map(|_| ())
                .map_err(|_| "dcgan (N(0, 0.02²)) or pytorch (uniform)".to_string()),
            FieldKind::KlSchedule => KlSchedule::from_str(v, false)
                .map(|_| ())
                .map_err(|_| "standard, report or none".to_string()),
            FieldKind::Device => match v.parse::<DeviceChoice>() {
                Ok(DeviceChoice::Cpu) => Ok(()),
                Ok(DeviceChoice::Cuda(_)) => cuda.clone(),
                Err(_) => Err("cpu, cuda or cuda:N".to_string()),
            },
            FieldKind::Dataset => {
                if v == "embedded" || crate::data::source::NAMES.contains(&v) {
                    Ok(())
                } else {
                    Err(crate::data::source::NAMES.join(", "))
                }
            }
            FieldKind::DataDir => {
                if v.is_empty() || std::path::Path::new(v).is_dir() {
                    Ok(())
                } else {
                    Err("no such folder".to_string())
                }
            }
        }
    }
}

/// One editable value of the form.
#[derive(Debug, Clone)]
pub struct Field {
    pub kind: FieldKind,
    pub value: String,
    pub error: Option<String>,
}

/// Where a run is.
#[derive(Debug, Clone, PartialEq)]
pub enum RunState {
    Running,
    Paused,
    Finished,
    Failed(String),
}

/// One curve of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: Metric,
    pub points: Vec<(f64, f64)>,
}

const MAX_POINTS: usize = 2000;

impl Series {
    fn push(&mut self, x: f64, y: f64) {
        if !y.is_finite() {
            return;
        }
        self.points.push((x, y));
        if self.points.len() > MAX_POINTS {
            // Halve the resolution of the history, keeping its whole span.
            self.points = self.points.iter().step_by(2).copied().collect();
        }
    }
}

/// One chart of the dashboard.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartGroup {
    pub title: &'static str,
    pub metrics: Vec<Metric>,
    /// Positive losses, which the log-scale toggle applies to.
    pub losses: bool,
}

/// The metrics each chart plots, by model.
pub fn chart_groups(entry: Entry) -> Vec<ChartGroup> {
    let group = |title, metrics, losses| ChartGroup {
        title,
        metrics,
        losses,
    };
    match entry {
        Entry::Neural(ModelKind::Autoencoder) => {
            vec![group("reconstruction loss", vec![Metric::Recon], true)]
        }
        Entry::Neural(ModelKind::Vae) => vec![
            group(
                "reconstruction and KL (nats)",
                vec![Metric::Recon, Metric::Kl],
                true,
            ),
            group("annealing weight", vec![Metric::Weight], false),
        ],
        Entry::Neural(_) => vec![
            group("losses", vec![Metric::DLoss, Metric::GLoss], true),
            group(
                "D(x) and D(G(z))",
                vec![Metric::DReal, Metric::DFake],
                false,
            ),
        ],
        Entry::Classical(_) => vec![group(
            "EM mean log-likelihood",
            vec![Metric::LogLikelihood],
            false,
        )],
        Entry::Multinomial => vec![],
    }
}

/// What the dashboard shows of a run.
#[derive(Debug, Clone)]
pub struct RunView {
    pub info: ModelInfo,
    pub state: RunState,
    pub series: Vec<Series>,
    pub grid: Option<Grid>,
    pub interpolation: Option<Grid>,
    pub step: u64,
    pub total: u64,
    pub epoch: usize,
    pub images_per_sec: f64,
    pub started_step: u64,
    pub elapsed_secs: f64,
    pub log: VecDeque<String>,
    /// Whether the current weights are in a checkpoint.
    pub saved: bool,
    /// Text shown instead of charts (Play Tennis, classical fit summaries).
    pub text: Vec<String>,
    /// The run folder of a neural run, once the runner has made it.
    pub folder: Option<PathBuf>,
    /// How the sample grid's fixed codes become images.
    pub grid_codes: GridCodes,
}

impl RunView {
    pub fn new(info: ModelInfo) -> Self {
        let series = chart_groups(info.entry)
            .into_iter()
            .flat_map(|g| g.metrics)
            .map(|name| Series {
                name,
                points: Vec::new(),
            })
            .collect();
        Self {
            info,
            state: RunState::Running,
            series,
            grid: None,
            interpolation: None,
            step: 0,
            total: 0,
            epoch: 0,
            images_per_sec: 0.0,
            started_step: 0,
            elapsed_secs: 0.0,
            log: VecDeque::new(),
            saved: true,
            text: Vec::new(),
            folder: None,
            grid_codes: GridCodes::Fixed,
        }
    }

    pub fn log(&mut self, line: impl Into<String>) {
        self.log.push_back(line.into());
        while self.log.len() > 200 {
            self.log.pop_front();
        }
    }

    pub fn series(&self, name: Metric) -> Option<&Series> {
        self.series.iter().find(|s| s.name == name)
    }

    fn record(&mut self, x: f64, metrics: &Metrics) {
        for (k, v) in metrics {
            if let Some(s) = self.series.iter_mut().find(|s| s.name == *k) {
                s.push(x, *v);
            }
        }
    }

    /// Seconds left at the current speed, when it is known.
    pub fn eta_secs(&self, batch_size: usize) -> Option<f64> {
        (self.images_per_sec > 0.0 && self.total > self.step)
            .then(|| (self.total - self.step) as f64 * batch_size as f64 / self.images_per_sec)
    }
}

/// Screens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Picker,
    Dashboard,
    /// The runs browser: the run folders under the runs folder.
    Runs,
    /// Two or more runs' curves on the same axes.
    Compare,
}

/// The runs browser's state.
#[derive(Debug, Clone, Default)]
pub struct RunsView {
    pub runs: Vec<RunSummary>,
    pub selected: usize,
    /// The folders picked for comparison, in the order they were picked.
    pub marked: Vec<PathBuf>,
    /// Asking whether to delete the selected run.
    pub confirm_delete: bool,
    /// Why the list could not be read, if it could not.
    pub error: Option<String>,
}

impl RunsView {
    pub fn current(&self) -> Option<&RunSummary> {
        self.runs.get(self.selected)
    }
}

/// Runs whose curves are drawn together: each run's name and series.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub runs: Vec<(String, Vec<Series>)>,
    /// The charts: the metrics every compared run logged, grouped as the dashboard groups
    /// them where the runs are of one model.
    pub groups: Vec<ChartGroup>,
}

impl Comparison {
    /// The comparison of runs given as (name, model, metric rows).
    pub fn new(runs: Vec<(String, Option<ModelKind>, Vec<MetricRow>)>) -> Self {
        let series: Vec<(String, Vec<Series>)> = runs
            .iter()
            .map(|(name, _, rows)| (name.clone(), series_from_rows(rows)))
            .collect();
        let logged_by_all = |m: Metric| {
            series
                .iter()
                .all(|(_, ss)| ss.iter().any(|s| s.name == m && !s.points.is_empty()))
        };
        let kinds: Vec<Option<ModelKind>> = runs.iter().map(|r| r.1).collect();
        let same_kind = kinds.windows(2).all(|w| w[0] == w[1]);
        let groups = match kinds.first() {
            Some(Some(k)) if same_kind => chart_groups(Entry::Neural(*k))
                .into_iter()
                .map(|mut g| {
                    g.metrics.retain(|m| logged_by_all(*m));
                    g
                })
                .filter(|g| !g.metrics.is_empty())
                .collect(),
            // Different models (or one unknown): a chart per metric they share.
            _ => Metric::ALL
                .into_iter()
                .filter(|m| logged_by_all(*m))
                .map(|m| ChartGroup {
                    title: m.name(),
                    metrics: vec![m],
                    losses: !matches!(m, Metric::DReal | Metric::DFake | Metric::Weight),
                })
                .collect(),
        };
        Self {
            runs: series,
            groups,
        }
    }
}

/// A run's curves from its metrics file, one series per metric, in the order first logged.
pub fn series_from_rows(rows: &[MetricRow]) -> Vec<Series> {
    let mut series: Vec<Series> = Vec::new();
    for r in rows {
        let Some(m) = Metric::from_name(&r.metric) else {
            continue;
        };
        match series.iter_mut().find(|s| s.name == m) {
            Some(s) => s.push(r.step as f64, r.value),
            None => {
                let mut s = Series {
                    name: m,
                    points: Vec::new(),
                };
                s.push(r.step as f64, r.value);
                series.push(s);
            }
        }
    }
    series
}

/// Where keyboard input goes on the picker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    List,
    Field(usize),
}

/// Where the dashboard's sample grid gets its images from the fixed codes, which its title
/// says: a reader comparing two grids should know whether a code went straight to G.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GridCodes {
    /// Each code decoded (or generated from) as it is.
    Fixed,
    /// Each code drawn through the mixture fitted to the training codes, refitted at each
    /// epoch's end: the VAE's default.
    /// The autoencoder's live grid shows reconstructions whatever its codes' source.
    ThroughMixture,
    /// Each code picks one of this many k-means clusters of the training images, which
    /// the unlabelled GANs are conditioned on.
    Clusters(usize),
}

impl GridCodes {
    /// How the grid of a run of `model` is drawn.
    pub fn of(model: &NeuralConfig) -> Self {
        if model.kind == ModelKind::Vae && model.code_sampling == CodeSampling::Mixture {
            GridCodes::ThroughMixture
        } else if model.clusters > 0 {
            GridCodes::Clusters(model.clusters)
        } else {
            GridCodes::Fixed
        }
    }

    /// The sample grid's title.
    pub fn title(self) -> String {
        match self {
            GridCodes::Fixed => " samples (fixed noise) ".into(),
            GridCodes::ThroughMixture => " samples (fixed noise, code mixture) ".into(),
            GridCodes::Clusters(k) => {
                format!(" samples (fixed noise; {k} clusters) ")
            }
        }
    }
}

/// Messages the app reacts to.
#[derive(Debug, Clone)]
pub enum Msg {
    Key(KeyEvent),
    Train(TrainEvent),
    /// One EM iteration of a classical fit: (iteration, mean log-likelihood).
    EmIteration(usize, f64),
    ClassicalDone(Box<FitReport>, Grid),
    ClassicalFailed(String),
    /// Play Tennis analysis, as lines.
    TennisText(Vec<String>),
    /// SIGTERM or SIGHUP, or the terminal went away: save and leave.
    Terminate,
    /// The terminal was resized: draw again.
    Redraw,
    /// The runs folder's runs, or why it could not be read.
    Runs(Result<Vec<RunSummary>, String>),
    /// A run opened from its newest checkpoint: its model, the step of the checkpoint and
    /// the curves of its metrics file. The runner starts a finished trainer on it next.
    RunOpened {
        summary: Box<RunSummary>,
        kind: ModelKind,
        /// How the checkpoint's sample codes become images, which the grid's title says.
        grid_codes: GridCodes,
        step: u64,
        rows: Vec<MetricRow>,
    },
    /// Runs to compare: (name, model, metric rows).
    Compared(Vec<(String, Option<ModelKind>, Vec<MetricRow>)>),
    /// The runner holds `checkpoint` (step `step`) to resume when the picker starts a run.
    ResumeReady {
        checkpoint: PathBuf,
        kind: ModelKind,
        step: u64,
    },
    /// A runs-browser action failed (reading, opening, deleting); the message says why.
    RunsFailed(String),
    /// A dataset download's progress: the file, its bytes so far and in all (when the
    /// server says).
    FetchProgress {
        file: String,
        bytes: u64,
        total: Option<u64>,
    },
    /// A dataset download ended: its verified folder, or why not.
    Fetched {
        name: String,
        result: Result<PathBuf, String>,
    },
}

/// What the runner must do.
#[derive(Debug, Clone)]
pub enum Effect {
    /// Train on this dataset (loaded first if it is not the one in memory).
    StartNeural(Box<TrainConfig>, DataSource),
    StartClassical(Box<ClassicalConfig>),
    StartTennis {
        seed: u64,
    },
    Command(TrainCommand),
    SaveGrid,
    /// Read the runs folder (answered by `Msg::Runs`).
    ListRuns,
    /// Load a run's newest checkpoint for exploring, with its curves.
    OpenRun(PathBuf),
    /// Read these runs' metrics for a comparison.
    CompareRuns(Vec<PathBuf>),
    /// Hold a run's newest checkpoint as the one the next start resumes.
    ResumeRun(PathBuf),
    /// Delete a run folder, then list the runs again.
    DeleteRun(PathBuf),
    /// Download a dataset (`genmod data fetch NAME`) into the cache folder, reporting with
    /// `Msg::FetchProgress` and `Msg::Fetched`.
    FetchData(String),
    Quit,
}

/// A dataset download the picker started.
#[derive(Debug, Clone)]
struct Fetching {
    name: String,
    /// The file being downloaded, and when its first bytes came.
    file: String,
    file_started: std::time::Instant,
}

impl Fetching {
    /// The status line: the file, a bar, bytes, percentage and rate.
    fn describe(&self, bytes: u64, total: Option<u64>) -> String {
        let mb = |b: u64| b as f64 / 1e6;
        let secs = self.file_started.elapsed().as_secs_f64().max(1e-3);
        let rate = format!("{:.1} MB/s", mb(bytes) / secs);
        match total.filter(|&t| t > 0) {
            Some(t) => {
                let frac = (bytes as f64 / t as f64).clamp(0.0, 1.0);
                let filled = (frac * 20.0).round() as usize;
                format!(
                    "downloading {} · {} [{}{}] {:.1}/{:.1} MB {:.0}% · {rate}",
                    self.name,
                    self.file,
                    "█".repeat(filled),
                    "░".repeat(20 - filled),
                    mb(bytes),
                    mb(t),
                    frac * 100.0
                )
            }
            None => format!(
                "downloading {} · {} {:.1} MB · {rate}",
                self.name,
                self.file,
                mb(bytes)
            ),
        }
    }
}

/// The whole state of the TUI.
pub struct App {
    pub screen: Screen,
    /// Index into MODELS; the fields below are that model's.
    selected: usize,
    pub focus: Focus,
    fields: Vec<Field>,
    pub help: bool,
    pub confirm_quit: bool,
    pub image_mode: ImageMode,
    /// The pixel modes the terminal can draw (sixel, kitty), best first; empty where it
    /// answered for none. The runner learns them; `m` cycles through them.
    pixel_modes: Vec<ImageMode>,
    pub run: Option<RunView>,
    pub dataset: String,
    /// Ok if CUDA can be used, else why not.
    pub cuda: Result<(), String>,
    /// Where new run folders go.
    pub runs_dir: PathBuf,
    pub batch_size: usize,
    pub status: String,
    pub quit: bool,
    pub show_interpolation: bool,
    interp_seed: u64,
    /// The dataset download under way, if any.
    fetching: Option<Fetching>,
    /// How the charts draw their curves.
    pub chart_view: ChartView,
    pub runs: RunsView,
    pub comparison: Option<Comparison>,
}

/// How the dashboard draws its curves: an exponential moving average over the raw values,
/// which stay visible, faint, behind it; and a log scale for the losses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChartView {
    /// The average's weight on its previous value, from [`SMOOTHING_STEPS`]; 0 is raw.
    pub smoothing: f64,
    /// Loss charts on a log₁₀ axis.
    pub log_losses: bool,
}

/// The smoothing strengths `[` and `]` step through. GAN losses, which jump from batch to
/// batch, read best at 0.9 to 0.99 (TensorBoard's slider offers the same range).
pub const SMOOTHING_STEPS: [f64; 7] = [0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99];

impl Default for ChartView {
    fn default() -> Self {
        Self {
            smoothing: 0.9,
            log_losses: false,
        }
    }
}

impl ChartView {
    /// One step stronger (`up`) or weaker smoothing.
    pub fn step_smoothing(&mut self, up: bool) {
        let at = SMOOTHING_STEPS
            .iter()
            .position(|&s| s >= self.smoothing - 1e-9)
            .unwrap_or(0);
        let next = if up {
            (at + 1).min(SMOOTHING_STEPS.len() - 1)
        } else {
            at.saturating_sub(1)
        };
        self.smoothing = SMOOTHING_STEPS[next];
    }
}

/// The exponential moving average of `points` with weight `alpha` on the past, with
/// TensorBoard's debiasing (dividing by 1 − alphaᵗ), so the curve starts at the first
/// values instead of rising from 0.
pub fn smoothed(points: &[(f64, f64)], alpha: f64) -> Vec<(f64, f64)> {
    let (mut avg, mut weight) = (0.0, 0.0);
    points
        .iter()
        .map(|&(x, y)| {
            avg = alpha * avg + (1.0 - alpha) * y;
            weight = alpha * weight + (1.0 - alpha);
            (x, avg / weight)
        })
        .collect()
}

impl App {
    pub fn new(dataset: String, cuda: Result<(), String>, runs_dir: PathBuf) -> Self {
        let mut app = Self {
            screen: Screen::Picker,
            selected: 8,
            focus: Focus::List,
            fields: Vec::new(),
            help: false,
            confirm_quit: false,
            image_mode: ImageMode::HalfBlocks,
            pixel_modes: Vec::new(),
            run: None,
            dataset,
            cuda,
            runs_dir,
            batch_size: 128,
            status: String::new(),
            quit: false,
            show_interpolation: false,
            interp_seed: 1,
            fetching: None,
            chart_view: ChartView::default(),
            runs: RunsView::default(),
            comparison: None,
        };
        app.reset_fields();
        app
    }

    /// Fills the dataset fields with `source` (what genmod-tui was started with).
    pub fn set_dataset_fields(&mut self, source: &DataSource) {
        self.set_field(FieldKind::Dataset, source.name().to_string());
        let dir = source.dir().map(|d| d.display().to_string());
        self.set_field(FieldKind::DataDir, dir.unwrap_or_default());
    }

    /// The dataset the form names, or why it cannot be used.
    fn chosen_dataset(&self) -> Result<DataSource, String> {
        let name = self.field(FieldKind::Dataset).trim();
        let dir = self.field(FieldKind::DataDir).trim();
        let dir = (!dir.is_empty()).then(|| std::path::Path::new(dir));
        match (name, dir) {
            ("mnist-10k" | "embedded", Some(_)) => {
                return Err(
                    "the embedded digits need no data folder: empty it, or choose mnist, fashion-mnist, cifar10 or folder"
                        .into(),
                );
            }
            ("mnist-10k" | "embedded", None) => {}
            (name, None) if crate::data::download::DATASETS.contains(&name) => {
                return Err(format!(
                    "dataset {name} needs its files' folder in the data folder field: f on the model list downloads it (as `genmod data fetch {name}` does)"
                ));
            }
            (name, None) => {
                return Err(format!(
                    "dataset {name} needs its files' folder in the data folder field"
                ));
            }
            _ => {}
        }
        // Image folders are resized to 64 pixels, the CLI's default.
        DataSource::from_name(name, dir, 64, None).map_err(|e| e.to_string())
    }

    /// Tells the app which pixel modes the terminal offers (best first), so that `m` can
    /// cycle through them; the text modes are always offered.
    pub fn set_pixel_modes(&mut self, modes: Vec<ImageMode>) {
        self.pixel_modes = modes.into_iter().filter(|m| m.is_pixels()).collect();
    }

    pub fn info(&self) -> ModelInfo {
        MODELS[self.selected]
    }

    /// The form's defaults for the selected model.
    /// The picked entry of [`MODELS`].
    pub fn selected(&self) -> usize {
        self.selected
    }

    /// Picks entry `i` of [`MODELS`] (clamped to the list) and fills the form with its
    /// defaults.
    pub fn select(&mut self, i: usize) {
        self.selected = i.min(MODELS.len() - 1);
        self.reset_fields();
    }

    /// The form's fields, all of them (see `visible_fields` for those shown).
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    fn reset_fields(&mut self) {
        // The dataset stays as chosen when another model is picked.
        let kept = |kind| {
            self.fields
                .iter()
                .find(|f: &&Field| f.kind == kind)
                .map(|f| f.value.clone())
        };
        let dataset = kept(FieldKind::Dataset).unwrap_or_else(|| "mnist-10k".into());
        let data_dir = kept(FieldKind::DataDir).unwrap_or_default();
        let entry = self.info().entry;
        let n = match entry {
            Entry::Neural(k) => NeuralConfig::new(k),
            _ => NeuralConfig::new(ModelKind::Vae),
        };
        let (epochs, batch_size) = match entry {
            Entry::Neural(k) => crate::train::default_budget(k),
            _ => (10, 128),
        };
        self.fields = FIELDS
            .iter()
            .map(|&kind| Field {
                kind,
                value: match kind {
                    FieldKind::Epochs => epochs.to_string(),
                    FieldKind::BatchSize => batch_size.to_string(),
                    FieldKind::LearningRate => format!("{:e}", n.lr),
                    FieldKind::Latent => n.latent_dim.to_string(),
                    FieldKind::KlSchedule => "standard".into(),
                    FieldKind::K => "1".into(),
                    FieldKind::Ema => n.ema_decay.to_string(),
                    FieldKind::DDropout => n.d_dropout.to_string(),
                    // The same name the field parses back (clap's ValueEnum).
                    FieldKind::Conditioning => crate::util::cli_name(&n.conditioning),
                    FieldKind::CodeSampling => crate::util::cli_name(&n.code_sampling),
                    FieldKind::CodeComponents => n.code_components.to_string(),
                    FieldKind::Denoise => n.denoise_std.to_string(),
                    FieldKind::Clusters => n.clusters.to_string(),
                    FieldKind::Init => crate::util::cli_name(&n.weight_init),
                    FieldKind::Seed => "0".into(),
                    FieldKind::Device => "cpu".into(),
                    FieldKind::Dataset => dataset.clone(),
                    FieldKind::DataDir => data_dir.clone(),
                },
                error: None,
            })
            .collect();
    }

    /// Fields that apply to the selected model, with their indices.
    pub fn visible_fields(&self) -> Vec<usize> {
        let e = self.info().entry;
        (0..self.fields.len())
            .filter(|&i| self.fields[i].kind.applies(e))
            .collect()
    }

    fn field(&self, kind: FieldKind) -> &str {
        &self
            .fields
            .iter()
            .find(|f| f.kind == kind)
            .expect("every field exists")
            .value
    }

    /// Whether every applicable field is valid.
    pub fn form_valid(&self) -> bool {
        self.visible_fields()
            .iter()
            .all(|&i| self.fields[i].error.is_none())
    }

    fn revalidate(&mut self) {
        let cuda = self.cuda.clone();
        for f in &mut self.fields {
            f.error = f.kind.validate(&f.value, &cuda).err();
        }
    }

    /// The run's configuration from the form (fields already validated).
    fn start_effect(&mut self) -> Option<Effect> {
        self.revalidate();
        if !self.form_valid() {
            self.status = "fix the fields marked in red first".into();
            return None;
        }
        let seed: u64 = self.field(FieldKind::Seed).trim().parse().ok()?;
        let info = self.info();
        let mut view = RunView::new(info);
        let effect = match info.entry {
            Entry::Multinomial => Effect::StartTennis { seed },
            Entry::Classical(m) => {
                let mut c = ClassicalConfig::new(m);
                c.seed = seed;
                view.log(format!("fitting {} on {}", info.name, self.dataset));
                Effect::StartClassical(Box::new(c))
            }
            Entry::Neural(kind) => {
                let source = match self.chosen_dataset() {
                    Ok(s) => s,
                    Err(e) => {
                        self.status = e;
                        return None;
                    }
                };
                let mut m = NeuralConfig::new(kind);
                m.lr = self.field(FieldKind::LearningRate).trim().parse().ok()?;
                m.latent_dim = self.field(FieldKind::Latent).trim().parse().ok()?;
                m.k = self.field(FieldKind::K).trim().parse().ok()?;
                m.ema_decay = self.field(FieldKind::Ema).trim().parse().ok()?;
                m.d_dropout = self.field(FieldKind::DDropout).trim().parse().ok()?;
                m.conditioning =
                    Conditioning::from_str(self.field(FieldKind::Conditioning).trim(), false)
                        .ok()?;
                m.kl_schedule =
                    KlSchedule::from_str(self.field(FieldKind::KlSchedule).trim(), false).ok()?;
                m.code_sampling =
                    CodeSampling::from_str(self.field(FieldKind::CodeSampling).trim(), false)
                        .ok()?;
                m.weight_init =
                    WeightInit::from_str(self.field(FieldKind::Init).trim(), false).ok()?;
                m.clusters = self.field(FieldKind::Clusters).trim().parse().ok()?;
                m.code_components = self.field(FieldKind::CodeComponents).trim().parse().ok()?;
                m.denoise_std = self.field(FieldKind::Denoise).trim().parse().ok()?;
                // Fields valid one by one can still clash (the VAE has no fitted Gaussian).
                if let Err(e) = m.validate() {
                    self.status = e.to_string();
                    return None;
                }
                let mut c = TrainConfig::new(m);
                c.epochs = self.field(FieldKind::Epochs).trim().parse().ok()?;
                c.batch_size = self.field(FieldKind::BatchSize).trim().parse().ok()?;
                c.seed = seed;
                c.device = self.field(FieldKind::Device).trim().parse().ok()?;
                // The runner makes the run's own folder under `runs_dir` as it starts it.
                c.sample_every = 25;
                // A short evaluation keeps pause and stop responsive at epoch ends.
                c.eval_batches = Some(4);
                self.batch_size = c.batch_size;
                c.linger = true;
                view.grid_codes = GridCodes::of(&c.model);
                view.log(format!(
                    "training {} on {} ({})",
                    info.name,
                    source.describe(),
                    c.device
                ));
                Effect::StartNeural(Box::new(c), source)
            }
        };
        self.run = Some(view);
        self.screen = Screen::Dashboard;
        self.show_interpolation = false;
        self.status.clear();
        Some(effect)
    }

    fn running(&self) -> bool {
        self.run
            .as_ref()
            .is_some_and(|r| matches!(r.state, RunState::Running | RunState::Paused))
    }

    fn unsaved(&self) -> bool {
        self.run
            .as_ref()
            .is_some_and(|r| !r.saved && matches!(r.info.entry, Entry::Neural(_)))
    }

    /// Reacts to one message.
    pub fn update(&mut self, msg: Msg) -> Vec<Effect> {
        match msg {
            Msg::Key(k) => self.on_key(k),
            Msg::Train(ev) => {
                self.on_train(ev);
                Vec::new()
            }
            Msg::EmIteration(it, ll) => {
                if let Some(r) = &mut self.run {
                    if let Some(s) = r
                        .series
                        .iter_mut()
                        .find(|s| s.name == Metric::LogLikelihood)
                    {
                        s.push(it as f64, ll);
                    }
                    r.step = it as u64;
                }
                Vec::new()
            }
            Msg::ClassicalDone(report, grid) => {
                if let Some(r) = &mut self.run {
                    r.state = RunState::Finished;
                    r.grid = Some(grid);
                    r.text = report.describe().lines().map(str::to_string).collect();
                    r.log(format!("fitted in {:.2} s", report.fit_seconds));
                }
                Vec::new()
            }
            Msg::ClassicalFailed(m) => {
                if let Some(r) = &mut self.run {
                    r.log(format!("failed: {m}"));
                    r.state = RunState::Failed(m);
                }
                Vec::new()
            }
            Msg::TennisText(lines) => {
                if let Some(r) = &mut self.run {
                    r.text = lines;
                    r.state = RunState::Finished;
                }
                Vec::new()
            }
            Msg::Redraw => Vec::new(),
            Msg::Runs(listed) => {
                let runs = &mut self.runs;
                match listed {
                    Ok(list) => {
                        // Keep the selection on the same run where it is still listed.
                        let was = runs.current().map(|r| r.dir.clone());
                        runs.selected = was
                            .and_then(|d| list.iter().position(|r| r.dir == d))
                            .unwrap_or(0);
                        runs.marked.retain(|d| list.iter().any(|r| &r.dir == d));
                        runs.runs = list;
                        runs.error = None;
                    }
                    Err(e) => runs.error = Some(e),
                }
                Vec::new()
            }
            Msg::RunOpened {
                summary,
                kind,
                grid_codes,
                step,
                rows,
            } => {
                let Some(i) = MODELS.iter().position(|m| m.entry == Entry::Neural(kind)) else {
                    return Vec::new();
                };
                let mut view = RunView::new(MODELS[i]);
                view.series = series_from_rows(&rows);
                // Every chart of the model keeps its series, logged or not.
                for g in chart_groups(view.info.entry) {
                    for m in g.metrics {
                        if view.series(m).is_none() {
                            view.series.push(Series {
                                name: m,
                                points: Vec::new(),
                            });
                        }
                    }
                }
                view.state = RunState::Finished;
                view.step = step;
                view.total = step;
                view.started_step = step;
                view.epoch = summary.epochs.saturating_sub(1);
                view.folder = Some(summary.dir.clone());
                view.grid_codes = grid_codes;
                view.log(format!(
                    "opened {} at step {step} ({} metric rows)",
                    summary.dir.display(),
                    rows.len()
                ));
                view.log("n samples, i interpolates, g saves the grid; r in the runs view resumes training");
                self.selected = i;
                self.reset_fields();
                self.run = Some(view);
                self.show_interpolation = false;
                self.screen = Screen::Dashboard;
                self.status.clear();
                vec![Effect::Command(TrainCommand::SampleNow)]
            }
            Msg::Compared(runs) => {
                let c = Comparison::new(runs);
                if c.groups.is_empty() {
                    self.status = "these runs logged no metric in common".into();
                } else {
                    self.comparison = Some(c);
                    self.screen = Screen::Compare;
                    self.status.clear();
                }
                Vec::new()
            }
            Msg::ResumeReady {
                checkpoint,
                kind,
                step,
            } => {
                if let Some(i) = MODELS.iter().position(|m| m.entry == Entry::Neural(kind)) {
                    self.select(i);
                }
                self.focus = Focus::List;
                self.screen = Screen::Picker;
                self.status = format!(
                    "Enter resumes {} at step {step} (the run's own settings; Epochs sets where it ends)",
                    checkpoint.display()
                );
                Vec::new()
            }
            Msg::RunsFailed(e) => {
                self.status = e;
                Vec::new()
            }
            Msg::FetchProgress { file, bytes, total } => {
                if let Some(f) = &mut self.fetching {
                    if f.file != file {
                        f.file = file;
                        f.file_started = std::time::Instant::now();
                    }
                    self.status = f.describe(bytes, total);
                }
                Vec::new()
            }
            Msg::Fetched { name, result } => {
                self.fetching = None;
                self.status = match result {
                    Ok(dir) => {
                        // Filled in only if the form still names this dataset.
                        if self.field(FieldKind::Dataset).trim() == name {
                            self.set_field(FieldKind::DataDir, dir.display().to_string());
                        }
                        format!("{name} is ready in {}: Enter trains on it", dir.display())
                    }
                    Err(e) => format!("downloading {name} failed: {e}"),
                };
                Vec::new()
            }
            Msg::Terminate => {
                let mut fx = Vec::new();
                if self.running()
                    && matches!(
                        self.run.as_ref().map(|r| r.info.entry),
                        Some(Entry::Neural(_))
                    )
                {
                    fx.push(Effect::Command(TrainCommand::Stop));
                }
                fx.push(Effect::Quit);
                self.quit = true;
                fx
            }
        }
    }

    fn on_train(&mut self, ev: TrainEvent) {
        let Some(r) = &mut self.run else { return };
        match ev {
            TrainEvent::Started {
                parameters,
                total_steps,
                start_step,
                steps_per_epoch,
                ..
            } => {
                r.total = total_steps;
                r.step = start_step;
                r.started_step = start_step;
                r.log(format!(
                    "{parameters} parameters, {steps_per_epoch} steps per epoch"
                ));
            }
            TrainEvent::Step {
                step,
                epoch,
                metrics,
                images_per_sec,
            } => {
                r.step = step;
                r.epoch = epoch;
                r.images_per_sec = images_per_sec;
                r.saved = false;
                r.record(step as f64, &metrics);
            }
            TrainEvent::Epoch { epoch, test, .. } => {
                let t: Vec<String> = test.iter().map(|(k, v)| format!("{k} {v:.3}")).collect();
                r.log(format!("epoch {} test: {}", epoch + 1, t.join(", ")));
            }
            TrainEvent::Samples { grid, .. } => r.grid = Some(grid),
            TrainEvent::Interpolation { grid, .. } => r.interpolation = Some(grid),
            TrainEvent::Checkpoint { step, path } => {
                r.saved = true;
                r.log(format!("checkpoint at step {step}: {}", path.display()));
            }
            TrainEvent::Paused { step } => {
                r.state = RunState::Paused;
                r.log(format!("paused at step {step}"));
            }
            TrainEvent::Resumed { step } => {
                r.state = RunState::Running;
                r.log(format!("resumed at step {step}"));
            }
            TrainEvent::Finished {
                step,
                stopped_early,
            } => {
                r.state = RunState::Finished;
                r.log(format!(
                    "{} at step {step}",
                    if stopped_early { "stopped" } else { "finished" }
                ));
            }
            TrainEvent::Failed { message, .. } => {
                r.log(format!("failed: {message}"));
                r.state = RunState::Failed(message);
            }
        }
    }

    fn on_key(&mut self, k: KeyEvent) -> Vec<Effect> {
        let ctrl_c = k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl_c {
            return self.update(Msg::Terminate);
        }
        if self.confirm_quit {
            self.confirm_quit = false;
            return match k.code {
                KeyCode::Char('y') => {
                    self.quit = true;
                    let mut fx = Vec::new();
                    if self.running() {
                        fx.push(Effect::Command(TrainCommand::Stop));
                    }
                    fx.push(Effect::Quit);
                    fx
                }
                _ => Vec::new(),
            };
        }
        if self.help {
            self.help = false;
            return Vec::new();
        }
        if k.code == KeyCode::Char('?') {
            self.help = true;
            return Vec::new();
        }
        match self.screen {
            Screen::Picker => self.picker_key(k),
            Screen::Dashboard => self.dashboard_key(k),
            Screen::Runs => self.runs_key(k),
            Screen::Compare => self.compare_key(k),
        }
    }

    /// Opens the runs browser on the runs folder.
    /// Starts downloading the dataset the form names, if it is one `genmod data fetch`
    /// knows and no download is under way.
    fn fetch_effect(&mut self) -> Option<Effect> {
        let name = self.field(FieldKind::Dataset).trim().to_string();
        if let Some(f) = &self.fetching {
            self.status = format!("already downloading {}", f.name);
            return None;
        }
        if !crate::data::download::DATASETS.contains(&name.as_str()) {
            self.status = format!(
                "f downloads {}: name one in the dataset field (it says {name:?})",
                crate::data::download::DATASETS.join(", ")
            );
            return None;
        }
        let now = std::time::Instant::now();
        self.fetching = Some(Fetching {
            name: name.clone(),
            file: String::new(),
            file_started: now,
        });
        self.status = format!("downloading {name}: connecting ...");
        Some(Effect::FetchData(name))
    }

    /// Whether `f` would download something: the form names a published dataset.
    pub fn offers_fetch(&self) -> bool {
        crate::data::download::DATASETS.contains(&self.field(FieldKind::Dataset).trim())
    }

    /// Whether a dataset download is under way.
    pub fn fetching(&self) -> bool {
        self.fetching.is_some()
    }

    fn set_field(&mut self, kind: FieldKind, value: String) {
        if let Some(f) = self.fields.iter_mut().find(|f| f.kind == kind) {
            f.value = value;
        }
    }

    pub fn open_runs(&mut self) -> Vec<Effect> {
        self.screen = Screen::Runs;
        self.runs.confirm_delete = false;
        self.status.clear();
        vec![Effect::ListRuns]
    }

    fn runs_key(&mut self, k: KeyEvent) -> Vec<Effect> {
        let training = if self.running() {
            self.run.as_ref().and_then(|r| r.folder.clone())
        } else {
            None
        };
        let runs = &mut self.runs;
        if runs.confirm_delete {
            runs.confirm_delete = false;
            return match (k.code, runs.current()) {
                (KeyCode::Char('y'), Some(r)) => {
                    let dir = r.dir.clone();
                    self.status = format!("deleting {}", dir.display());
                    vec![Effect::DeleteRun(dir)]
                }
                _ => {
                    self.status = "not deleted".into();
                    Vec::new()
                }
            };
        }
        let n = runs.runs.len();
        let current = runs.current().map(|r| r.dir.clone());
        match k.code {
            KeyCode::Up | KeyCode::Char('k') => runs.selected = runs.selected.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => {
                runs.selected = (runs.selected + 1).min(n.saturating_sub(1));
            }
            KeyCode::Char(' ') => {
                if let Some(dir) = current {
                    match runs.marked.iter().position(|d| *d == dir) {
                        Some(at) => {
                            runs.marked.remove(at);
                        }
                        None => runs.marked.push(dir),
                    }
                    self.status = format!("{} marked for comparison", runs.marked.len());
                }
            }
            KeyCode::Char('c') => {
                if runs.marked.len() >= 2 {
                    return vec![Effect::CompareRuns(runs.marked.clone())];
                }
                self.status = "mark two or more runs with Space to compare them".into();
            }
            KeyCode::Enter | KeyCode::Char('o') => {
                if let Some(dir) = current {
                    self.status = format!("opening {}", dir.display());
                    return vec![Effect::OpenRun(dir)];
                }
            }
            KeyCode::Char('r') => {
                if let Some(dir) = current {
                    return vec![Effect::ResumeRun(dir)];
                }
            }
            KeyCode::Char('d') => {
                if let Some(dir) = current {
                    if training.as_ref() == Some(&dir) {
                        self.status = "that run is training: stop it before deleting it".into();
                    } else {
                        runs.confirm_delete = true;
                    }
                }
            }
            KeyCode::Char('u') => return vec![Effect::ListRuns],
            KeyCode::Esc | KeyCode::Char('b') => {
                self.screen = Screen::Picker;
                self.status.clear();
            }
            KeyCode::Char('q') => return self.quit_asking(),
            _ => {}
        }
        Vec::new()
    }

    fn compare_key(&mut self, k: KeyEvent) -> Vec<Effect> {
        match k.code {
            KeyCode::Char('[') | KeyCode::Char(']') | KeyCode::Char('l') => {
                self.chart_keys(k.code);
            }
            KeyCode::Esc | KeyCode::Char('b') => {
                self.screen = Screen::Runs;
                self.status.clear();
            }
            KeyCode::Char('q') => return self.quit_asking(),
            _ => {}
        }
        Vec::new()
    }

    /// Smoothing and log-scale keys, on every screen with charts.
    fn chart_keys(&mut self, code: KeyCode) {
        if code == KeyCode::Char('l') {
            self.chart_view.log_losses = !self.chart_view.log_losses;
            self.status = format!(
                "losses on a {} scale",
                if self.chart_view.log_losses {
                    "log"
                } else {
                    "linear"
                }
            );
        } else {
            self.chart_view.step_smoothing(code == KeyCode::Char(']'));
            self.status = format!("smoothing {:.2}", self.chart_view.smoothing);
        }
    }

    /// Quits, asking first while a run is going or its latest weights are unsaved.
    fn quit_asking(&mut self) -> Vec<Effect> {
        if self.running() || self.unsaved() {
            self.confirm_quit = true;
            Vec::new()
        } else {
            self.quit = true;
            vec![Effect::Quit]
        }
    }

    fn picker_key(&mut self, k: KeyEvent) -> Vec<Effect> {
        match self.focus {
            Focus::List => match k.code {
                KeyCode::Up | KeyCode::Char('k') => {
                    self.selected = self.selected.saturating_sub(1);
                    self.reset_fields();
                }
                KeyCode::Down | KeyCode::Char('j') => {
                    self.selected = (self.selected + 1).min(MODELS.len() - 1);
                    self.reset_fields();
                }
                KeyCode::Tab | KeyCode::Right => {
                    if let Some(&first) = self.visible_fields().first() {
                        self.focus = Focus::Field(first);
                    }
                }
                KeyCode::Enter => return self.start_effect().into_iter().collect(),
                KeyCode::Char('r') => return self.open_runs(),
                KeyCode::Char('f') => return self.fetch_effect().into_iter().collect(),
                KeyCode::Char('q') | KeyCode::Esc => {
                    self.quit = true;
                    return vec![Effect::Quit];
                }
                _ => {}
            },
            Focus::Field(i) => {
                let vis = self.visible_fields();
                let pos = vis.iter().position(|&v| v == i).unwrap_or(0);
                match k.code {
                    KeyCode::Tab | KeyCode::Down => {
                        self.focus = if pos + 1 < vis.len() {
                            Focus::Field(vis[pos + 1])
                        } else {
                            Focus::List
                        };
                    }
                    KeyCode::BackTab | KeyCode::Up => {
                        self.focus = if pos > 0 {
                            Focus::Field(vis[pos - 1])
                        } else {
                            Focus::List
                        };
                    }
                    KeyCode::Esc => self.focus = Focus::List,
                    KeyCode::Enter => return self.start_effect().into_iter().collect(),
                    KeyCode::Backspace => {
                        self.fields[i].value.pop();
                    }
                    KeyCode::Char(c) if !c.is_control() => self.fields[i].value.push(c),
                    _ => {}
                }
                self.revalidate();
            }
        }
        Vec::new()
    }

    fn dashboard_key(&mut self, k: KeyEvent) -> Vec<Effect> {
        let neural = matches!(
            self.run.as_ref().map(|r| r.info.entry),
            Some(Entry::Neural(_))
        );
        let running = self.running();
        // A neural run that ended without failing keeps its model in the trainer thread
        // (TrainConfig::linger): it can still sample and interpolate.
        let explorable = neural
            && self
                .run
                .as_ref()
                .is_some_and(|r| !matches!(r.state, RunState::Failed(_)));
        match k.code {
            KeyCode::Char('p') | KeyCode::Char(' ') if neural && running => {
                let paused = self
                    .run
                    .as_ref()
                    .is_some_and(|r| r.state == RunState::Paused);
                vec![Effect::Command(if paused {
                    TrainCommand::Resume
                } else {
                    TrainCommand::Pause
                })]
            }
            KeyCode::Char('s') if neural && running => vec![Effect::Command(TrainCommand::Stop)],
            KeyCode::Char('c') if neural && running => vec![Effect::Command(TrainCommand::SaveNow)],
            KeyCode::Char('n') if explorable => {
                vec![Effect::Command(TrainCommand::SampleNow)]
            }
            KeyCode::Char('g') => vec![Effect::SaveGrid],
            KeyCode::Char('[') | KeyCode::Char(']') | KeyCode::Char('l') => {
                self.chart_keys(k.code);
                Vec::new()
            }
            KeyCode::Char('m') => {
                let mut modes = vec![ImageMode::HalfBlocks, ImageMode::Ascii];
                modes.extend(self.pixel_modes.iter().copied());
                let at = modes
                    .iter()
                    .position(|m| *m == self.image_mode)
                    .unwrap_or(0);
                self.image_mode = modes[(at + 1) % modes.len()];
                self.status = format!("image mode: {}", self.image_mode.name());
                Vec::new()
            }
            KeyCode::Char('i') if explorable => {
                let latent_model = matches!(self.run.as_ref().map(|r| r.info.entry), Some(Entry::Neural(k)) if k != ModelKind::Autoencoder);
                if !latent_model {
                    self.status = "interpolation needs a VAE or a GAN".into();
                    return Vec::new();
                }
                self.show_interpolation = true;
                self.interp_seed += 1;
                vec![Effect::Command(TrainCommand::Interpolate {
                    seed: self.interp_seed,
                    steps: 8,
                })]
            }
            KeyCode::Char('i') => {
                self.show_interpolation = !self.show_interpolation
                    && self.run.as_ref().is_some_and(|r| r.interpolation.is_some());
                Vec::new()
            }
            KeyCode::Esc | KeyCode::Char('b') => {
                if self.show_interpolation {
                    self.show_interpolation = false;
                } else if !running {
                    self.screen = Screen::Picker;
                } else {
                    self.status = "stop the run (s) before going back".into();
                }
                Vec::new()
            }
            KeyCode::Char('r') if !running => self.open_runs(),
            KeyCode::Char('q') => self.quit_asking(),
            _ => Vec::new(),
        }
    }
}

/// Keys that work on every screen.
const HELP_ANYWHERE: [(&str, &str); 3] = [
    ("?", "this help; any key closes it"),
    ("q", "quit (asks first while a run is going or unsaved)"),
    ("Ctrl-C", "save a checkpoint and quit"),
];

const HELP_PICKER: [(&str, &str); 12] = [
    ("↑ ↓ / j k", "choose a model"),
    (
        "Tab / Shift-Tab",
        "move between the model list and the fields",
    ),
    ("Enter", "start training or fitting the chosen model"),
    (
        "dataset field",
        "mnist-10k, mnist, fashion-mnist, cifar10 or folder",
    ),
    ("r", "the runs browser: open, resume, compare, delete runs"),
    (
        "f",
        "download the dataset field's mnist, fashion-mnist or cifar10",
    ),
    ("genmod-tui DIR", "start in the runs browser of DIR"),
    (
        "--resume DIR",
        "start genmod-tui on a run's newest checkpoint",
    ),
    (
        "--runs-dir DIR",
        "where each run gets its own folder (runs/)",
    ),
    ("--image-mode", "start in halfblocks or ascii"),
    ("--theme", "dark, light or mono colours (NO_COLOR: mono)"),
    (
        "--data-dir",
        "train on MNIST, Fashion-MNIST, CIFAR-10 or images",
    ),
];

const HELP_DASHBOARD: [(&str, &str); 12] = [
    ("p or Space", "pause or resume training"),
    ("s", "stop training (a final checkpoint is written)"),
    ("c", "save a checkpoint now"),
    ("n", "refresh the sample grid now"),
    ("g", "save the sample grid as a PNG"),
    (
        "i",
        "latent interpolation: linear (top) and spherical (bottom)",
    ),
    ("m", "switch image mode: half-blocks, ASCII, sixel or kitty"),
    (
        "[ / ]",
        "weaker / stronger smoothing of the curves (0 to 0.99)",
    ),
    ("l", "losses on a log or a linear scale"),
    ("r", "the runs browser, once the run has ended"),
    ("b / Esc", "back to the picker when the run has ended"),
    ("n, i, g, m", "also work on an ended run and an opened one"),
];

const HELP_RUNS: [(&str, &str); 8] = [
    ("↑ ↓ / j k", "choose a run"),
    (
        "Enter / o",
        "open it: curves, samples, interpolation (no training)",
    ),
    ("Space", "mark or unmark it for comparison"),
    ("c", "compare the marked runs' curves on shared axes"),
    ("r", "resume it: back to the picker, Enter continues it"),
    ("d", "delete it (asks first; PNGs you saved there stay)"),
    ("u", "read the runs folder again"),
    ("b / Esc", "back to the picker"),
];

const HELP_COMPARE: [(&str, &str); 3] = [
    (
        "[ / ]",
        "weaker / stronger smoothing of the curves (0 to 0.99)",
    ),
    ("l", "losses on a log or a linear scale"),
    ("b / Esc", "back to the runs browser"),
];

/// The help of a screen: its keys, then those that work everywhere.
pub fn help(screen: Screen) -> Vec<(&'static str, &'static str)> {
    let own: &[(&str, &str)] = match screen {
        Screen::Picker => &HELP_PICKER,
        Screen::Dashboard => &HELP_DASHBOARD,
        Screen::Runs => &HELP_RUNS,
        Screen::Compare => &HELP_COMPARE,
    };
    own.iter().chain(HELP_ANYWHERE.iter()).copied().collect()
}
