//! `genmod bench quality`: does genmod learn as well as PyTorch at equal steps?
//!
//! Each neural model is trained twice per seed with everything that defines the run held
//! equal: the architecture, the optimiser and its settings, the batch size, the number of
//! steps, the training digits and the initial weights, which genmod draws from the seed and
//! exports (safetensors) for `bench/reference/pytorch_quality.py` to load. The framework and
//! the random stream (batch order, noise) differ. Both sides write their samples to NPY files
//! and genmod scores both files on the same scoreboard (`eval --sample-file`'s path); the
//! VAE's likelihoods are computed by genmod for both sides, from PyTorch's trained weights
//! for PyTorch's.

use super::suite::BenchError;
use crate::data::arrays::{Elements, npy_bytes};
use crate::data::{Split, mnist};
use crate::eval::{self, PixelRange, Row, SampleFile, Scoreboard};
use crate::neural::{self, ModelKind};
use crate::train::{self, TrainConfig};
use candle_core::Device;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What `bench quality` runs.
#[derive(Debug, Clone)]
pub struct QualityOptions {
    pub models: Vec<ModelKind>,
    /// Seeds first_seed..first_seed + seeds.
    pub seeds: u64,
    /// The first seed: a later run can add seeds to an earlier one's.
    pub first_seed: u64,
    /// Steps per run; each model's default budget if not given.
    pub steps: Option<u64>,
    /// Samples each side draws and the scoreboard scores.
    pub samples: usize,
    /// Where the classifier is cached.
    pub cache: PathBuf,
    /// Where the runs' files are kept (init weights, samples, trained weights).
    pub work_dir: PathBuf,
    /// The Python interpreter that has torch, numpy and safetensors.
    pub python: PathBuf,
}

/// One side's scores for one model, per seed.
#[derive(Debug, Clone)]
pub struct SideScores {
    pub rows: Vec<Row>,
    /// Seconds of training, per seed.
    pub seconds: Vec<f64>,
}

/// The scores of both sides for one model.
#[derive(Debug, Clone)]
pub struct ModelParity {
    pub kind: ModelKind,
    /// The seeds run, in order (the rows of each side follow them).
    pub seeds: Vec<u64>,
    pub steps: u64,
    pub batch_size: usize,
    pub genmod: SideScores,
    pub pytorch: SideScores,
}

fn quality(message: impl Into<String>) -> BenchError {
    BenchError::Quality(message.into())
}

/// Runs every model and seed of `opts`; `log` follows progress.
pub fn run(
    opts: &QualityOptions,
    log: &mut dyn FnMut(&str),
) -> Result<Vec<ModelParity>, BenchError> {
    if opts.seeds == 0 || opts.samples < 10 {
        return Err(quality(
            "--seeds must be at least 1 and --samples at least 10",
        ));
    }
    let split = mnist::embedded();
    std::fs::create_dir_all(&opts.work_dir)
        .map_err(|e| quality(format!("{}: {e}", opts.work_dir.display())))?;
    let (images, labels) = export_training_digits(&split, &opts.work_dir)?;
    let board = Scoreboard::new(&split, 0, &opts.cache, false, 2000, log)?;
    let mut out = Vec::new();
    for &kind in &opts.models {
        let (epochs, batch_size) = train::default_budget(kind);
        let steps = opts
            .steps
            .unwrap_or((split.train.len() / batch_size * epochs) as u64);
        let seeds: Vec<u64> = (opts.first_seed..opts.first_seed + opts.seeds).collect();
        let mut parity = ModelParity {
            kind,
            seeds: seeds.clone(),
            steps,
            batch_size,
            genmod: SideScores {
                rows: Vec::new(),
                seconds: Vec::new(),
            },
            pytorch: SideScores {
                rows: Vec::new(),
                seconds: Vec::new(),
            },
        };
        for seed in seeds {
            let run = Run {
                kind,
                seed,
                steps,
                batch_size,
                epochs: (steps as usize).div_ceil(split.train.len() / batch_size),
                dir: opts.work_dir.join(format!("{}-seed{seed}", kind.name())),
            };
            log(&format!(
                "{} seed {seed}: genmod, {steps} steps of {batch_size}",
                kind.name()
            ));
            let (row, secs) = run.genmod(&split, &board, opts.samples)?;
            parity.genmod.rows.push(row);
            parity.genmod.seconds.push(secs);
            log(&format!(
                "{} seed {seed}: PyTorch, from the same initial weights",
                kind.name()
            ));
            let (row, secs) = run.pytorch(&split, &board, opts, &images, &labels)?;
            parity.pytorch.rows.push(row);
            parity.pytorch.seconds.push(secs);
        }
        out.push(parity);
    }
    Ok(out)
}

/// The training digits as NPY files (uint8 N x 28 x 28, and int64 labels) for the script.
fn export_training_digits(split: &Split, dir: &Path) -> Result<(PathBuf, PathBuf), BenchError> {
    let pixels = split.train.pixels().to_vec();
    let labels: Vec<i64> = split
        .train
        .labels()
        .ok_or_else(|| quality("the embedded digits have no labels"))?
        .iter()
        .map(|&l| l as i64)
        .collect();
    let (ip, lp) = (dir.join("train-images.npy"), dir.join("train-labels.npy"));
    let n = labels.len();
    write(&ip, &npy_bytes(&[n, 28, 28], &Elements::U8(pixels)))?;
    write(&lp, &npy_bytes(&[n], &Elements::Int(labels)))?;
    Ok((ip, lp))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), BenchError> {
    crate::util::atomic_write(path, bytes).map_err(|e| quality(format!("{}: {e}", path.display())))
}

/// One model and seed.
struct Run {
    kind: ModelKind,
    seed: u64,
    steps: u64,
    batch_size: usize,
    /// Enough epochs for `steps`.
    epochs: usize,
    dir: PathBuf,
}

impl Run {
    fn config(&self) -> TrainConfig {
        let mut c = TrainConfig::new(neural::NeuralConfig::new(self.kind));
        c.batch_size = self.batch_size;
        c.epochs = self.epochs;
        c.max_steps = Some(self.steps);
        c.seed = self.seed;
        c.sample_every = 0;
        c.eval_batches = Some(1);
        c.out_dir = Some(self.dir.join("genmod"));
        c
    }

    fn row(&self, side: &str) -> Row {
        Row {
            model: format!("{} ({side}, seed {})", self.kind.name(), self.seed),
            section: self.kind.section().into(),
            ..Default::default()
        }
    }

    /// Trains in genmod, writes its samples and scores them from the file.
    fn genmod(
        &self,
        split: &Split,
        board: &Scoreboard,
        n: usize,
    ) -> Result<(Row, f64), BenchError> {
        let cfg = self.config();
        let out = cfg.out_dir.clone().expect("set above");
        let _ = std::fs::remove_dir_all(&out);
        let start = std::time::Instant::now();
        let never = std::sync::atomic::AtomicBool::new(false);
        train::train(cfg, split.clone(), None, &never, |_| {})
            .map_err(|e| quality(format!("genmod {}: {e}", self.kind.name())))?;
        let seconds = start.elapsed().as_secs_f64();
        let (model, _) = train::load_model(&out).map_err(|e| quality(e.to_string()))?;
        let file = self.dir.join("genmod-samples.npy");
        let labels = eval::write_samples(model.as_ref(), n, self.seed, &file)?;
        let mut row = self.row("genmod");
        self.score(board, &file, labels, PixelRange::ZeroOne, &mut row)?;
        if self.kind == ModelKind::Vae {
            eval::vae_likelihood(model.as_ref(), self.seed, false, &split.test, &mut row)?;
        }
        Ok((row, seconds))
    }

    /// Exports genmod's initial weights, trains from them in PyTorch and scores the samples
    /// the script wrote.
    fn pytorch(
        &self,
        split: &Split,
        board: &Scoreboard,
        opts: &QualityOptions,
        images: &Path,
        labels: &Path,
    ) -> Result<(Row, f64), BenchError> {
        let cfg = self.config();
        let shape = neural::ImageShape {
            channels: 1,
            height: 28,
            width: 28,
        };
        let classes = if self.kind.is_conditional() { 10 } else { 0 };
        let build = || {
            neural::build(&cfg.model, shape, classes, &Device::Cpu, self.seed)
                .map_err(|e| quality(e.to_string()))
        };
        let init = self.dir.join("init.safetensors");
        let initial = build()?;
        // The clustered GANs' clusters, fitted as genmod's run fits them (same data and
        // seed), go to the script with the initial weights.
        train::pixel_clusters::fit(initial.as_ref(), &split.train, &Device::Cpu, cfg.seed)
            .map_err(|e| quality(format!("fitting the {}'s clusters: {e}", self.kind.name())))?;
        initial
            .varmap()
            .save(&init)
            .map_err(|e| quality(format!("{}: {e}", init.display())))?;
        let samples = self.dir.join("pytorch-samples.npy");
        let sample_labels = self.dir.join("pytorch-samples.labels.npy");
        let weights = self.dir.join("pytorch-weights.safetensors");
        let config = serde_json::to_string(&cfg.model).expect("a config serialises");
        let script = super::suite::reference_script("pytorch_quality.py");
        let mut cmd = Command::new(&opts.python);
        cmd.arg(script)
            .args(["--model", self.kind.name()])
            .arg("--init")
            .arg(&init)
            .arg("--images")
            .arg(images)
            .arg("--labels")
            .arg(labels)
            .args(["--config", &config])
            .args(["--steps", &self.steps.to_string()])
            .args(["--batch-size", &self.batch_size.to_string()])
            .args(["--seed", &self.seed.to_string()])
            .args(["--samples", &opts.samples.to_string()])
            .arg("--out")
            .arg(&samples)
            .arg("--weights")
            .arg(&weights)
            .env("GENMOD_THREADS", rayon::current_num_threads().to_string());
        if classes > 0 {
            cmd.arg("--out-labels").arg(&sample_labels);
        }
        let output = cmd
            .output()
            .map_err(|e| quality(format!("running {}: {e}", opts.python.display())))?;
        if !output.status.success() {
            return Err(quality(format!(
                "the PyTorch script failed for {} seed {}: {}",
                self.kind.name(),
                self.seed,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        let report: serde_json::Value =
            serde_json::from_slice(&output.stdout).map_err(|cause| {
                BenchError::ReferenceOutput {
                    what: "pytorch_quality.py".into(),
                    cause,
                }
            })?;
        let seconds = report["seconds"].as_f64().unwrap_or(f64::NAN);
        let range = if self.kind.is_gan() {
            PixelRange::MinusOneOne
        } else {
            PixelRange::ZeroOne
        };
        let mut row = self.row("PyTorch");
        let labels = (classes > 0).then_some(sample_labels);
        self.score(board, &samples, labels, range, &mut row)?;
        if self.kind == ModelKind::Vae {
            // PyTorch's trained weights in genmod's VAE, so that the likelihoods come from
            // the same code on both sides. The likelihoods are the prior's whatever the
            // samples were drawn from, and the script saves no code mixture.
            let mut prior = cfg.model.clone();
            prior.code_sampling = neural::CodeSampling::StandardNormal;
            let model = neural::build(&prior, shape, classes, &Device::Cpu, self.seed)
                .map_err(|e| quality(e.to_string()))?;
            let mut varmap = model.varmap().clone();
            varmap
                .load(&weights)
                .map_err(|e| quality(format!("{}: {e}", weights.display())))?;
            eval::vae_likelihood(model.as_ref(), self.seed, false, &split.test, &mut row)?;
        }
        Ok((row, seconds))
    }

    fn score(
        &self,
        board: &Scoreboard,
        images: &Path,
        labels: Option<PathBuf>,
        range: PixelRange,
        row: &mut Row,
    ) -> Result<(), BenchError> {
        let file = SampleFile {
            images: images.to_path_buf(),
            labels,
            range,
        };
        let (x, intended) = eval::read_samples(&file)?;
        board.score(row, &x, intended.as_deref())?;
        Ok(())
    }
}

/// Mean and min–max of `values`.
fn spread(values: &[f64]) -> (f64, f64, f64) {
    let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
    let (min, max) = super::min_max(values);
    (mean, min, max)
}

/// A compared metric: its name, how to read it from a row, and whether higher is better.
type Compared = (&'static str, fn(&Row) -> Option<f64>, bool);

/// The metrics compared for `kind`.
fn metrics(kind: ModelKind) -> Vec<Compared> {
    let mut m: Vec<Compared> = vec![
        ("FD", |r| Some(r.fid), false),
        ("precision", |r| Some(r.precision), true),
        ("recall", |r| Some(r.recall), true),
        ("classes", |r| Some(r.classes_covered as f64), true),
        ("coverage KL", |r| Some(r.coverage_kl), false),
    ];
    if kind.is_conditional() {
        m.push(("cond. accuracy", |r| r.conditional_accuracy, true));
    }
    if kind == ModelKind::Vae {
        m.push(("−ELBO (nats)", |r| r.nll_nats, false));
        m.push(("IW-50 NLL (nats)", |r| r.iw_nll_nats, false));
    }
    m
}

/// Seeds as the table names them: "3", "0–2" for a run of consecutive seeds.
fn seed_list(seeds: &[u64]) -> String {
    match seeds {
        [] => String::new(),
        [one] => one.to_string(),
        [first, .., last] => format!("{first}–{last}"),
    }
}

/// The parity table: per model and metric, genmod's mean and range over the seeds beside
/// PyTorch's, and whether genmod's mean is inside PyTorch's range or better.
pub fn markdown(results: &[ModelParity], samples: usize) -> String {
    let seeds = results
        .first()
        .map_or(String::new(), |r| seed_list(&r.seeds));
    let mut s = format!(
        "Learning parity at equal steps: each model trained by genmod and by PyTorch from the same initial weights (genmod's, exported), with the same architecture, optimiser, batch size, steps and training digits; {samples} samples per run scored by genmod's scoreboard; seeds {seeds}. Mean [min–max] over seeds. \"ok\": genmod's mean lies inside PyTorch's range or beats it.\n\n| model | steps × batch | metric | genmod | PyTorch | verdict |\n|---|---|---|---|---|---|\n",
    );
    for r in results {
        for (name, get, higher) in metrics(r.kind) {
            let g: Vec<f64> = r.genmod.rows.iter().filter_map(get).collect();
            let p: Vec<f64> = r.pytorch.rows.iter().filter_map(get).collect();
            if g.is_empty() || p.is_empty() {
                continue;
            }
            let ((gm, gl, gh), (pm, pl, ph)) = (spread(&g), spread(&p));
            let better = if higher { gm >= pm } else { gm <= pm };
            let verdict = if (pl..=ph).contains(&gm) || better {
                "ok"
            } else {
                "worse"
            };
            let fmt = |m: f64, l: f64, h: f64| {
                if m.abs() >= 10.0 {
                    format!("{m:.1} [{l:.1}–{h:.1}]")
                } else {
                    format!("{m:.3} [{l:.3}–{h:.3}]")
                }
            };
            s.push_str(&format!(
                "| {} | {} × {} | {name} | {} | {} | {verdict} |\n",
                r.kind.name(),
                r.steps,
                r.batch_size,
                fmt(gm, gl, gh),
                fmt(pm, pl, ph)
            ));
        }
        let (gs, ps) = (spread(&r.genmod.seconds), spread(&r.pytorch.seconds));
        s.push_str(&format!(
            "| {} | {} × {} | training seconds | {:.0} | {:.0} | – |\n",
            r.kind.name(),
            r.steps,
            r.batch_size,
            gs.0,
            ps.0
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(fids: &[f64]) -> SideScores {
        SideScores {
            rows: fids
                .iter()
                .map(|&fid| Row {
                    fid,
                    precision: 0.5,
                    recall: 0.5,
                    classes_covered: 10,
                    ..Default::default()
                })
                .collect(),
            seconds: vec![1.0; fids.len()],
        }
    }

    fn verdict(table: &str, metric: &str) -> String {
        let line = table
            .lines()
            .find(|l| l.contains(&format!("| {metric} |")))
            .unwrap();
        line.trim_end_matches(" |")
            .rsplit("| ")
            .next()
            .unwrap()
            .to_string()
    }

    /// genmod's mean inside PyTorch's range, or better than PyTorch's mean, is "ok"; worse
    /// and outside is "worse". FD is lower-is-better.
    #[test]
    fn the_verdict_compares_genmods_mean_with_pytorchs_range() {
        let table = |g: &[f64], p: &[f64]| {
            markdown(
                &[ModelParity {
                    kind: ModelKind::Dcgan,
                    seeds: (0..g.len() as u64).collect(),
                    steps: 10,
                    batch_size: 64,
                    genmod: side(g),
                    pytorch: side(p),
                }],
                100,
            )
        };
        assert_eq!(
            verdict(&table(&[50.0, 60.0, 70.0], &[55.0, 58.0, 65.0]), "FD"),
            "ok"
        );
        assert_eq!(
            verdict(&table(&[40.0, 41.0, 42.0], &[55.0, 58.0, 65.0]), "FD"),
            "ok"
        );
        assert_eq!(
            verdict(&table(&[70.0, 72.0, 74.0], &[55.0, 58.0, 65.0]), "FD"),
            "worse"
        );
        let t = table(&[50.0, 60.0, 70.0], &[55.0, 58.0, 65.0]);
        assert!(t.contains("| 60.0 [50.0–70.0] | 59.3 [55.0–65.0] |"), "{t}");
        assert!(t.contains("seeds 0–2"), "{t}");
    }

    #[test]
    fn the_table_names_the_seeds_run() {
        assert_eq!(seed_list(&[3, 4, 5]), "3–5");
        assert_eq!(seed_list(&[7]), "7");
        assert_eq!(seed_list(&[]), "");
    }
}
