//! `genmod figures`: regenerates every figure of the book, and the likelihood table of its
//! conclusions, from the embedded digits. Classical models are fitted; neural models are
//! trained with the trainer and then reloaded from their final checkpoint, so that codes
//! and interpolations come from exactly the model that was saved.

use crate::classical::catalog::{self, ClassicalConfig, ImageModel};
use crate::classical::demo::{self, PALETTE};
use crate::classical::gda::GdaParams;
use crate::classical::{ClassConditional, ModelError};
use crate::util::Progress;

use crate::data::{PixelScale, Split, mnist};
use crate::neural::{self, Metric, Metrics, Model, ModelKind, NeuralConfig};
use crate::render::Grid;
use crate::render::canvas::{Canvas, mix};
use crate::render::grid::PngError;
use crate::train::{self, TrainConfig, TrainError, TrainEvent};
use candle_core::{Device, Tensor};
use faer::Mat;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

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
    let mut last_log = std::time::Instant::now();
    let never = std::sync::atomic::AtomicBool::new(false);
    train::train(cfg, split.clone(), None, &never, |ev| match ev {
        TrainEvent::Samples { grid: g, .. } => grid = Some(g.clone()),
        TrainEvent::Epoch { epoch, test: t, .. } => {
            test = t.clone();
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
    let ends = neural::normal(2, latent, &mut rng, &Device::Cpu)?.to_vec2::<f32>()?;
    let mut codes = Vec::new();
    for spherical in [false, true] {
        for z in neural::interpolate::path(&ends[0], &ends[1], steps, spherical) {
            codes.extend(z);
        }
    }
    let z = Tensor::from_vec(codes, (2 * steps, latent), &Device::Cpu)?;
    let imgs = model.generate(&z, None)?;
    let (n, c, h, w) = imgs.dims4()?;
    let v = imgs.flatten_all()?.to_vec1::<f32>()?;
    // One column per step: row 1 the linear path, row 2 the spherical one.
    Ok(Grid::from_f32(&v, n, c, h, w, steps, model.pixel_scale()))
}

/// A scatter of 2-D codes of the test digits, coloured by class.
fn latent_scatter(model: &dyn Model, split: &Split, size: usize) -> Result<Grid> {
    let n = split.test.len();
    let idx: Vec<usize> = (0..n).collect();
    let batch = split
        .test
        .batch_of(&idx, &PixelScale::ZeroOne.table(), &Device::Cpu)?;
    let codes = model
        .encode(&batch.images)?
        .ok_or_else(|| candle_core::Error::Msg("the model has no encoder".into()))?
        .to_vec2::<f32>()?;
    let labels = split.test.labels().unwrap_or(&[]);
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for c in &codes {
        x0 = x0.min(c[0] as f64);
        x1 = x1.max(c[0] as f64);
        y0 = y0.min(c[1] as f64);
        y1 = y1.max(c[1] as f64);
    }
    let (mx, my) = ((x1 - x0).max(1e-6) * 0.05, (y1 - y0).max(1e-6) * 0.05);
    let mut canvas = Canvas::new(size, size, (x0 - mx, x1 + mx), (y0 - my, y1 + my));
    for (c, &y) in codes.iter().zip(labels) {
        canvas.point(c[0] as f64, c[1] as f64, 1, DIGIT_COLOURS[y as usize % 10]);
    }
    // A legend: one swatch per digit along the top, in order 0..9.
    for (d, colour) in DIGIT_COLOURS.iter().enumerate() {
        for yy in 2..10 {
            for xx in 0..10 {
                canvas.set(4 + d * 14 + xx, yy, *colour);
            }
        }
    }
    Ok(canvas.grid)
}

/// P(y = 1 | x) of shared-covariance GDA along a line through both class means.
fn sigmoid_figure(seed: u64, size: usize) -> Result<Grid> {
    let (x, y) = demo::two_classes(seed, 150);
    let m = GdaParams::default().fit(x.as_ref(), &y, 2)?;
    let (m0, m1) = (
        (m.means[(0, 0)], m.means[(0, 1)]),
        (m.means[(1, 0)], m.means[(1, 1)]),
    );
    let at = |t: f64| {
        Mat::from_fn(1, 2, |_, j| {
            if j == 0 {
                m0.0 + t * (m1.0 - m0.0)
            } else {
                m0.1 + t * (m1.1 - m0.1)
            }
        })
    };
    let mut c = Canvas::new(size * 3 / 2, size, (-1.0, 2.0), (-0.05, 1.05));
    let grey = [200, 200, 200];
    c.polyline(&[(-1.0, 0.5), (2.0, 0.5)], grey);
    c.polyline(&[(-1.0, 0.0), (2.0, 0.0)], grey);
    c.polyline(&[(-1.0, 1.0), (2.0, 1.0)], grey);
    c.polyline(&[(0.0, -0.05), (0.0, 1.05)], mix(PALETTE[0], [255; 3], 0.5));
    c.polyline(&[(1.0, -0.05), (1.0, 1.05)], mix(PALETTE[1], [255; 3], 0.5));
    let pts: Vec<(f64, f64)> = (0..=300)
        .map(|i| {
            let t = -1.0 + 3.0 * i as f64 / 300.0;
            (t, m.predict_log_proba(at(t).as_ref())[(0, 1)].exp())
        })
        .collect();
    c.polyline(&pts, [0, 0, 0]);
    Ok(c.grid)
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

    fn train(&mut self, kind: ModelKind, epochs: usize, batch: usize) -> Result<Trained> {
        let c = run_config(kind, epochs, batch, self.cfg.quick, self.cfg.seed);
        train_model(c, &self.split, &mut |m: &str| self.log.line(m))
    }

    /// Figures 3.2, 3.4 and 3.5.
    fn two_d(&mut self) -> Result<()> {
        self.log.line("figures 3.2, 3.4, 3.5: 2-D demonstrations");
        let (quick, seed) = (self.cfg.quick, self.cfg.seed);
        let size = |full| if quick { 80 } else { full };
        self.save(
            &demo::boundary_figure(seed, size(320))?,
            "fig-3-2-boundary.png",
            1,
        )?;
        self.save(
            &sigmoid_figure(seed, size(240))?,
            "fig-3-4-gda-sigmoid.png",
            1,
        )?;
        let clusters = demo::cluster_figure(seed, size(320))?.0;
        self.save(&clusters, "fig-3-5-clusters.png", 1)
    }

    /// The classical models' samples and their rows of the likelihood table.
    fn classical(&mut self) -> Result<()> {
        let seed = self.cfg.seed;
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
            let (fitted, report) = catalog::fit(&c, &self.split, |_, _| {})?;
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
                self.save(&fitted.sample_grid(6, [1, 28, 28], seed), file, 2)?;
            }
        }
        Ok(())
    }

    /// Figure 3.8 (reconstructions) and 3.9 (the codes of a 2-D autoencoder).
    fn autoencoder(&mut self) -> Result<()> {
        self.log
            .line("training the autoencoder (figure 3.8) and a 2-D autoencoder (figure 3.9)");
        let ae = self.train(ModelKind::Autoencoder, 5, 128)?;
        self.save(&ae.grid, "fig-3-8-autoencoder.png", 2)?;
        let mut flat = run_config(
            ModelKind::Autoencoder,
            10,
            128,
            self.cfg.quick,
            self.cfg.seed,
        );
        flat.model.latent_dim = 2;
        let flat = train_model(flat, &self.split, &mut |m: &str| self.log.line(m))?;
        let size = if self.cfg.quick { 80 } else { 360 };
        let scatter = latent_scatter(flat.model.as_ref(), &self.split, size)?;
        self.save(&scatter, "fig-3-9-ae-latent.png", 1)
    }

    /// Figure 3.11, the VAE's interpolation and its rows of the likelihood table, from the
    /// default run.
    fn vae(&mut self) -> Result<()> {
        self.log.line("training the VAE (figure 3.11)");
        let (epochs, batch) = train::default_budget(ModelKind::Vae);
        let vae = self.train(ModelKind::Vae, epochs, batch)?;
        self.save(&vae.grid, "fig-3-11-vae-samples.png", 2)?;
        let path = interpolation(vae.model.as_ref(), self.cfg.seed + 1, 10)?;
        self.save(&path, "fig-5-interpolation-vae.png", 3)?;
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
        Ok(())
    }

    /// Figure 4.3 and the GAN's interpolation, from the default run.
    fn gan(&mut self) -> Result<()> {
        self.log.line("training the GAN (figure 4.3)");
        let (epochs, batch) = train::default_budget(ModelKind::Gan);
        let gan = self.train(ModelKind::Gan, epochs, batch)?;
        self.save(&gan.grid, "fig-4-3-gan-samples.png", 2)?;
        let path = interpolation(gan.model.as_ref(), self.cfg.seed + 2, 10)?;
        self.save(&path, "fig-5-interpolation-gan.png", 3)
    }

    /// Figure 4.5, from the default run, so that it shows what a user's first run ends with.
    fn dcgan(&mut self) -> Result<()> {
        self.log.line("training the DCGAN (figure 4.5)");
        let (epochs, batch) = train::default_budget(ModelKind::Dcgan);
        let dcgan = self.train(ModelKind::Dcgan, epochs, batch)?;
        self.save(&dcgan.grid, "fig-4-5-dcgan-samples.png", 2)
    }

    /// Figure 4.7, from the default run.
    fn cgan(&mut self) -> Result<()> {
        self.log.line("training the conditional GAN (figure 4.7)");
        let (epochs, batch) = train::default_budget(ModelKind::Cgan);
        let cgan = self.train(ModelKind::Cgan, epochs, batch)?;
        self.save(&cgan.grid, "fig-4-7-cgan-samples.png", 2)
    }

    /// Figure 4.8, from the conditional DCGAN's default run.
    fn cdcgan(&mut self) -> Result<()> {
        self.log.line("training the conditional DCGAN (figure 4.8)");
        let (epochs, batch) = train::default_budget(ModelKind::Cdcgan);
        let cdcgan = self.train(ModelKind::Cdcgan, epochs, batch)?;
        self.save(&cdcgan.grid, "fig-4-8-cdcgan-samples.png", 2)
    }

    /// The likelihood table of the conclusions, beside the figures' folder.
    fn likelihood_table(&mut self) -> Result<()> {
        let cfg = self.cfg;
        let generated = cfg.out.parent().unwrap_or(Path::new(".")).join("generated");
        std::fs::create_dir_all(&generated).map_err(write_error(&generated))?;
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
        let p = generated.join("likelihoods.md");
        crate::util::atomic_write(&p, md.as_bytes()).map_err(write_error(&p))?;
        self.written.push(p);
        Ok(())
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
