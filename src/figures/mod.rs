//! `genmod figures`: regenerates every figure of the book, and the likelihood table of its
//! conclusions, from the embedded digits. Classical models are fitted; neural models are
//! trained with the trainer and then reloaded from their final checkpoint, so that codes
//! and interpolations come from exactly the model that was saved.

use crate::classical::ModelError;
use crate::classical::catalog::{self, ClassicalConfig, ImageModel};
use crate::classical::demo::PALETTE;
use crate::util::Progress;

use crate::data::{PixelScale, Split, mnist};
use crate::neural::{self, Metric, Metrics, Model, ModelKind, NeuralConfig};
use crate::render::Grid;
use crate::render::grid::PngError;
use crate::render::plot::{self, Frame, PlotError, rgb, text};
use crate::train::{self, TrainConfig, TrainError, TrainEvent};
use candle_core::Device;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

mod two_d;
pub use two_d::{boundary_figure, cluster_figure, em_trace_figure, sigmoid_figure};

/// Why a figure could not be made.
#[derive(Debug, thiserror::Error)]
pub enum FigureError {
    #[error("{path}: {cause}")]
    Write {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(transparent)]
    Png(#[from] PngError),
    #[error("training {model}: {cause}")]
    Train {
        model: &'static str,
        cause: Box<TrainError>,
    },
    #[error("{model}: the run produced no sample grid")]
    NoGrid { model: &'static str },
    #[error(transparent)]
    Classical(#[from] ModelError),
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
    #[error(transparent)]
    Plot(#[from] PlotError),
}

type Result<T> = std::result::Result<T, FigureError>;

fn write_error(path: &Path) -> impl FnOnce(std::io::Error) -> FigureError + '_ {
    move |cause| FigureError::Write {
        path: path.to_path_buf(),
        cause,
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct FigureConfig {
    /// Folder of the PNGs (`book/src/figures`); the table goes to `../generated/`.
    pub out: PathBuf,
    /// A tiny configuration (a few steps per model) for tests.
    pub quick: bool,
    pub seed: u64,
    /// Only these groups; all if empty. The likelihood table is written only when the
    /// classical models and the VAE run.
    pub only: Vec<FigureGroup>,
}

/// The groups of figures, one per chapter's model (or the 2-D pictures).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FigureGroup {
    /// Figures 3.2, 3.4 and 3.5: the 2-D demonstrations.
    #[value(name = "2d")]
    TwoD,
    /// The classical models' samples.
    Classical,
    Autoencoder,
    Vae,
    Gan,
    Dcgan,
    Cgan,
    /// Figure 4.8: the conditional DCGAN (not in the report).
    Cdcgan,
}

/// How a KL schedule is named in figure 3.12's legend.
fn schedule_name(s: crate::neural::KlSchedule) -> &'static str {
    use crate::neural::KlSchedule;
    match s {
        KlSchedule::None => "no warm-up: RL + KL",
        KlSchedule::Standard => "standard warm-up: RL + β·KL",
        KlSchedule::Report => "the report's: r·RL + KL",
    }
}

/// Ten colours for the ten digits.
const DIGIT_COLOURS: [[u8; 3]; 10] = [
    PALETTE[0],
    PALETTE[1],
    PALETTE[2],
    PALETTE[3],
    [214, 39, 40],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

struct Trained {
    model: Box<dyn Model>,
    grid: Grid,
    test: Metrics,
    /// Every step's training metrics, in order.
    steps: Vec<(u64, Metrics)>,
    /// Every epoch's test metrics, in order.
    epochs: Vec<(usize, Metrics)>,
}

fn train_model(cfg: TrainConfig, split: &Split, log: &mut dyn FnMut(&str)) -> Result<Trained> {
    let kind = cfg.model.kind;
    let train_error = |cause| FigureError::Train {
        model: kind.name(),
        cause: Box::new(cause),
    };
    let dir = tempfile::tempdir().map_err(write_error(&std::env::temp_dir()))?;
    let mut cfg = cfg;
    cfg.out_dir = Some(dir.path().to_path_buf());
    cfg.sample_every = 0;
    let mut grid = None;
    let mut test = Vec::new();
    let mut steps = Vec::new();
    let mut epochs = Vec::new();
    let mut last_log = std::time::Instant::now();
    let never = std::sync::atomic::AtomicBool::new(false);
    train::train(cfg, split.clone(), None, &never, |ev| match ev {
        TrainEvent::Samples { grid: g, .. } => grid = Some(g.clone()),
        TrainEvent::Step { step, metrics, .. } => steps.push((*step, metrics.clone())),
        TrainEvent::Epoch { epoch, test: t, .. } => {
            test = t.clone();
            epochs.push((*epoch, t.clone()));
            if last_log.elapsed().as_secs() >= 10 {
                last_log = std::time::Instant::now();
                log(&format!("  {} epoch {}", kind.name(), epoch + 1));
            }
        }
        _ => {}
    })
    .map_err(train_error)?;
    let (model, _) = train::load_model(dir.path()).map_err(train_error)?;
    Ok(Trained {
        model,
        grid: grid.ok_or(FigureError::NoGrid { model: kind.name() })?,
        test,
        steps,
        epochs,
    })
}

fn run_config(kind: ModelKind, epochs: usize, batch: usize, quick: bool, seed: u64) -> TrainConfig {
    let mut c = TrainConfig::new(NeuralConfig::new(kind));
    c.epochs = if quick { 1 } else { epochs };
    c.batch_size = batch;
    c.seed = seed;
    if quick {
        c.max_steps = Some(2);
        c.eval_batches = Some(1);
        c.model.iw_samples = 2;
    }
    c
}

fn save(
    grid: &Grid,
    dir: &Path,
    name: &str,
    scale: usize,
    written: &mut Vec<PathBuf>,
) -> Result<()> {
    let p = dir.join(name);
    grid.upscale(scale).save_png(&p)?;
    written.push(p);
    Ok(())
}

/// Decodes the path between two codes from `seed`: row 1 linear, row 2 spherical.
fn interpolation(model: &dyn Model, seed: u64, steps: usize) -> Result<Grid> {
    let latent = model.config().latent_dim;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let ends = neural::normal(2, latent, &mut rng, &Device::Cpu)?;
    let imgs = neural::interpolate::images(model, &ends, steps, None)?;
    let (n, c, h, w) = imgs.dims4()?;
    let v = imgs.flatten_all()?.to_vec1::<f32>()?;
    // One column per step: row 1 the linear path, row 2 the spherical one.
    Ok(Grid::from_f32(&v, n, c, h, w, steps, model.pixel_scale()))
}

/// The same trained weights as `model`, decoding draws from N(0, I) as they are: the VAE
/// sampled from its prior, as the report samples it.
fn with_prior(model: &dyn Model, seed: u64) -> Result<Box<dyn Model>> {
    let mut cfg = model.config().clone();
    cfg.code_sampling = neural::CodeSampling::StandardNormal;
    let prior = neural::build(&cfg, model.shape(), model.num_classes(), &Device::Cpu, seed)
        .map_err(|e| FigureError::Train {
            model: cfg.kind.name(),
            cause: Box::new(e.into()),
        })?;
    {
        let from = model.varmap().data().lock().expect("varmap lock");
        let to = prior.varmap().data().lock().expect("varmap lock");
        for (name, var) in to.iter() {
            if let Some(v) = from.get(name) {
                var.set(v.as_tensor())?;
            }
        }
    }
    Ok(prior)
}

/// The 2-D codes (the mean, for the VAE) of every test digit.
fn codes_2d(model: &dyn Model, split: &Split) -> Result<Vec<Vec<f32>>> {
    let idx: Vec<usize> = (0..split.test.len()).collect();
    let batch = split
        .test
        .batch_of(&idx, &PixelScale::ZeroOne.table(), &Device::Cpu)?;
    Ok(model
        .encode(&batch.images)?
        .ok_or_else(|| candle_core::Error::Msg("the model has no encoder".into()))?
        .to_vec2::<f32>()?)
}

/// One row of the 2-D codes' extents: each coordinate's range and the mean, so that the
/// book can say how large a region each model's codes fill without reading it off a plot.
fn code_extent_row(name: &str, epochs: usize, codes: &[Vec<f32>]) -> String {
    let axis = |i: usize| {
        let (lo, hi) = codes
            .iter()
            .map(|c| c[i] as f64)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            });
        let mean = codes.iter().map(|c| c[i] as f64).sum::<f64>() / codes.len().max(1) as f64;
        (format!("{lo:.1} to {hi:.1} ({:.1})", hi - lo), mean)
    };
    let ((x, mx), (y, my)) = (axis(0), axis(1));
    format!("| {name} | {epochs} | {x} | {y} | ({mx:.1}, {my:.1}) |\n")
}

/// A scatter of 2-D codes coloured by digit, with axes, and the digits' legend in a column
/// on the right so that it hides no point.
fn latent_panel(
    area: &plot::Area<'_>,
    title: &str,
    codes: &[Vec<f32>],
    labels: &[u32],
) -> plot::DrawResult {
    use plotters::prelude::*;
    area.fill(&WHITE)?;
    let (w, _) = area.dim_in_pixel();
    let (chart_area, legend) = area.split_horizontally(w.saturating_sub(46));
    let x = plot::padded_range(codes.iter().map(|c| c[0] as f64));
    let y = plot::padded_range(codes.iter().map(|c| c[1] as f64));
    let mut chart = ChartBuilder::on(&chart_area)
        .caption(title, text(14))
        .margin(8)
        .x_label_area_size(36)
        .y_label_area_size(44)
        .build_cartesian_2d(x.0..x.1, y.0..y.1)?;
    plot::draw_axes(&mut chart, "z₁", "z₂", true)?;
    for digit in 0..10u32 {
        let colour = rgb(DIGIT_COLOURS[digit as usize]);
        chart.draw_series(
            codes
                .iter()
                .zip(labels)
                .filter(|(_, l)| **l == digit)
                .map(|(c, _)| Circle::new((c[0] as f64, c[1] as f64), 2, colour.filled())),
        )?;
    }
    legend.draw(&Text::new("digit", (2, 34), text(12)))?;
    for (digit, &colour) in DIGIT_COLOURS.iter().enumerate() {
        let y = 58 + 18 * digit as i32;
        legend.draw(&Circle::new((8, y), 4, rgb(colour).filled()))?;
        legend.draw(&Text::new(digit.to_string(), (18, y - 7), text(13)))?;
    }
    Ok(())
}

/// Figure 3.9: where the 2-D autoencoder (left) and the 2-D VAE (right, the posterior means)
/// put the test digits. The VAE's KL term pulls its codes towards N(0, I), so they fill a
/// round region around the origin that the decoder has learnt to read.
fn latent_figure(panels: &[(&str, Vec<Vec<f32>>)], labels: &[u32], size: usize) -> Result<Grid> {
    let drawn = panels
        .iter()
        .map(|(title, codes)| {
            plot::draw(size + 46, size, |area| {
                latent_panel(area, title, codes, labels)
            })
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(plot::side_by_side(&drawn, 8))
}

/// Where figures go and what they are made from, shared by the groups.
struct Figures<'a> {
    cfg: &'a FigureConfig,
    split: Split,
    written: Vec<PathBuf>,
    /// Rows of the likelihood table, from the classical models and the VAE.
    table: Vec<String>,
    log: &'a mut dyn Progress,
}

impl Figures<'_> {
    fn save(&mut self, grid: &Grid, name: &str, scale: usize) -> Result<()> {
        save(grid, &self.cfg.out, name, scale, &mut self.written)
    }

    /// Saves an image grid enlarged `scale` times inside `frame`'s title and labels.
    fn save_framed(&mut self, grid: &Grid, name: &str, scale: usize, frame: &Frame) -> Result<()> {
        let (cols, rows) = grid.tiles.map_or((1, 1), |t| (t.cols, t.rows));
        let framed = plot::framed(&grid.upscale(scale), cols, rows, frame)?;
        self.save(&framed, name, 1)
    }

    fn train(&mut self, kind: ModelKind, epochs: usize, batch: usize) -> Result<Trained> {
        let c = run_config(kind, epochs, batch, self.cfg.quick, self.cfg.seed);
        train_model(c, &self.split, &mut |m: &str| self.log.line(m))
    }

    /// The grid of a default run, titled with its budget: `what` says what a cell is.
    fn save_run(&mut self, run: &Trained, kind: ModelKind, name: &str, what: &str) -> Result<()> {
        let (epochs, batch) = train::default_budget(kind);
        let classes = run.model.num_classes();
        let frame = Frame {
            title: format!(
                "{}: {what} after the default run ({epochs} epochs, batch {batch}, seed {})",
                kind.name(),
                self.cfg.seed
            ),
            columns: (0..classes).map(|c| c.to_string()).collect(),
            footer: if classes > 0 {
                "column: the digit asked for; each cell has its own z".into()
            } else {
                String::new()
            },
            ..Frame::default()
        };
        self.save_framed(&run.grid, name, 2, &frame)
    }

    /// 64 samples of `model` from the codes a run's sample grid uses (the fixed noise of
    /// `seed`), framed with `title`.
    fn save_samples(&mut self, model: &dyn Model, name: &str, title: String) -> Result<()> {
        let mut rng = crate::util::Stream::FixedNoise.rng(self.cfg.seed);
        let z = neural::normal(64, model.config().latent_dim, &mut rng, &Device::Cpu)?;
        let imgs = model.generate(&z, None)?;
        let (n, c, h, w) = imgs.dims4()?;
        let v = imgs.flatten_all()?.to_vec1::<f32>()?;
        let grid = Grid::from_f32(&v, n, c, h, w, 8, model.pixel_scale());
        let frame = Frame {
            title,
            ..Frame::default()
        };
        self.save_framed(&grid, name, 2, &frame)
    }

    /// A latent path of `model` (rows: linear, spherical), framed with its end points.
    fn save_interpolation(&mut self, model: &dyn Model, seed: u64, name: &str) -> Result<()> {
        let steps = 10;
        let path = interpolation(model, seed, steps)?;
        let frame = Frame {
            title: format!(
                "{}: decoding the path from z₀ to z₁ in {steps} steps",
                model.config().kind.name()
            ),
            columns: (0..steps)
                .map(|i| match i {
                    0 => "z₀".to_string(),
                    i if i == steps - 1 => "z₁".to_string(),
                    i => format!("{:.2}", i as f64 / (steps - 1) as f64),
                })
                .collect(),
            rows: vec!["linear".into(), "spherical".into()],
            footer: if model.code_mixture().is_some() {
                "z₀, z₁: the codes two draws from N(0, I) map to through the code mixture; column: the fraction t of the way".into()
            } else {
                "z₀, z₁ ~ N(0, I); column: the fraction t of the way".into()
            },
        };
        self.save_framed(&path, name, 3, &frame)
    }

    /// Figures 3.2, 3.4 and 3.5.
    fn two_d(&mut self) -> Result<()> {
        self.log.line("figures 3.2, 3.4, 3.5: 2-D demonstrations");
        let seed = self.cfg.seed;
        self.save(
            &two_d::boundary_figure(seed, 360)?,
            "fig-3-2-boundary.png",
            1,
        )?;
        self.save(
            &two_d::sigmoid_figure(seed, 560, 340)?,
            "fig-3-4-gda-sigmoid.png",
            1,
        )?;
        let clusters = two_d::cluster_figure(seed, 420)?.0;
        self.save(&clusters, "fig-3-5-clusters.png", 1)
    }

    /// The classical models' samples, their rows of the likelihood table, and the EM trace.
    fn classical(&mut self) -> Result<()> {
        let seed = self.cfg.seed;
        let mut em_trace = Vec::new();
        for (model, file) in [
            (ImageModel::NaiveBayes, Some("fig-3-2-naive-bayes.png")),
            (ImageModel::GaussianNb, None),
            (ImageModel::Lda, Some("fig-3-3-gda-samples.png")),
            (ImageModel::Qda, None),
            (ImageModel::Gmm, None),
            (ImageModel::GmmPerClass, Some("fig-3-6-gmm-samples.png")),
        ] {
            self.log.line(&format!("fitting {}", model.name()));
            let mut c = ClassicalConfig::new(model);
            c.seed = seed;
            if self.cfg.quick {
                c.train_limit = Some(400);
                c.max_iter = 3;
            }
            let record = model == ImageModel::Gmm;
            let (fitted, report) = catalog::fit(&c, &self.split, |_, ll| {
                if record {
                    em_trace.push(ll)
                }
            })?;
            self.table.push(format!(
                "| {} ({}) | {} | {:.1} | {:.3} |",
                model.name(),
                model.section(),
                if model == ImageModel::NaiveBayes {
                    "binarised at 0.5"
                } else {
                    "8-bit, dequantised"
                },
                report.test_nll.nats_per_image,
                report.test_nll.bits_per_dim
            ));
            if let Some(file) = file {
                let grid = fitted.sample_grid(6, [1, 28, 28], seed);
                let frame = Frame {
                    title: format!("{}: 6 samples of each class (seed {seed})", model.name()),
                    columns: (0..fitted.grid_columns()).map(|c| c.to_string()).collect(),
                    footer: "column: the class sampled from".into(),
                    ..Frame::default()
                };
                self.save_framed(&grid, file, 2, &frame)?;
            }
        }
        let (_, clusters) = crate::classical::demo::fit_clusters(seed)?;
        let c = ClassicalConfig::new(ImageModel::Gmm);
        let digits = format!(
            "{} components, {:?} covariances, on the digits",
            c.components, c.gmm_covariance
        )
        .to_lowercase();
        let trace = two_d::em_trace_figure(&clusters.history, &em_trace, &digits)?;
        self.save(&trace, "fig-3-5-em-trace.png", 1)
    }

    /// Figure 3.8 (reconstructions) and 3.9 (the codes of a 2-D autoencoder beside those of a
    /// 2-D VAE).
    fn autoencoder(&mut self) -> Result<()> {
        self.log.line(
            "training the autoencoder (figure 3.8), a 2-D autoencoder and a 2-D VAE (figure 3.9)",
        );
        let (epochs, batch) = train::default_budget(ModelKind::Autoencoder);
        let ae = self.train(ModelKind::Autoencoder, epochs, batch)?;
        let rows = ae.grid.tiles.map_or(0, |t| t.rows);
        let frame = Frame {
            title: format!(
                "autoencoder: test digits and their reconstructions ({epochs} epochs, seed {})",
                self.cfg.seed
            ),
            rows: (0..rows)
                .map(|r| if r % 2 == 0 { "input" } else { "output" }.to_string())
                .collect(),
            ..Frame::default()
        };
        self.save_framed(&ae.grid, "fig-3-8-autoencoder.png", 2, &frame)?;
        let k = ae.model.config().code_components;
        self.save_samples(
            ae.model.as_ref(),
            "fig-3-10-autoencoder-samples.png",
            format!(
                "autoencoder: 64 samples, codes from a mixture of {k} Gaussians fitted to the training codes ({epochs} epochs, seed {})",
                self.cfg.seed
            ),
        )?;
        let mut panels = Vec::new();
        let mut extents = String::from(
            "| 2-d code of | epochs | first coordinate: min to max (width) | second coordinate: min to max (height) | mean |\n|---|---|---|---|---|\n",
        );
        for (kind, title, name) in [
            (
                ModelKind::Autoencoder,
                "autoencoder: the code",
                "the autoencoder",
            ),
            (
                ModelKind::Vae,
                "VAE: the mean of q(z | x)",
                "the VAE (posterior means)",
            ),
        ] {
            let (epochs, batch) = train::default_budget(kind);
            let mut flat = run_config(kind, epochs, batch, self.cfg.quick, self.cfg.seed);
            flat.model.latent_dim = 2;
            // Only the codes are drawn: no mixture to fit.
            flat.model.code_sampling = neural::CodeSampling::StandardNormal;
            let flat = train_model(flat, &self.split, &mut |m: &str| self.log.line(m))?;
            let codes = codes_2d(flat.model.as_ref(), &self.split)?;
            extents.push_str(&code_extent_row(name, epochs, &codes));
            panels.push((title, codes));
        }
        extents.push_str(&format!(
            "\nThe codes of the {} test digits in figure 3.9. {}\n",
            self.split.test.len(),
            self.provenance()
        ));
        self.write_generated("latent-extents.md", &extents)?;
        let labels = self.split.test.labels().unwrap_or(&[]).to_vec();
        let scatter = latent_figure(&panels, &labels, 400)?;
        self.save(&scatter, "fig-3-9-ae-latent.png", 1)
    }

    /// Figure 3.11, the VAE's interpolation and its rows of the likelihood table, from the
    /// default run; and figure 3.12, the three KL schedules side by side.
    fn vae(&mut self) -> Result<()> {
        self.log.line("training the VAE (figure 3.11)");
        let (epochs, batch) = train::default_budget(ModelKind::Vae);
        let vae = self.train(ModelKind::Vae, epochs, batch)?;
        self.save_run(
            &vae,
            ModelKind::Vae,
            "fig-3-11-vae-samples.png",
            &format!(
                "64 samples, codes from a mixture of {} Gaussians fitted to the training codes",
                vae.model.config().code_components
            ),
        )?;
        self.save_interpolation(
            vae.model.as_ref(),
            self.cfg.seed + 1,
            "fig-5-interpolation-vae.png",
        )?;
        let prior = with_prior(vae.model.as_ref(), self.cfg.seed)?;
        self.save_samples(
            prior.as_ref(),
            "fig-3-11-vae-prior-samples.png",
            "VAE: 64 samples, z ~ N(0, I) decoded as it is (the weights of figure 3.11)".into(),
        )?;
        let metric = |m: &Metrics, k| neural::metric(m, k).unwrap_or(f64::NAN);
        let bits = |nats: f64| nats / (784.0 * std::f64::consts::LN_2);
        let (elbo, iw) = (
            metric(&vae.test, Metric::NegElbo),
            metric(&vae.test, Metric::IwNll),
        );
        self.table.push(format!(
            "| VAE negative ELBO (3.7) | binarised at 0.5 | {elbo:.1} | {:.3} |",
            bits(elbo)
        ));
        let k = vae.model.config().iw_samples;
        self.table.push(format!(
            "| VAE importance-weighted, k = {k} (3.7) | binarised at 0.5 | {iw:.1} | {:.3} |",
            bits(iw)
        ));
        self.kl_schedules(vae)
    }

    /// Figure 3.12: test −ELBO per epoch under the three KL schedules, from the same seed and
    /// budget (`standard` is the default run already trained).
    fn kl_schedules(&mut self, standard: Trained) -> Result<()> {
        use crate::neural::KlSchedule;
        self.log
            .line("training the VAE without warm-up and with the report's schedule (figure 3.12)");
        let (epochs, batch) = train::default_budget(ModelKind::Vae);
        let warmup = standard.model.config().warmup_steps;
        let iw = standard.model.config().iw_samples;
        let mut series = Vec::new();
        let mut table = format!(
            "| `--kl-schedule` | loss | test −ELBO after epoch 1 | test −ELBO after {epochs} | test KL | IW NLL, k = {iw} |\n|---|---|---|---|---|---|\n"
        );
        for (schedule, colour) in [
            (KlSchedule::None, PALETTE[0]),
            (KlSchedule::Standard, PALETTE[1]),
            (KlSchedule::Report, PALETTE[2]),
        ] {
            let run = if schedule == KlSchedule::Standard {
                None
            } else {
                let mut c =
                    run_config(ModelKind::Vae, epochs, batch, self.cfg.quick, self.cfg.seed);
                c.model.kl_schedule = schedule;
                // The figure compares training curves: no code mixture to fit.
                c.model.code_sampling = neural::CodeSampling::StandardNormal;
                Some(train_model(c, &self.split, &mut |m: &str| {
                    self.log.line(m)
                })?)
            };
            let run = run.as_ref().unwrap_or(&standard);
            let points: Vec<(f64, f64)> = run
                .epochs
                .iter()
                .map(|(e, m)| {
                    (
                        (e + 1) as f64,
                        neural::metric(m, Metric::NegElbo).unwrap_or(f64::NAN),
                    )
                })
                .collect();
            let last = points.last().map_or(f64::NAN, |p| p.1);
            let final_metric = |k| neural::metric(&run.test, k).unwrap_or(f64::NAN);
            table.push_str(&format!(
                "| `{}` | {} | {:.1} | {:.1} | {:.1} | {:.1} |\n",
                crate::util::cli_name(&schedule),
                schedule_name(schedule),
                run.epochs
                    .first()
                    .and_then(|(_, m)| neural::metric(m, Metric::NegElbo))
                    .unwrap_or(f64::NAN),
                last,
                final_metric(Metric::Kl),
                final_metric(Metric::IwNll),
            ));
            series.push(plot::Series {
                label: format!("{} (final {last:.1} nats)", schedule_name(schedule)),
                points,
                colour,
            });
        }
        // The first epoch sits far above the rest; the axis stops at the highest curve's
        // second epoch so that the curves' ends can be told apart.
        let floor = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .filter(|v| v.is_finite())
            .fold(f64::INFINITY, f64::min);
        let top = series
            .iter()
            .filter_map(|s| s.points.get(1).or(s.points.first()).map(|p| p.1))
            .filter(|v| v.is_finite())
            .fold(f64::NEG_INFINITY, f64::max);
        let chart = plot::LineChart {
            title: format!(
                "VAE: test −ELBO per epoch under each KL schedule (warm-up {warmup} steps, seed {})",
                self.cfg.seed
            ),
            x_label: "epoch".into(),
            y_label: "test −ELBO (nats per image)".into(),
            series,
            y_range: (floor.is_finite() && top > floor)
                .then_some((floor - 0.05 * (top - floor), top + 0.05 * (top - floor))),
            references: Vec::new(),
        };
        self.save(&chart.render(640, 380)?, "fig-3-12-kl-schedules.png", 1)?;
        table.push_str(&format!(
            "\nTest metrics in nats per image, batch {batch}, warm-up {warmup} steps. {}\n",
            self.provenance()
        ));
        self.write_generated("kl-schedules.md", &table)
    }

    /// Figure 4.3 and the GAN's interpolation, from the default run; and figure 4.2, the
    /// saturating against the non-saturating generator loss over the first steps.
    fn gan(&mut self) -> Result<()> {
        self.log.line("training the GAN (figure 4.3)");
        let (epochs, batch) = train::default_budget(ModelKind::Gan);
        let gan = self.train(ModelKind::Gan, epochs, batch)?;
        self.save_run(
            &gan,
            ModelKind::Gan,
            "fig-4-3-gan-samples.png",
            "64 samples, one z per cell",
        )?;
        self.save_interpolation(
            gan.model.as_ref(),
            self.cfg.seed + 2,
            "fig-5-interpolation-gan.png",
        )?;
        self.generator_losses()
    }

    /// Figure 4.2: D(G(z)) and the norm of the generator's gradient over the first 1,000
    /// steps of the report's MLP GAN (no clusters, no dropout, no average, Adam at 2e-4) with k = 5 discriminator steps
    /// per generator step, with each generator loss, from the same initial weights. With
    /// k = 1 and the default recipe D never gets confident this early and the two losses
    /// behave alike; k = 5 lets D win, which is where they differ.
    fn generator_losses(&mut self) -> Result<()> {
        use crate::neural::GeneratorLoss;
        self.log
            .line("training the GAN with each generator loss (figure 4.2)");
        let steps = if self.cfg.quick { 2 } else { 1000 };
        let k = 5;
        let (_, batch) = train::default_budget(ModelKind::Gan);
        let mut d_fake = Vec::new();
        let mut grad = Vec::new();
        let early = steps.min(100) as usize;
        let mut table = format!(
            "| `--g-loss` | mean D(G(z)), steps 1–{early} | mean ‖∇G‖, steps 1–{early} | mean D(G(z)), last 100 steps | mean ‖∇G‖, last 100 steps |\n|---|---|---|---|---|\n"
        );
        for (loss, name, colour) in [
            (
                GeneratorLoss::Saturating,
                "saturating: minimise log(1 − D(G(z)))",
                PALETTE[0],
            ),
            (
                GeneratorLoss::NonSaturating,
                "non-saturating: minimise −log D(G(z))",
                PALETTE[1],
            ),
        ] {
            let epochs = (steps as usize * batch).div_ceil(self.split.train.len()) + 1;
            let mut c = run_config(ModelKind::Gan, epochs, batch, self.cfg.quick, self.cfg.seed);
            c.max_steps = Some(steps);
            c.model.g_loss = loss;
            c.model.k = k;
            c.model.d_dropout = 0.0;
            c.model.ema_decay = 0.0;
            c.model.clusters = 0;
            c.model.lr = neural::REPORT_GAN_LR;
            let run = train_model(c, &self.split, &mut |m: &str| self.log.line(m))?;
            let series = |k: Metric| plot::Series {
                label: name.to_string(),
                points: run
                    .steps
                    .iter()
                    .filter_map(|(s, m)| neural::metric(m, k).map(|v| (*s as f64, v)))
                    .collect(),
                colour,
            };
            let (d, g) = (series(Metric::DFake), series(Metric::GGradNorm));
            // Means over a range of steps, of the finite values (‖∇G‖ is NaN until the first
            // generator step).
            let mean = |s: &plot::Series, first: f64, last: f64| {
                let v: Vec<f64> = s
                    .points
                    .iter()
                    .filter(|p| p.0 >= first && p.0 <= last && p.1.is_finite())
                    .map(|p| p.1)
                    .collect();
                v.iter().sum::<f64>() / v.len().max(1) as f64
            };
            let (end, early) = (steps as f64, early as f64);
            table.push_str(&format!(
                "| `{}` | {:.3} | {:.3} | {:.3} | {:.3} |\n",
                crate::util::cli_name(&loss),
                mean(&d, 1.0, early),
                mean(&g, 1.0, early),
                mean(&d, end - 99.0, end),
                mean(&g, end - 99.0, end),
            ));
            d_fake.push(d);
            grad.push(g);
        }
        let left = plot::LineChart {
            title: format!("D(G(z)) on the generator's samples, k = {k}"),
            x_label: "training step".into(),
            y_label: "mean D(G(z))".into(),
            series: d_fake,
            y_range: Some((0.0, 1.0)),
            references: vec![(0.5, "½: D cannot tell".into())],
        };
        let right = plot::LineChart {
            title: "the generator's gradient".into(),
            x_label: "training step".into(),
            y_label: "‖∇ generator loss‖ (all of G's weights)".into(),
            series: grad,
            y_range: None,
            references: Vec::new(),
        };
        let figure = plot::side_by_side(&[left.render(520, 360)?, right.render(520, 360)?], 8);
        self.save(&figure, "fig-4-2-generator-losses.png", 1)?;
        table.push_str(&format!(
            "\nThe report's MLP GAN (no clusters, no dropout in D, no average of G, Adam at 2e-4), batch {batch}, k = {k} discriminator steps per generator step, {steps} steps from the same initial weights; ‖∇G‖ at a step is that of the latest generator step. {}\n",
            self.provenance()
        ));
        self.write_generated("generator-losses.md", &table)
    }

    /// Figure 4.5 and the DCGAN's interpolation, from the default run, so that they show
    /// what a user's first run ends with.
    fn dcgan(&mut self) -> Result<()> {
        self.log.line("training the DCGAN (figure 4.5)");
        let (epochs, batch) = train::default_budget(ModelKind::Dcgan);
        let dcgan = self.train(ModelKind::Dcgan, epochs, batch)?;
        self.save_run(
            &dcgan,
            ModelKind::Dcgan,
            "fig-4-5-dcgan-samples.png",
            "64 samples, one z per cell",
        )?;
        self.save_interpolation(
            dcgan.model.as_ref(),
            self.cfg.seed + 3,
            "fig-5-interpolation-dcgan.png",
        )
    }

    /// Figure 4.7, from the default run.
    fn cgan(&mut self) -> Result<()> {
        self.log.line("training the conditional GAN (figure 4.7)");
        let (epochs, batch) = train::default_budget(ModelKind::Cgan);
        let cgan = self.train(ModelKind::Cgan, epochs, batch)?;
        self.save_run(
            &cgan,
            ModelKind::Cgan,
            "fig-4-7-cgan-samples.png",
            "samples by label",
        )
    }

    /// Figure 4.8, from the conditional DCGAN's default run.
    fn cdcgan(&mut self) -> Result<()> {
        self.log.line("training the conditional DCGAN (figure 4.8)");
        let (epochs, batch) = train::default_budget(ModelKind::Cdcgan);
        let cdcgan = self.train(ModelKind::Cdcgan, epochs, batch)?;
        self.save_run(
            &cdcgan,
            ModelKind::Cdcgan,
            "fig-4-8-cdcgan-samples.png",
            "samples by label",
        )
    }

    /// Writes `md` as `name` in `generated/`, beside the figures' folder, for the book to
    /// include: numbers in the prose come from the run that drew the figures.
    fn write_generated(&mut self, name: &str, md: &str) -> Result<()> {
        let generated = self
            .cfg
            .out
            .parent()
            .unwrap_or(Path::new("."))
            .join("generated");
        std::fs::create_dir_all(&generated).map_err(write_error(&generated))?;
        let p = generated.join(name);
        crate::util::atomic_write(&p, md.as_bytes()).map_err(write_error(&p))?;
        self.written.push(p);
        Ok(())
    }

    /// A note under a generated table: where it came from.
    fn provenance(&self) -> String {
        format!(
            "Seed {}; {} training and {} test digits; written by `genmod figures`{}.",
            self.cfg.seed,
            self.split.train.len(),
            self.split.test.len(),
            if self.cfg.quick {
                " (quick configuration: not meaningful numbers)"
            } else {
                ""
            }
        )
    }

    /// The likelihood table of the conclusions, beside the figures' folder.
    fn likelihood_table(&mut self) -> Result<()> {
        let cfg = self.cfg;
        let mut md = String::from(
            "| model | pixels | test NLL (nats/image) | bits/dim |\n|---|---|---|---|\n",
        );
        for row in &self.table {
            md.push_str(row);
            md.push('\n');
        }
        md.push_str(&format!(
            "\nSeed {}; {} training and {} test digits{}. For 8-bit pixels the NLL is the bound −log p(dequantised x) + 784·ln 256 nats.\n",
            cfg.seed,
            self.split.train.len(),
            self.split.test.len(),
            if cfg.quick { " (quick configuration: not meaningful numbers)" } else { "" }
        ));
        self.write_generated("likelihoods.md", &md)
    }
}

/// Writes every figure and the likelihood table; returns the files written.
/// `progress` gets the log lines and counts the groups of figures done.
pub fn generate(cfg: &FigureConfig, progress: &mut dyn Progress) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(&cfg.out).map_err(write_error(&cfg.out))?;
    let wants = |g: FigureGroup| cfg.only.is_empty() || cfg.only.contains(&g);
    let groups: Vec<FigureGroup> = <FigureGroup as clap::ValueEnum>::value_variants()
        .iter()
        .copied()
        .filter(|g| wants(*g))
        .collect();
    let table = wants(FigureGroup::Classical) && wants(FigureGroup::Vae);
    let total = groups.len() as u64 + u64::from(table);
    progress.advance(0, total);
    let mut figures = Figures {
        cfg,
        split: mnist::embedded(),
        written: Vec::new(),
        table: Vec::new(),
        log: progress,
    };
    for (done, group) in groups.into_iter().enumerate() {
        match group {
            FigureGroup::TwoD => figures.two_d(),
            FigureGroup::Classical => figures.classical(),
            FigureGroup::Autoencoder => figures.autoencoder(),
            FigureGroup::Vae => figures.vae(),
            FigureGroup::Gan => figures.gan(),
            FigureGroup::Dcgan => figures.dcgan(),
            FigureGroup::Cgan => figures.cgan(),
            FigureGroup::Cdcgan => figures.cdcgan(),
        }?;
        figures.log.advance(done as u64 + 1, total);
    }
    // The table needs both the classical rows and the VAE's.
    if table {
        figures.likelihood_table()?;
        figures.log.advance(total, total);
    }
    Ok(figures.written)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The extents are each coordinate's minimum, maximum and width and the mean, by hand:
    /// x in {-1, 3, 1} spans 4 around a mean of 1, y in {2, 2, 5} spans 3 around 3.
    #[test]
    fn a_code_extent_row_gives_the_ranges_and_the_mean() {
        let codes = vec![vec![-1.0, 2.0], vec![3.0, 2.0], vec![1.0, 5.0]];
        assert_eq!(
            code_extent_row("m", 7, &codes),
            "| m | 7 | -1.0 to 3.0 (4.0) | 2.0 to 5.0 (3.0) | (1.0, 3.0) |\n"
        );
    }
}
