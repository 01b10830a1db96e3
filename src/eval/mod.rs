//! Evaluation: one scoreboard for every model on the same held-out digits.

pub mod classifier;
pub mod metrics;

use crate::classical::ModelError;
use crate::classical::catalog::{self, ClassicalConfig, ImageModel};
use crate::data::{DataError, Dataset, PixelScale, Split, mnist};
use crate::neural::{self, Metric, Model, ModelKind, NeuralConfig};
use crate::train::{self, TrainConfig, TrainError};
use crate::util::Progress;
use candle_core::{Device, Tensor};
use classifier::DigitClassifier;
use faer::Mat;
use std::path::{Path, PathBuf};

/// Why an evaluation could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{path}: {cause}")]
    File {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: {cause}")]
    Json {
        path: PathBuf,
        cause: serde_json::Error,
    },
    #[error(transparent)]
    Train(Box<TrainError>),
    #[error(transparent)]
    Classical(#[from] ModelError),
    #[error(transparent)]
    Data(#[from] DataError),
    /// The metrics refused their input (too few samples, mismatched features).
    #[error("{0}")]
    Metric(String),
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
    #[error(transparent)]
    Png(#[from] crate::render::grid::PngError),
}

pub type Result<T> = std::result::Result<T, EvalError>;

impl From<TrainError> for EvalError {
    fn from(e: TrainError) -> Self {
        EvalError::Train(Box::new(e))
    }
}

pub(crate) fn file_error(path: &Path) -> impl FnOnce(std::io::Error) -> EvalError + '_ {
    move |cause| EvalError::File {
        path: path.to_path_buf(),
        cause,
    }
}

/// What to evaluate and how.
#[derive(Debug, Clone)]
pub struct EvalConfig {
    pub seed: u64,
    /// Samples drawn from each model (10,000 by default).
    pub samples: usize,
    /// Samples used for precision and recall (k-NN on all pairs is quadratic).
    pub pr_samples: usize,
    /// A folder of run folders whose newest checkpoints are used (`vae/`, or else the
    /// newest `vae-…`, and so on; see `train::runs::newest_checkpoint`); models without one
    /// are trained into `MODEL/` there with the book's settings.
    pub runs: Option<PathBuf>,
    /// Where the classifier is cached.
    pub cache: PathBuf,
    /// A tiny configuration for tests: a few training steps, few samples.
    pub quick: bool,
    /// Only these rows (the real digits' row is always there); all if empty, or none
    /// when sample files are given.
    pub only: Vec<EvalGroup>,
    /// Samples written by another generator (or by `genmod generate`), scored as rows of
    /// their own.
    pub files: Vec<SampleFile>,
    /// Seeds `seed`, `seed + 1`, …: each model is trained (or, from `runs`, sampled) once
    /// per seed and the rows give the mean with the range of FD, precision and recall.
    pub seeds: u64,
}

/// How the pixels of a float sample file are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PixelRange {
    /// 0 is black, 1 white: what genmod writes and what torchvision's ToTensor gives.
    #[default]
    ZeroOne,
    /// −1 to 1, a tanh generator's raw output; mapped to [0, 1] by (x + 1) / 2.
    MinusOneOne,
}

/// A file of 28x28 grey samples (NPY or IDX: uint8 0–255 or float32 in the stated range),
/// with, for a conditional generator, a file of the label each sample was asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleFile {
    pub images: PathBuf,
    pub labels: Option<PathBuf>,
    pub range: PixelRange,
}

/// The classifier's probability above which a sample counts as legible: the quality issue's
/// test of a default run is that at least 90% of a 64-sample grid passes it.
pub const LEGIBLE_PROBABILITY: f64 = 0.9;

/// Values this far outside the stated range are rounding, not another encoding.
const RANGE_SLACK: f32 = 1e-5;

/// The samples of `file` as N x 1 x 28 x 28 in [0, 1], and their labels; every way the
/// file can disagree with what it claims to be is an error naming it.
pub fn read_samples(file: &SampleFile) -> Result<(Tensor, Option<Vec<usize>>)> {
    use crate::data::arrays;
    let path = &file.images;
    let invalid = |p: &Path, m: String| EvalError::Data(DataError::invalid(p, m));
    let a = arrays::read(path)?;
    let n = match a.dims.as_slice() {
        [n, 28, 28] | [n, 1, 28, 28] | [n, 784] => *n,
        dims => {
            return Err(invalid(
                path,
                format!(
                    "shape {dims:?}; expected 28x28 grey digits as (N, 28, 28), (N, 1, 28, 28) or (N, 784)"
                ),
            ));
        }
    };
    if n < 10 {
        return Err(invalid(
            path,
            format!("{n} samples; the scores need at least 10"),
        ));
    }
    let pixels = pixels_in_unit_range(path, a.elements, file.range)?;
    let images = Tensor::from_vec(pixels, (n, 1, 28, 28), &Device::Cpu)?;
    let labels = file
        .labels
        .as_deref()
        .map(|lp| read_labels(lp, n, path))
        .transpose()?;
    Ok((images, labels))
}

/// The pixels of a sample file in [0, 1]: uint8 divided by 255, float32 mapped from the
/// stated range (after checking every value lies in it).
fn pixels_in_unit_range(
    path: &Path,
    elements: crate::data::arrays::Elements,
    range: PixelRange,
) -> Result<Vec<f32>> {
    use crate::data::arrays::Elements;
    let invalid = |m: String| EvalError::Data(DataError::invalid(path, m));
    let v = match (elements, range) {
        (Elements::U8(v), PixelRange::ZeroOne) => {
            return Ok(v.iter().map(|&b| b as f32 / 255.0).collect());
        }
        (Elements::U8(_), PixelRange::MinusOneOne) => {
            return Err(invalid(
                "uint8 pixels are 0-255; the −1..1 range applies to float32 files only".into(),
            ));
        }
        (Elements::Int(_), _) => {
            return Err(invalid(
                "integer images; expected uint8 (0-255) or float32 pixels".into(),
            ));
        }
        (Elements::F32(v), _) => v,
    };
    let (lo, hi) = match range {
        PixelRange::ZeroOne => (0.0, 1.0),
        PixelRange::MinusOneOne => (-1.0, 1.0),
    };
    if let Some(i) = v
        .iter()
        .position(|x| !(lo - RANGE_SLACK..=hi + RANGE_SLACK).contains(x))
    {
        let (min, max) = v
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
        let tanh_like = min >= -1.0 - RANGE_SLACK && max <= 1.0 + RANGE_SLACK;
        let hint = if range == PixelRange::ZeroOne && tanh_like {
            " (a tanh generator's output? say --pixel-range minus-one-one)"
        } else {
            ""
        };
        return Err(invalid(format!(
            "float32 value {} at element {i} (values span {min} to {max}) outside the stated range [{lo}, {hi}]{hint}",
            v[i]
        )));
    }
    Ok(v.iter()
        .map(|&x| ((x - lo) / (hi - lo)).clamp(0.0, 1.0))
        .collect())
}

/// The labels file of `n` samples (in `images`): integers 0-9, one per sample.
fn read_labels(path: &Path, n: usize, images: &Path) -> Result<Vec<usize>> {
    use crate::data::arrays::{self, Elements};
    let invalid = |m: String| EvalError::Data(DataError::invalid(path, m));
    let l = arrays::read(path)?;
    let values: Vec<i64> = match l.elements {
        Elements::Int(v) => v,
        Elements::U8(v) => v.into_iter().map(i64::from).collect(),
        Elements::F32(_) => return Err(invalid("float32 labels; expected integers 0-9".into())),
    };
    if !matches!(l.dims.as_slice(), [m] | [m, 1] if *m == n) {
        return Err(invalid(format!(
            "label shape {:?}; expected ({n},), one label per sample in {}",
            l.dims,
            images.display()
        )));
    }
    if let Some(i) = values.iter().position(|v| !(0..=9).contains(v)) {
        return Err(invalid(format!(
            "label {} at element {i}; expected digits 0-9",
            values[i]
        )));
    }
    Ok(values.into_iter().map(|v| v as usize).collect())
}

/// Writes `n` samples of `model` (what the scoreboard scores: the same draws, as float32 in
/// [0, 1]) to the NPY file `out`, and for a conditional model the asked-for labels beside it
/// (`NAME.labels.npy`). Returns the labels' path if written.
pub fn write_samples(
    model: &dyn Model,
    n: usize,
    seed: u64,
    out: &Path,
) -> Result<Option<PathBuf>> {
    let (images, intended) = draw_samples(model, n, seed)?;
    write_npy(&images, intended.as_deref(), out)
}

/// `images` (N x C x H x W) as float32 NPY at `out`, and `labels` at `NAME.labels.npy`.
fn write_npy(images: &Tensor, labels: Option<&[usize]>, out: &Path) -> Result<Option<PathBuf>> {
    use crate::data::arrays::{Elements, npy_bytes};
    let values = images.flatten_all()?.to_vec1::<f32>()?;
    crate::util::atomic_write(out, &npy_bytes(images.dims(), &Elements::F32(values)))
        .map_err(file_error(out))?;
    let Some(labels) = labels else {
        return Ok(None);
    };
    let stem = out.file_stem().unwrap_or_default().to_string_lossy();
    let lp = out.with_file_name(format!("{stem}.labels.npy"));
    let ints = Elements::Int(labels.iter().map(|&l| l as i64).collect());
    crate::util::atomic_write(&lp, &npy_bytes(&[labels.len()], &ints)).map_err(file_error(&lp))?;
    Ok(Some(lp))
}

/// Groups of scoreboard rows that `genmod eval --only` picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EvalGroup {
    /// The six classical image models (report 3.2-3.5).
    Classical,
    Autoencoder,
    Vae,
    Gan,
    Dcgan,
    Cgan,
    Cdcgan,
}

impl EvalGroup {
    fn of(kind: ModelKind) -> Self {
        match kind {
            ModelKind::Autoencoder => EvalGroup::Autoencoder,
            ModelKind::Vae => EvalGroup::Vae,
            ModelKind::Gan => EvalGroup::Gan,
            ModelKind::Dcgan => EvalGroup::Dcgan,
            ModelKind::Cgan => EvalGroup::Cgan,
            ModelKind::Cdcgan => EvalGroup::Cdcgan,
        }
    }
}

/// One row of the scoreboard.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Row {
    pub model: String,
    pub section: String,
    /// Test NLL in nats per image and bits per dimension, with the pixels' discretisation.
    pub nll_nats: Option<f64>,
    pub nll_bits_per_dim: Option<f64>,
    pub discretisation: Option<String>,
    /// The VAE's importance-weighted estimate beside its ELBO, in nats and bits per
    /// dimension, and the number of importance samples per image behind it.
    pub iw_nll_nats: Option<f64>,
    pub iw_nll_bits_per_dim: Option<f64>,
    pub iw_samples: Option<usize>,
    pub fid: f64,
    pub precision: f64,
    pub recall: f64,
    /// Classes that receive at least 1% of the samples.
    pub classes_covered: usize,
    /// KL(sample class histogram ‖ test class histogram), nats.
    pub coverage_kl: f64,
    /// Share of samples of class c that the classifier calls c (class-conditional models).
    pub conditional_accuracy: Option<f64>,
    /// Share of samples the classifier assigns to one digit with probability above
    /// [`LEGIBLE_PROBABILITY`]: a grid a person reads as digits scores near the real
    /// digits' share, while blobs and crosses between two digits split the probability.
    /// Older eval.json files have none.
    #[serde(default)]
    pub legible: f64,
    /// With several seeds: the values are means, and these the range over the seeds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spread: Option<Spread>,
}

/// The smallest and largest value of a row's main scores over seeds.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Spread {
    pub seeds: u64,
    pub fid: (f64, f64),
    pub precision: (f64, f64),
    pub recall: (f64, f64),
}

/// Mean of `rows` (one per seed, the same model), with the range of FD, precision and
/// recall; counts and optional scores are averaged too.
fn combine(rows: &[Row]) -> Row {
    let n = rows.len() as f64;
    let mean = |f: &dyn Fn(&Row) -> f64| rows.iter().map(f).sum::<f64>() / n;
    let range = |f: &dyn Fn(&Row) -> f64| {
        rows.iter()
            .map(f)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(v), b.max(v))
            })
    };
    let opt_mean = |f: &dyn Fn(&Row) -> Option<f64>| -> Option<f64> {
        let v: Vec<f64> = rows.iter().filter_map(f).collect();
        (v.len() == rows.len()).then(|| v.iter().sum::<f64>() / n)
    };
    let first = &rows[0];
    Row {
        model: first.model.clone(),
        section: first.section.clone(),
        nll_nats: opt_mean(&|r| r.nll_nats),
        nll_bits_per_dim: opt_mean(&|r| r.nll_bits_per_dim),
        discretisation: first.discretisation.clone(),
        iw_nll_nats: opt_mean(&|r| r.iw_nll_nats),
        iw_nll_bits_per_dim: opt_mean(&|r| r.iw_nll_bits_per_dim),
        iw_samples: first.iw_samples,
        fid: mean(&|r| r.fid),
        precision: mean(&|r| r.precision),
        recall: mean(&|r| r.recall),
        classes_covered: mean(&|r| r.classes_covered as f64).round() as usize,
        coverage_kl: mean(&|r| r.coverage_kl),
        conditional_accuracy: opt_mean(&|r| r.conditional_accuracy),
        legible: mean(&|r| r.legible),
        spread: Some(Spread {
            seeds: rows.len() as u64,
            fid: range(&|r| r.fid),
            precision: range(&|r| r.precision),
            recall: range(&|r| r.recall),
        }),
    }
}

/// The scoreboard.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub header: String,
    pub classifier_accuracy: f64,
    pub rows: Vec<Row>,
}

impl Report {
    pub fn markdown(&self) -> String {
        let f = |v: Option<f64>, p: usize| v.map_or("–".to_string(), |x| format!("{x:.p$}"));
        let mut s = format!("{}\n\n", self.header);
        s.push_str("| model | § | test NLL (nats) | bits/dim | pixels | FD | precision | recall | classes ≥1% | coverage KL | cond. acc. | legible |\n");
        s.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for r in &self.rows {
            // The VAE has two estimates: the ELBO bound and the tighter importance-weighted
            // one; each column shows both, labelled, in the same order.
            let (nll, bits) = match (r.nll_nats, r.iw_nll_nats, r.iw_samples) {
                (Some(a), Some(b), Some(k)) => (
                    format!("−ELBO {a:.1}, IW-{k} {b:.1}"),
                    format!(
                        "{}, {}",
                        f(r.nll_bits_per_dim, 3),
                        f(r.iw_nll_bits_per_dim, 3)
                    ),
                ),
                (a, _, _) => (f(a, 1), f(r.nll_bits_per_dim, 3)),
            };
            let (fid, precision, recall) = match &r.spread {
                Some(sp) => (
                    format!("{:.2} [{:.2}–{:.2}]", r.fid, sp.fid.0, sp.fid.1),
                    format!(
                        "{:.3} [{:.3}–{:.3}]",
                        r.precision, sp.precision.0, sp.precision.1
                    ),
                    format!("{:.3} [{:.3}–{:.3}]", r.recall, sp.recall.0, sp.recall.1),
                ),
                None => (
                    format!("{:.2}", r.fid),
                    format!("{:.3}", r.precision),
                    format!("{:.3}", r.recall),
                ),
            };
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.3} | {} | {:.3} |\n",
                r.model,
                r.section,
                nll,
                bits,
                r.discretisation.as_deref().unwrap_or("–"),
                fid,
                precision,
                recall,
                r.classes_covered,
                r.coverage_kl,
                f(r.conditional_accuracy, 3),
                r.legible
            ));
        }
        s
    }
}

/// Images in [0, 1] as an N x 1 x 28 x 28 tensor, from rows of pixels.
fn rows_to_tensor(x: &Mat<f64>) -> Result<Tensor> {
    let v: Vec<f32> = (0..x.nrows())
        .flat_map(|i| (0..x.ncols()).map(move |j| (i, j)))
        .map(|(i, j)| x[(i, j)].clamp(0.0, 1.0) as f32)
        .collect();
    Ok(Tensor::from_vec(v, (x.nrows(), 1, 28, 28), &Device::Cpu)?)
}

/// The classifier and the test digits' statistics that every row is scored against.
pub struct Scoreboard {
    clf: DigitClassifier,
    accuracy: f64,
    test_features: Mat<f64>,
    test_hist: Vec<f64>,
    pr_samples: usize,
}

impl Scoreboard {
    /// The cached classifier (trained on first use) and the features of `split`'s test
    /// digits; `quick` trains a throwaway classifier for one epoch instead.
    pub fn new(
        split: &Split,
        seed: u64,
        cache: &Path,
        quick: bool,
        pr_samples: usize,
        log: &mut dyn FnMut(&str),
    ) -> Result<Self> {
        let (clf, accuracy) = if quick {
            let small = Split {
                train: split.train.take(2000),
                test: split.test.clone(),
            };
            DigitClassifier::train(&small, seed, 1, log)?
        } else {
            DigitClassifier::load_or_train(cache, split, seed, log)?
        };
        let test_features = clf.feature_matrix(&all_images(&split.test)?)?;
        Ok(Self {
            clf,
            accuracy,
            test_features,
            test_hist: metrics::histogram(&labels_of(&split.test), 10),
            pr_samples,
        })
    }

    /// The classifier's accuracy on the test digits.
    pub fn accuracy(&self) -> f64 {
        self.accuracy
    }

    /// Scores `images` (N x 1 x 28 x 28 in [0, 1]) into `row`; `intended` are the labels a
    /// conditional generator was asked for.
    pub fn score(&self, row: &mut Row, images: &Tensor, intended: Option<&[usize]>) -> Result<()> {
        let feats = self.clf.feature_matrix(images)?;
        row.fid = metrics::frechet_distance(feats.as_ref(), self.test_features.as_ref())
            .map_err(EvalError::Metric)?;
        let k = self.pr_samples.min(feats.nrows());
        let sub = Mat::from_fn(k, feats.ncols(), |i, j| feats[(i, j)]);
        let tk = self.pr_samples.min(self.test_features.nrows());
        let test_sub = Mat::from_fn(tk, feats.ncols(), |i, j| self.test_features[(i, j)]);
        (row.precision, row.recall) = metrics::precision_recall(test_sub.as_ref(), sub.as_ref(), 3);
        let verdicts = self.clf.predict_with_confidence(images)?;
        let pred: Vec<usize> = verdicts.iter().map(|&(class, _)| class).collect();
        row.legible = verdicts
            .iter()
            .filter(|&&(_, p)| f64::from(p) > LEGIBLE_PROBABILITY)
            .count() as f64
            / verdicts.len().max(1) as f64;
        let hist = metrics::histogram(&pred, 10);
        row.classes_covered = hist.iter().filter(|&&h| h >= 0.01).count();
        // KL is never negative; rounding can leave −1e-12, which would print as −0.000.
        row.coverage_kl = metrics::kl_divergence(&hist, &self.test_hist, 1e-6).max(0.0);
        row.conditional_accuracy = intended.map(|want| {
            pred.iter().zip(want).filter(|(p, w)| p == w).count() as f64 / want.len().max(1) as f64
        });
        Ok(())
    }
}

fn neural_model(
    kind: ModelKind,
    cfg: &EvalConfig,
    split: &Split,
    log: &mut dyn FnMut(&str),
) -> Result<Box<dyn Model>> {
    if let Some(runs) = &cfg.runs
        && let Some(ckpt) = train::runs::newest_checkpoint(runs, kind)
    {
        let (m, meta) = train::load_model(&ckpt)?;
        log(&format!(
            "{}: checkpoint {} (step {})",
            kind.name(),
            ckpt.display(),
            meta.step
        ));
        return Ok(m);
    }
    let (epochs, batch) = train::default_budget(kind);
    log(&format!(
        "{}: training {epochs} epochs (no checkpoint given)",
        kind.name()
    ));
    let dir = match &cfg.runs {
        Some(r) => r.join(kind.name()),
        None => std::env::temp_dir().join(format!(
            "genmod-eval-{}-{}",
            kind.name(),
            std::process::id()
        )),
    };
    let mut t = TrainConfig::new(NeuralConfig::new(kind));
    t.epochs = if cfg.quick { 1 } else { epochs };
    t.batch_size = batch;
    t.seed = cfg.seed;
    t.out_dir = Some(dir.clone());
    t.sample_every = 0;
    t.eval_batches = Some(1);
    if cfg.quick {
        t.max_steps = Some(2);
    }
    let never = std::sync::atomic::AtomicBool::new(false);
    train::train(t, split.clone(), None, &never, |_| {})?;
    let (m, _) = train::load_model(&dir)?;
    if cfg.runs.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(m)
}

/// `n` samples of a neural model as N x C x H x W images in [0, 1], drawn from the sampling
/// stream of `seed`, and for a conditional model the label each was asked for (the classes
/// in turn).
pub fn draw_samples(
    model: &dyn Model,
    n: usize,
    seed: u64,
) -> Result<(Tensor, Option<Vec<usize>>)> {
    let mut rng = crate::util::Stream::Sampling.rng(seed);
    let mut chunks = Vec::new();
    let classes = model.num_classes();
    let mut intended = Vec::new();
    for s in (0..n).step_by(500) {
        let m = 500.min(n - s);
        let z = neural::normal(m, model.config().latent_dim, &mut rng, &Device::Cpu)?;
        let labels = if classes > 0 {
            let ids: Vec<u32> = (s..s + m).map(|i| (i % classes) as u32).collect();
            intended.extend(ids.iter().map(|&v| v as usize));
            Some(Tensor::from_vec(ids, m, &Device::Cpu)?)
        } else {
            None
        };
        let x = model.generate(&z, labels.as_ref())?;
        let x = match model.pixel_scale() {
            PixelScale::ZeroOne => x,
            PixelScale::MinusOneOne => ((x + 1.0)? * 0.5)?,
        };
        chunks.push(x.clamp(0f32, 1f32)?);
    }
    Ok((Tensor::cat(&chunks, 0)?, (classes > 0).then_some(intended)))
}

/// What [`generate`] wrote.
#[derive(Debug, Clone)]
pub struct Generated {
    pub model: ModelKind,
    /// The checkpoint's step.
    pub step: u64,
    pub samples: PathBuf,
    pub labels: Option<PathBuf>,
    /// The PNG grid of the first samples, when asked for.
    pub grid: Option<PathBuf>,
}

/// `genmod generate`: `count` samples of the newest checkpoint under `checkpoint` to the
/// NPY file `out` (see [`write_samples`]) and, with `png`, a grid of the first 64 (one
/// column per class for a conditional model).
pub fn generate(
    checkpoint: &Path,
    count: usize,
    seed: u64,
    out: &Path,
    png: Option<&Path>,
) -> Result<Generated> {
    let ckpt = train::checkpoint::resolve(checkpoint).map_err(TrainError::from)?;
    let (model, meta) = train::load_model(&ckpt)?;
    let (images, intended) = draw_samples(model.as_ref(), count, seed)?;
    let labels = write_npy(&images, intended.as_deref(), out)?;
    if let Some(p) = png {
        // The grid shows the first samples of the file, one column per class when
        // conditional.
        let first = images.narrow(0, 0, 64.min(count))?;
        let (n, c, h, w) = first.dims4()?;
        let v = first.flatten_all()?.to_vec1::<f32>()?;
        let cols = match model.num_classes() {
            0 => 8,
            k => k,
        };
        crate::render::Grid::from_f32(&v, n, c, h, w, cols, PixelScale::ZeroOne)
            .upscale(2)
            .save_png(p)?;
    }
    Ok(Generated {
        model: meta.model.kind,
        step: meta.step,
        samples: out.to_path_buf(),
        labels,
        grid: png.map(Path::to_path_buf),
    })
}

/// Every image of `ds` as one N x C x H x W tensor in [0, 1].
fn all_images(ds: &Dataset) -> Result<Tensor> {
    Ok(ds.to_tensor(PixelScale::ZeroOne, &Device::Cpu)?)
}

fn labels_of(ds: &Dataset) -> Vec<usize> {
    ds.labels()
        .unwrap_or(&[])
        .iter()
        .map(|&v| v as usize)
        .collect()
}

/// The classical image models, in report order.
const CLASSICAL: [ImageModel; 6] = [
    ImageModel::NaiveBayes,
    ImageModel::GaussianNb,
    ImageModel::Lda,
    ImageModel::Qda,
    ImageModel::Gmm,
    ImageModel::GmmPerClass,
];

/// The row of a classical model: fitted on the training digits, `n` samples scored.
fn classical_row(
    model: ImageModel,
    cfg: &EvalConfig,
    split: &Split,
    n: usize,
    scorer: &Scoreboard,
) -> Result<Row> {
    let mut c = ClassicalConfig::new(model);
    c.seed = cfg.seed;
    if cfg.quick {
        c.max_iter = 3;
        c.train_limit = Some(1000);
    }
    let (fitted, report) = catalog::fit(&c, split, |_, _| {})?;
    let mut rng = crate::util::Stream::Evaluation.rng(cfg.seed);
    let x = fitted.samples(n.div_ceil(10), &mut rng);
    let intended: Option<Vec<usize>> = match &fitted {
        catalog::Fitted::Supervised(_) => Some((0..x.nrows()).map(|i| i % 10).collect()),
        catalog::Fitted::Mixture(_) => None,
    };
    let mut row = Row {
        model: model.name().into(),
        section: model.section().into(),
        nll_nats: Some(report.test_nll.nats_per_image),
        nll_bits_per_dim: Some(report.test_nll.bits_per_dim),
        discretisation: Some(
            if model == ImageModel::NaiveBayes {
                "binary"
            } else {
                "8-bit"
            }
            .into(),
        ),
        ..Default::default()
    };
    scorer.score(&mut row, &rows_to_tensor(&x)?, intended.as_deref())?;
    Ok(row)
}

/// The VAE's −ELBO and importance-weighted NLL on the binarised test digits, into `row`
/// (the first 100 only with `cfg.quick`).
pub fn vae_likelihood(
    model: &dyn Model,
    seed: u64,
    quick: bool,
    test: &Dataset,
    row: &mut Row,
) -> Result<()> {
    let mut rng = crate::util::Stream::Likelihood.rng(seed);
    let (mut elbo, mut iw, mut count) = (0.0, 0.0, 0usize);
    let tn = if quick { 100 } else { test.len() };
    for s in (0..tn).step_by(250) {
        let idx: Vec<usize> = (s..(s + 250).min(tn)).collect();
        let b = test.batch_of(&idx, &PixelScale::ZeroOne.table(), &Device::Cpu)?;
        let m = model.eval_batch(&b, &mut rng)?;
        let get = |k| neural::metric(&m, k).unwrap_or(f64::NAN);
        elbo += get(Metric::NegElbo) * idx.len() as f64;
        iw += get(Metric::IwNll) * idx.len() as f64;
        count += idx.len();
    }
    let bits = |nats: f64| nats / (784.0 * std::f64::consts::LN_2);
    row.nll_nats = Some(elbo / count as f64);
    row.nll_bits_per_dim = Some(bits(elbo / count as f64));
    row.iw_nll_nats = Some(iw / count as f64);
    row.iw_nll_bits_per_dim = Some(bits(iw / count as f64));
    row.iw_samples = Some(model.config().iw_samples);
    row.discretisation = Some("binary".into());
    Ok(())
}

/// The note above the table: what was scored and how to read it.
fn header(cfg: &EvalConfig, split: &Split, n: usize, accuracy: f64) -> String {
    format!(
        "Seed {}; embedded MNIST: models fitted on {} training digits, scored on the {} test digits; {} samples per model ({} for precision/recall, k = 3). \
Classifier: the project's CNN, test accuracy {:.2}%; FD = Fréchet distance on its 128-d features (not Inception's: not comparable with published FIDs). \
NLL: binary = pixels binarised at 0.5; 8-bit = a density on dequantised pixels + 784·ln 256 nats; for the VAE, −ELBO is a bound and IW-k the importance-weighted estimate with k samples per image. \
Coverage KL = KL(sample classes ‖ test classes). Legible = the share of samples the classifier gives one digit with probability above {LEGIBLE_PROBABILITY} (a 64-sample grid of a default run should reach 0.9). The classical models' speckled samples are far from any training digit, so the classifier's verdicts on them (classes, conditional accuracy, legible share: it is confidently wrong on speckle) are less reliable than on smooth samples.{}",
        cfg.seed,
        split.train.len(),
        split.test.len(),
        n,
        cfg.pr_samples.min(n),
        100.0 * accuracy,
        if cfg.quick {
            " QUICK CONFIGURATION: not meaningful."
        } else {
            ""
        }
    )
}

/// Whether the scoreboard of `cfg` has a row for `g`: the groups named with `--only`, or
/// every group when neither `--only` nor sample files are given.
fn wants(cfg: &EvalConfig, g: EvalGroup) -> bool {
    cfg.only.contains(&g) || (cfg.only.is_empty() && cfg.files.is_empty())
}

/// The rows one seed's scoreboard has: the real digits, each sample file, each model.
fn rows_per_seed(cfg: &EvalConfig) -> u64 {
    let classical = if wants(cfg, EvalGroup::Classical) {
        CLASSICAL.len()
    } else {
        0
    };
    let neural = ModelKind::ALL
        .iter()
        .filter(|k| wants(cfg, EvalGroup::of(**k)))
        .count();
    (1 + cfg.files.len() + classical + neural) as u64
}

/// Scores every model, once per seed of `cfg.seeds`; `progress` gets the log lines and
/// counts the rows done.
pub fn evaluate(cfg: &EvalConfig, progress: &mut dyn Progress) -> Result<Report> {
    let per_seed = rows_per_seed(cfg);
    let total = per_seed * cfg.seeds.max(1);
    progress.advance(0, total);
    if cfg.seeds <= 1 {
        return evaluate_seed(cfg, progress, 0, total);
    }
    let mut reports = Vec::new();
    for s in 0..cfg.seeds {
        let seed = cfg.seed + s;
        progress.line(&format!("seed {seed}"));
        let c = EvalConfig {
            seed,
            seeds: 1,
            ..cfg.clone()
        };
        reports.push(evaluate_seed(&c, progress, s * per_seed, total)?);
    }
    let rows = (0..reports[0].rows.len())
        .map(|i| {
            combine(
                &reports
                    .iter()
                    .map(|r| r.rows[i].clone())
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    let acc = reports.iter().map(|r| r.classifier_accuracy).sum::<f64>() / reports.len() as f64;
    Ok(Report {
        header: format!(
            "{} Seeds {}–{}: each value is the mean over the seeds, with the range of FD, precision and recall in brackets.",
            reports[0].header,
            cfg.seed,
            cfg.seed + cfg.seeds - 1
        ),
        classifier_accuracy: acc,
        rows,
    })
}

/// One seed's scoreboard; its rows count from `done` towards `total` in `progress`.
fn evaluate_seed(
    cfg: &EvalConfig,
    progress: &mut dyn Progress,
    mut done: u64,
    total: u64,
) -> Result<Report> {
    let split = mnist::embedded();
    let log = &mut |m: &str| progress.line(m);
    let scorer = Scoreboard::new(&split, cfg.seed, &cfg.cache, cfg.quick, cfg.pr_samples, log)?;
    let acc = scorer.accuracy();
    let n = if cfg.quick { 200 } else { cfg.samples };

    // The floor: real training digits scored against the test digits.
    let mut reference = Row {
        model: "real training digits (reference)".into(),
        section: "–".into(),
        ..Default::default()
    };
    let train_part = split.train.take(n.min(split.train.len()));
    let intended = labels_of(&train_part);
    scorer.score(&mut reference, &all_images(&train_part)?, Some(&intended))?;
    let mut rows = vec![reference];
    let mut row_done = |progress: &mut dyn Progress| {
        done += 1;
        progress.advance(done, total);
    };
    row_done(progress);

    for file in &cfg.files {
        progress.line(&format!("{}: reading samples", file.images.display()));
        let (images, intended) = read_samples(file)?;
        let mut row = Row {
            model: file.images.display().to_string(),
            section: "file".into(),
            ..Default::default()
        };
        scorer.score(&mut row, &images, intended.as_deref())?;
        rows.push(row);
        row_done(progress);
    }
    // With sample files, genmod's own models are scored only when asked for by name.
    if wants(cfg, EvalGroup::Classical) {
        for model in CLASSICAL {
            progress.line(&format!("{}: fitting and sampling", model.name()));
            rows.push(classical_row(model, cfg, &split, n, &scorer)?);
            row_done(progress);
        }
    }
    for kind in ModelKind::ALL {
        if !wants(cfg, EvalGroup::of(kind)) {
            continue;
        }
        let model = neural_model(kind, cfg, &split, &mut |m: &str| progress.line(m))?;
        progress.line(&format!("{}: sampling {n}", kind.name()));
        let (images, intended) = draw_samples(model.as_ref(), n, cfg.seed)?;
        let mut row = Row {
            model: kind.name().into(),
            section: kind.section().into(),
            ..Default::default()
        };
        if kind == ModelKind::Vae {
            vae_likelihood(model.as_ref(), cfg.seed, cfg.quick, &split.test, &mut row)?;
        }
        scorer.score(&mut row, &images, intended.as_deref())?;
        rows.push(row);
        row_done(progress);
    }
    Ok(Report {
        header: header(cfg, &split, n, acc),
        classifier_accuracy: acc,
        rows,
    })
}

/// Writes `eval.md` and `eval.json` into `dir`.
pub fn write(report: &Report, dir: &Path) -> Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).map_err(file_error(dir))?;
    let md = dir.join("eval.md");
    let js = dir.join("eval.json");
    crate::util::atomic_write(&md, report.markdown().as_bytes()).map_err(file_error(&md))?;
    let json = serde_json::to_string_pretty(report).map_err(|cause| EvalError::Json {
        path: js.clone(),
        cause,
    })?;
    crate::util::atomic_write(&js, json.as_bytes()).map_err(file_error(&js))?;
    Ok((md, js))
}
