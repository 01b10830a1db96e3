//! `genmod figures`: regenerates every figure of the book, and the likelihood table of its
//! conclusions, from the embedded digits. Classical models are fitted; neural models are
//! trained with the trainer and then reloaded from their final checkpoint, so that codes
//! and interpolations come from exactly the model that was saved.

use crate::classical::ClassConditional;
use crate::classical::catalog::{self, ClassicalConfig, ImageModel};
use crate::classical::demo::{self, PALETTE};
use crate::classical::gda::GdaParams;

use crate::data::{PixelScale, Split, mnist};
use crate::neural::{self, Metric, Metrics, Model, ModelKind, NeuralConfig};
use crate::render::Grid;
use crate::render::canvas::{Canvas, mix};
use crate::train::{self, TrainConfig, TrainEvent};
use anyhow::{Context, Result, anyhow};
use candle_core::{Device, Tensor};
use faer::Mat;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

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
    let dir = tempfile::tempdir()?;
    let mut cfg = cfg;
    cfg.out_dir = Some(dir.path().to_path_buf());
    cfg.sample_every = 0;
    let kind = cfg.model.kind;
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
    .map_err(|e| anyhow!("training {}: {e}", kind.name()))?;
    let (model, _) = train::load_model(dir.path())?;
    Ok(Trained {
        model,
        grid: grid.ok_or_else(|| anyhow!("{} produced no sample grid", kind.name()))?,
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
        .ok_or_else(|| anyhow!("the model has no encoder"))?
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

/// Writes every figure and the likelihood table; returns the files written.
pub fn generate(cfg: &FigureConfig, log: &mut dyn FnMut(&str)) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(&cfg.out).with_context(|| format!("creating {}", cfg.out.display()))?;
    let split = mnist::embedded();
    let (quick, seed) = (cfg.quick, cfg.seed);
    let wants = |g: FigureGroup| cfg.only.is_empty() || cfg.only.contains(&g);
    let mut written = Vec::new();
    let mut table = Vec::new();

    if wants(FigureGroup::TwoD) {
        log("figures 3.2, 3.4, 3.5: 2-D demonstrations");
        save(
            &demo::boundary_figure(seed, if quick { 80 } else { 320 })?,
            &cfg.out,
            "fig-3-2-boundary.png",
            1,
            &mut written,
        )?;
        save(
            &sigmoid_figure(seed, if quick { 80 } else { 240 })?,
            &cfg.out,
            "fig-3-4-gda-sigmoid.png",
            1,
            &mut written,
        )?;
        save(
            &demo::cluster_figure(seed, if quick { 80 } else { 320 })?.0,
            &cfg.out,
            "fig-3-5-clusters.png",
            1,
            &mut written,
        )?;
    }
    if wants(FigureGroup::Classical) {
        for (model, file) in [
            (ImageModel::NaiveBayes, Some("fig-3-2-naive-bayes.png")),
            (ImageModel::GaussianNb, None),
            (ImageModel::Lda, Some("fig-3-3-gda-samples.png")),
            (ImageModel::Qda, None),
            (ImageModel::Gmm, None),
            (ImageModel::GmmPerClass, Some("fig-3-6-gmm-samples.png")),
        ] {
            log(&format!("fitting {}", model.name()));
            let mut c = ClassicalConfig::new(model);
            c.seed = seed;
            if quick {
                c.train_limit = Some(400);
                c.max_iter = 3;
            }
            let (fitted, report) = catalog::fit(&c, &split, |_, _| {})?;
            table.push(format!(
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
                save(&grid, &cfg.out, file, 2, &mut written)?;
            }
        }
    }

    if wants(FigureGroup::Autoencoder) {
        log("training the autoencoder (figure 3.8) and a 2-D autoencoder (figure 3.9)");
        let ae = train_model(
            run_config(ModelKind::Autoencoder, 5, 128, quick, seed),
            &split,
            log,
        )?;
        save(
            &ae.grid,
            &cfg.out,
            "fig-3-8-autoencoder.png",
            2,
            &mut written,
        )?;
        let mut ae2 = run_config(ModelKind::Autoencoder, 10, 128, quick, seed);
        ae2.model.latent_dim = 2;
        let ae2 = train_model(ae2, &split, log)?;
        save(
            &latent_scatter(ae2.model.as_ref(), &split, if quick { 80 } else { 360 })?,
            &cfg.out,
            "fig-3-9-ae-latent.png",
            1,
            &mut written,
        )?;
    }
    if wants(FigureGroup::Vae) {
        log("training the VAE (figure 3.11)");
        let vae = train_model(
            run_config(ModelKind::Vae, 15, 128, quick, seed),
            &split,
            log,
        )?;
        save(
            &vae.grid,
            &cfg.out,
            "fig-3-11-vae-samples.png",
            2,
            &mut written,
        )?;
        save(
            &interpolation(vae.model.as_ref(), seed + 1, 10)?,
            &cfg.out,
            "fig-5-interpolation-vae.png",
            3,
            &mut written,
        )?;
        let metric = |m: &Metrics, k| neural::metric(m, k).unwrap_or(f64::NAN);
        let bits = |nats: f64| nats / (784.0 * std::f64::consts::LN_2);
        let (elbo, iw) = (
            metric(&vae.test, Metric::NegElbo),
            metric(&vae.test, Metric::IwNll),
        );
        table.push(format!(
            "| VAE negative ELBO (3.7) | binarised at 0.5 | {elbo:.1} | {:.3} |",
            bits(elbo)
        ));
        let k = vae.model.config().iw_samples;
        table.push(format!(
            "| VAE importance-weighted, k = {k} (3.7) | binarised at 0.5 | {iw:.1} | {:.3} |",
            bits(iw)
        ));
    }
    if wants(FigureGroup::Gan) {
        log("training the GAN (figure 4.3)");
        let gan = train_model(run_config(ModelKind::Gan, 40, 64, quick, seed), &split, log)?;
        save(
            &gan.grid,
            &cfg.out,
            "fig-4-3-gan-samples.png",
            2,
            &mut written,
        )?;
        save(
            &interpolation(gan.model.as_ref(), seed + 2, 10)?,
            &cfg.out,
            "fig-5-interpolation-gan.png",
            3,
            &mut written,
        )?;
    }
    if wants(FigureGroup::Dcgan) {
        // The default run, so the figure shows what a user's first run ends with.
        log("training the DCGAN (figure 4.5)");
        let (epochs, batch) = train::default_budget(ModelKind::Dcgan);
        let dcgan = train_model(
            run_config(ModelKind::Dcgan, epochs, batch, quick, seed),
            &split,
            log,
        )?;
        save(
            &dcgan.grid,
            &cfg.out,
            "fig-4-5-dcgan-samples.png",
            2,
            &mut written,
        )?;
    }
    if wants(FigureGroup::Cgan) {
        log("training the conditional GAN (figure 4.7)");
        let cgan = train_model(
            run_config(ModelKind::Cgan, 40, 64, quick, seed),
            &split,
            log,
        )?;
        save(
            &cgan.grid,
            &cfg.out,
            "fig-4-7-cgan-samples.png",
            2,
            &mut written,
        )?;
    }

    if !(wants(FigureGroup::Classical) && wants(FigureGroup::Vae)) {
        return Ok(written);
    }
    let generated = cfg.out.parent().unwrap_or(Path::new(".")).join("generated");
    std::fs::create_dir_all(&generated)?;
    let mut md =
        String::from("| model | pixels | test NLL (nats/image) | bits/dim |\n|---|---|---|---|\n");
    for row in &table {
        md.push_str(row);
        md.push('\n');
    }
    md.push_str(&format!(
        "\nSeed {seed}; {} training and {} test digits{}. For 8-bit pixels the NLL is the bound −log p(dequantised x) + 784·ln 256 nats.\n",
        split.train.len(),
        split.test.len(),
        if quick { " (quick configuration: not meaningful numbers)" } else { "" }
    ));
    let p = generated.join("likelihoods.md");
    crate::util::atomic_write(&p, md.as_bytes())?;
    written.push(p);
    Ok(written)
}
