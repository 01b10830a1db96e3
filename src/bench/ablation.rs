//! `genmod bench ablation`: what each part of a model's default recipe is worth.
//!
//! Each neural model has a list of variants of its default run: the report's recipe, and
//! the default with one setting changed (budget, learning rate, initial weights, moving
//! average, dropout, label smoothing, conditioning, the distribution the autoencoder's and
//! the VAE's codes are drawn from). Every variant is trained from scratch on the embedded
//! digits and scored on the same scoreboard as `genmod eval`, so the book's ablation
//! tables (chapters 3.6, 3.7 and 4.1 to 4.3) are written by this command rather than
//! typed.

use super::suite::BenchError;
use crate::data::{Split, mnist};
use crate::eval::{self, Row, Scoreboard};
use crate::neural::{CodeSampling, Conditioning, ModelKind, NeuralConfig, WeightInit};
use crate::train::{self, TrainConfig};
use std::path::PathBuf;

/// What `bench ablation` runs.
#[derive(Debug, Clone)]
pub struct AblationOptions {
    pub models: Vec<ModelKind>,
    /// Seeds 0..seeds per variant.
    pub seeds: u64,
    /// Samples drawn from each trained variant and scored.
    pub samples: usize,
    /// Where the classifier is cached.
    pub cache: PathBuf,
}

/// One variant of a model's default run.
#[derive(Debug, Clone, Copy)]
pub struct Variant {
    /// How the table names it.
    pub label: &'static str,
    /// Epochs and batch size; the model's default budget where `None`.
    pub epochs: Option<usize>,
    pub batch: Option<usize>,
    /// The change to the default configuration.
    pub change: fn(&mut NeuralConfig),
    /// Whether this is the default run itself (printed in bold).
    pub is_default: bool,
}

const fn variant(
    label: &'static str,
    epochs: Option<usize>,
    batch: Option<usize>,
    change: fn(&mut NeuralConfig),
) -> Variant {
    Variant {
        label,
        epochs,
        batch,
        change,
        is_default: false,
    }
}

const fn default_run(label: &'static str) -> Variant {
    Variant {
        label,
        epochs: None,
        batch: None,
        change: |_| {},
        is_default: true,
    }
}

/// The variants measured for `kind`; empty for a model the book has no ablation of.
pub fn variants(kind: ModelKind) -> Vec<Variant> {
    match kind {
        // 4.1: the clusters the MLP GAN conditions on and how its D reads them, against
        // the unclustered recipe. That recipe (average, dropout, epochs) was measured
        // against the report's before the clusters became the default:
        // book/src/generated/ablation-gan-unclustered.md.
        ModelKind::Gan => vec![
            default_run("40 k-means clusters, projection D, average (the default)"),
            variant("20 clusters", None, None, |c| c.clusters = 20),
            variant("30 clusters", None, None, |c| c.clusters = 30),
            variant("two thirds of the steps", Some(60), None, |_| {}),
            variant(
                "20 clusters, two thirds of the steps (the default until 2026-12-04)",
                Some(60),
                None,
                |c| c.clusters = 20,
            ),
            variant("learning rate 2e-4 (Radford et al.'s)", None, None, |c| {
                c.lr = crate::neural::REPORT_GAN_LR
            }),
            variant("dropout 0.5 in D", None, None, |c| c.d_dropout = 0.5),
            variant(
                "D reads the cluster concatenated to the pixels",
                None,
                None,
                |c| c.conditioning = Conditioning::Concat,
            ),
            variant(
                "no clusters: the report's nets and learning rate, average and dropout 0.5 in D",
                None,
                None,
                |c| {
                    c.clusters = 0;
                    c.d_dropout = 0.5;
                    c.lr = crate::neural::REPORT_GAN_LR;
                },
            ),
        ],
        // 4.2: the clusters the DCGAN conditions on, against the report's unconditional
        // nets. The unconditional DCGAN's own recipe (initialisation, learning rate,
        // average, dropout, smoothing, width, epochs) was measured before the clusters
        // became the default: book/src/generated/ablation-dcgan-unconditional.md.
        ModelKind::Dcgan => vec![
            default_run("40 k-means clusters of the pixels (the default)"),
            variant("20 clusters", None, None, |c| c.clusters = 20),
            variant("30 clusters", None, None, |c| c.clusters = 30),
            variant(
                "20 clusters, 15 epochs (the default until 2026-12-04)",
                Some(15),
                None,
                |c| c.clusters = 20,
            ),
            variant(
                "no clusters: the report's unconditional DCGAN",
                None,
                None,
                |c| c.clusters = 0,
            ),
        ],
        // 4.3: from the report's concatenation to the default projection with an average,
        // at the report's learning rate, then the default's.
        ModelKind::Cgan => vec![
            variant(
                "concatenation, live weights (the report's)",
                Some(20),
                None,
                |c| {
                    c.conditioning = Conditioning::Concat;
                    c.ema_decay = 0.0;
                    c.lr = crate::neural::REPORT_GAN_LR;
                },
            ),
            variant("projection, live weights", Some(20), None, |c| {
                c.ema_decay = 0.0;
                c.lr = crate::neural::REPORT_GAN_LR;
            }),
            variant("projection, moving average (0.999)", Some(20), None, |c| {
                c.lr = crate::neural::REPORT_GAN_LR
            }),
            variant("projection, moving average", Some(40), None, |c| {
                c.lr = crate::neural::REPORT_GAN_LR
            }),
            variant(
                "projection, moving average, learning rate 2e-4",
                None,
                None,
                |c| c.lr = crate::neural::REPORT_GAN_LR,
            ),
            default_run("projection, moving average, learning rate 4e-4 (the default)"),
            variant("the default with dropout 0.3 in D", None, None, |c| {
                c.d_dropout = 0.3
            }),
        ],
        // 4.3: the conditional DCGAN at the DCGAN's two learning rates.
        ModelKind::Cdcgan => vec![
            variant("learning rate 2e-4 (Radford et al.'s)", None, None, |c| {
                c.lr = crate::neural::REPORT_GAN_LR
            }),
            default_run("learning rate 4e-4 (the default)"),
            variant(
                "uniform ±1/√fan-in weights (PyTorch's)",
                None,
                None,
                |c| c.weight_init = WeightInit::Pytorch,
            ),
        ],
        // 3.6: the report's autoencoder has no distribution to sample codes from; decoding
        // N(0, I) is what the report's comparison with the VAE implies.
        ModelKind::Autoencoder => vec![
            variant("decoding z ~ N(0, I) (the report's)", None, None, |c| {
                c.code_sampling = CodeSampling::StandardNormal
            }),
            variant(
                "decoding z from one Gaussian fitted to the codes",
                None,
                None,
                |c| c.code_sampling = CodeSampling::FittedGaussian,
            ),
            default_run(
                "denoising, 512 hidden units, decoding z from a mixture of 200 Gaussians fitted to the codes (the default)",
            ),
            variant("the default without denoising", None, None, |c| {
                c.denoise_std = 0.0
            }),
            variant(
                "the default with a mixture of 30 Gaussians",
                None,
                None,
                |c| c.code_components = 30,
            ),
            variant(
                "no denoising, 256 hidden units, 30 Gaussians, 60 epochs (the default until 2026-12-04)",
                Some(60),
                None,
                |c| {
                    c.denoise_std = 0.0;
                    c.hidden = 256;
                    c.code_components = 30;
                },
            ),
        ],
        // 3.7: the same trained VAE sampled through its prior and through a mixture fitted
        // to its posterior means.
        ModelKind::Vae => vec![
            default_run(
                "decoding z from a mixture of 400 Gaussians fitted to the codes (the default)",
            ),
            variant(
                "a mixture of 200 Gaussians (the default until 2026-12-05)",
                None,
                None,
                |c| c.code_components = 200,
            ),
            variant(
                "decoding z ~ N(0, I), the prior (the report's)",
                None,
                None,
                |c| c.code_sampling = CodeSampling::StandardNormal,
            ),
            variant("the mixture after 40 epochs", Some(40), None, |_| {}),
            variant(
                "the prior after 40 epochs (the default until 2026-12-04)",
                Some(40),
                None,
                |c| c.code_sampling = CodeSampling::StandardNormal,
            ),
        ],
    }
}

/// One variant's scores, one row per seed.
#[derive(Debug, Clone)]
pub struct Measured {
    pub variant: Variant,
    pub epochs: usize,
    pub batch: usize,
    pub steps: u64,
    pub rows: Vec<Row>,
}

/// A model's ablation.
#[derive(Debug, Clone)]
pub struct Ablation {
    pub kind: ModelKind,
    pub measured: Vec<Measured>,
}

fn ablation_error(message: impl Into<String>) -> BenchError {
    BenchError::Ablation(message.into())
}

/// Trains and scores every variant of every model in `opts`; `log` follows progress.
pub fn run(opts: &AblationOptions, log: &mut dyn FnMut(&str)) -> Result<Vec<Ablation>, BenchError> {
    if opts.seeds == 0 || opts.samples < 10 {
        return Err(ablation_error(
            "--seeds must be at least 1 and --samples at least 10",
        ));
    }
    if let Some(kind) = opts.models.iter().find(|k| variants(**k).is_empty()) {
        return Err(ablation_error(format!(
            "{} has no ablation; --models takes autoencoder, gan, dcgan, cgan or cdcgan",
            kind.name()
        )));
    }
    let split = mnist::embedded();
    let board = Scoreboard::new(&split, 0, &opts.cache, false, 2000, log)?;
    let mut out = Vec::new();
    for &kind in &opts.models {
        let mut ablation = Ablation {
            kind,
            measured: Vec::new(),
        };
        for v in variants(kind) {
            let (default_epochs, default_batch) = train::default_budget(kind);
            let (epochs, batch) = (
                v.epochs.unwrap_or(default_epochs),
                v.batch.unwrap_or(default_batch),
            );
            let mut m = Measured {
                variant: v,
                epochs,
                batch,
                steps: (split.train.len() / batch * epochs) as u64,
                rows: Vec::new(),
            };
            for seed in 0..opts.seeds {
                log(&format!(
                    "{} seed {seed}: {} ({epochs} epochs of {batch})",
                    kind.name(),
                    v.label
                ));
                m.rows.push(train_and_score(
                    kind,
                    &m,
                    seed,
                    &split,
                    &board,
                    opts.samples,
                )?);
            }
            ablation.measured.push(m);
        }
        out.push(ablation);
    }
    Ok(out)
}

fn train_and_score(
    kind: ModelKind,
    m: &Measured,
    seed: u64,
    split: &Split,
    board: &Scoreboard,
    samples: usize,
) -> Result<Row, BenchError> {
    let mut model = NeuralConfig::new(kind);
    (m.variant.change)(&mut model);
    let mut cfg = TrainConfig::new(model);
    cfg.epochs = m.epochs;
    cfg.batch_size = m.batch;
    cfg.seed = seed;
    cfg.sample_every = 0;
    cfg.eval_batches = Some(1);
    let dir = tempfile::tempdir().map_err(|e| ablation_error(e.to_string()))?;
    cfg.out_dir = Some(dir.path().to_path_buf());
    let never = std::sync::atomic::AtomicBool::new(false);
    train::train(cfg, split.clone(), None, &never, |_| {})
        .map_err(|e| ablation_error(format!("{} ({}): {e}", kind.name(), m.variant.label)))?;
    let (trained, _) = train::load_model(dir.path()).map_err(|e| ablation_error(e.to_string()))?;
    let (images, intended) = eval::draw_samples(trained.as_ref(), samples, seed)?;
    let mut row = Row {
        model: format!("{} ({}, seed {seed})", kind.name(), m.variant.label),
        section: kind.section().into(),
        ..Default::default()
    };
    board.score(&mut row, &images, intended.as_deref())?;
    Ok(row)
}

/// Mean of `values`, and with more than one the range: "41.9" or "44.0 [41.9–46.6]".
fn cell(values: &[f64], decimals: usize) -> String {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return format!("{mean:.decimals$}");
    }
    let (lo, hi) = super::min_max(values);
    format!("{mean:.decimals$} [{lo:.decimals$}–{hi:.decimals$}]")
}

/// One table per model: each variant's budget and scores, the default in bold.
pub fn markdown(results: &[Ablation], samples: usize) -> String {
    let mut s = String::new();
    for a in results {
        let conditional = a.kind.is_conditional();
        let seeds = a.measured.first().map_or(0, |m| m.rows.len());
        s.push_str(&format!(
            "| {} | epochs × batch (steps) | FD | precision | recall | classes ≥ 1% | coverage KL | legible |{}\n|---|---|---|---|---|---|---|---|{}\n",
            a.kind.name(),
            if conditional { " cond. accuracy |" } else { "" },
            if conditional { "---|" } else { "" },
        ));
        for m in &a.measured {
            let col =
                |f: fn(&Row) -> f64, d: usize| cell(&m.rows.iter().map(f).collect::<Vec<_>>(), d);
            let label = if m.variant.is_default {
                format!("**{}**", m.variant.label)
            } else {
                m.variant.label.to_string()
            };
            s.push_str(&format!(
                "| {label} | {} × {} ({}) | {} | {} | {} | {} | {} | {} |",
                m.epochs,
                m.batch,
                m.steps,
                col(|r| r.fid, 1),
                col(|r| r.precision, 3),
                col(|r| r.recall, 3),
                col(|r| r.classes_covered as f64, 0),
                col(|r| r.coverage_kl, 3),
                col(|r| r.legible, 3),
            ));
            if conditional {
                s.push_str(&format!(
                    " {} |",
                    col(|r| r.conditional_accuracy.unwrap_or(f64::NAN), 3)
                ));
            }
            s.push('\n');
        }
        s.push_str(&format!(
            "\n{}; {samples} samples per run, scored as in `genmod eval` (legible: the share of samples the classifier gives one digit with probability above {}). Written by `genmod bench ablation --models {}`.\n\n",
            if seeds > 1 {
                format!("Mean [min–max] over seeds 0–{}", seeds - 1)
            } else {
                "Seed 0".to_string()
            },
            crate::eval::LEGIBLE_PROBABILITY,
            a.kind.name()
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ablated_model_has_one_default_row_and_it_changes_nothing() {
        for kind in [
            ModelKind::Autoencoder,
            ModelKind::Vae,
            ModelKind::Gan,
            ModelKind::Dcgan,
            ModelKind::Cgan,
            ModelKind::Cdcgan,
        ] {
            let vs = variants(kind);
            let defaults: Vec<_> = vs.iter().filter(|v| v.is_default).collect();
            assert_eq!(defaults.len(), 1, "{}", kind.name());
            let mut c = NeuralConfig::new(kind);
            (defaults[0].change)(&mut c);
            assert_eq!(c, NeuralConfig::new(kind));
            assert!(defaults[0].epochs.is_none() && defaults[0].batch.is_none());
            // Every other variant differs from the default in its config or its budget,
            // and passes the config's own validation.
            for v in vs.iter().filter(|v| !v.is_default) {
                let mut c = NeuralConfig::new(kind);
                (v.change)(&mut c);
                c.validate().unwrap();
                assert!(
                    c != NeuralConfig::new(kind) || v.epochs.is_some() || v.batch.is_some(),
                    "{}: {} changes nothing",
                    kind.name(),
                    v.label
                );
            }
        }
    }

    #[test]
    fn the_table_shows_means_with_ranges_and_marks_the_default() {
        let row = |fid: f64, acc: f64| Row {
            fid,
            precision: 0.5,
            recall: 0.25,
            classes_covered: 10,
            coverage_kl: 0.01,
            conditional_accuracy: Some(acc),
            legible: acc - 0.1,
            ..Default::default()
        };
        let vs = variants(ModelKind::Cdcgan);
        let measured = vs
            .iter()
            .map(|&variant| Measured {
                variant,
                epochs: 15,
                batch: 64,
                steps: 1875,
                rows: vec![row(10.0, 0.9), row(14.0, 1.0)],
            })
            .collect();
        let md = markdown(
            &[Ablation {
                kind: ModelKind::Cdcgan,
                measured,
            }],
            5000,
        );
        assert!(md.contains("| **learning rate 4e-4 (the default)** | 15 × 64 (1875) | 12.0 [10.0–14.0] | 0.500 [0.500–0.500] |"), "{md}");
        assert!(
            md.contains("| 0.010 [0.010–0.010] | 0.850 [0.800–0.900] | 0.950 [0.900–1.000] |"),
            "{md}"
        );
        assert!(md.contains("probability above 0.9)"), "{md}");
        assert!(
            md.contains("Mean [min–max] over seeds 0–1; 5000 samples"),
            "{md}"
        );
    }
}
