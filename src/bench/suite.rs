//! The suites of `genmod bench`: genmod's workloads timed beside the reference scripts in
//! `bench/reference/` (scikit-learn, PyTorch), run in the same invocation and on the same
//! thread count, as one Markdown table.

use super::{Row, classical, markdown, neural};
use crate::classical::gda::CovarianceKind;
use crate::classical::gmm::GmmCovariance;
use crate::neural::ModelKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Which workloads to time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Suite {
    /// EM iterations and GDA fits beside scikit-learn.
    Classical,
    /// Training, layer and sampling throughput beside PyTorch.
    Neural,
    /// One cold start to a first VAE grid in this process (what `neural` runs three times).
    FirstGrid,
    /// Learning parity: each neural model trained by genmod and by PyTorch from the same
    /// initial weights for the same steps, both sides' samples scored (minutes per model
    /// and seed).
    Quality,
}

/// How a suite is run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Timed repetitions per workload (medians are reported); at least 1.
    pub reps: usize,
    /// Time genmod only.
    pub no_reference: bool,
    /// The `genmod` executable, which the neural suite starts afresh to time a cold start.
    pub genmod_exe: PathBuf,
    /// The quality suite's settings.
    pub quality: super::quality::QualityOptions,
}

/// Why a suite could not be timed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("--reps must be at least 1, got 0")]
    NoReps,
    #[error("{what}: its output is not the JSON expected: {cause}")]
    ReferenceOutput {
        what: String,
        cause: serde_json::Error,
    },
    #[error("timing the DCGAN layer {layer}: it could not be built or run")]
    Layer { layer: &'static str },
    #[error("timing `{exe} bench first-grid` in a fresh process: no run gave a time")]
    FirstGrid { exe: String },
    /// The quality suite could not train, export or run the reference.
    #[error("bench quality: {0}")]
    Quality(String),
    /// The quality suite could not read or score a side's samples.
    #[error(transparent)]
    Eval(#[from] crate::eval::EvalError),
}

/// Runs `suite` and returns its table (a one-line figure for [`Suite::FirstGrid`]); progress
/// goes to `log`. A reference script that fails or a missing python3 is logged and leaves
/// the reference column empty.
pub fn run(
    suite: Suite,
    opts: &BenchOptions,
    log: &mut dyn FnMut(&str),
) -> Result<String, BenchError> {
    match suite {
        Suite::FirstGrid => Ok(format!("{}\n", neural::time_to_first_grid())),
        Suite::Quality => {
            let results = super::quality::run(&opts.quality, log)?;
            Ok(super::quality::markdown(&results, opts.quality.samples))
        }
        _ if opts.reps == 0 => Err(BenchError::NoReps),
        Suite::Classical => classical_suite(opts, log),
        Suite::Neural => neural_suite(opts, log),
    }
}

pub(crate) fn reference_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("bench/reference")
        .join(name)
}

/// Runs a reference script and reads the JSON it prints. A script that fails or a missing
/// python3 is logged and gives `None`; output that is not JSON is an error naming `what`.
fn run_reference(
    cmd: &mut Command,
    what: &str,
    log: &mut dyn FnMut(&str),
) -> Result<Option<serde_json::Value>, BenchError> {
    match cmd.output() {
        Ok(o) if o.status.success() => {
            serde_json::from_slice(&o.stdout)
                .map(Some)
                .map_err(|cause| BenchError::ReferenceOutput {
                    what: what.to_string(),
                    cause,
                })
        }
        Ok(o) => {
            let stderr = String::from_utf8_lossy(&o.stderr);
            log(&format!(
                "{what} failed: {}",
                stderr.lines().last().unwrap_or("")
            ));
            Ok(None)
        }
        Err(e) => {
            log(&format!("could not run python3: {e}"));
            Ok(None)
        }
    }
}

fn classical_suite(opts: &BenchOptions, log: &mut dyn FnMut(&str)) -> Result<String, BenchError> {
    let reps = opts.reps;
    let threads = rayon::current_num_threads();
    let split = crate::data::mnist::embedded();
    log(&format!("timing genmod on {threads} threads ..."));
    let ours = [
        (
            "EM iteration, diagonal, K=10",
            "em_diag",
            classical::em_iteration(&split, GmmCovariance::Diagonal, 10, reps),
        ),
        (
            "EM iteration, full, K=10",
            "em_full",
            classical::em_iteration(&split, GmmCovariance::Full, 10, reps.div_ceil(2)),
        ),
        (
            "GDA fit, shared covariance (LDA)",
            "lda_fit",
            classical::gda_fit(&split, CovarianceKind::Shared, reps.div_ceil(2)),
        ),
        (
            "GDA fit, per-class covariance (QDA)",
            "qda_fit",
            classical::gda_fit(&split, CovarianceKind::PerClass, reps.div_ceil(2)),
        ),
    ];
    let reference = if opts.no_reference {
        None
    } else {
        log("timing scikit-learn (bench/reference/sklearn_classical.py) ...");
        run_reference(
            Command::new("python3")
                .arg(reference_script("sklearn_classical.py"))
                .arg(reps.to_string())
                .env("GENMOD_THREADS", threads.to_string()),
            "reference script",
            log,
        )?
    };
    let rows: Vec<Row> = ours
        .iter()
        .map(|(name, key, v)| Row {
            workload: name.to_string(),
            unit: "s",
            genmod: *v,
            reference: reference.as_ref().and_then(|r| r[*key].as_f64()),
            reference_name: "scikit-learn",
            lower_is_better: true,
        })
        .collect();
    let versions = reference
        .as_ref()
        .map(|r| {
            format!(
                "; scikit-learn {} with numpy {}",
                r["sklearn"].as_str().unwrap_or("?"),
                r["numpy"].as_str().unwrap_or("?")
            )
        })
        .unwrap_or_default();
    Ok(format!(
        "Embedded digits (8,004 x 784, f64), {threads} threads, medians of {reps} runs{versions}.\n\n{}",
        markdown(&rows)
    ))
}

/// The training, layer and sampling workloads: (table name, reference key, model, steps or
/// rounds at `--reps 5`).
const TRAINING: [(&str, &str, ModelKind, usize); 5] = [
    (
        "autoencoder 784-256-32",
        "autoencoder",
        ModelKind::Autoencoder,
        40,
    ),
    ("VAE 784-400-20", "vae", ModelKind::Vae, 40),
    ("MLP GAN", "gan", ModelKind::Gan, 20),
    ("conditional GAN", "cgan", ModelKind::Cgan, 20),
    ("DCGAN 28x28", "dcgan", ModelKind::Dcgan, 4),
];

const SAMPLING: [(&str, &str, ModelKind, usize); 4] = [
    ("VAE decoder", "sample_vae", ModelKind::Vae, 5),
    ("MLP GAN generator", "sample_gan", ModelKind::Gan, 5),
    (
        "conditional GAN generator",
        "sample_cgan",
        ModelKind::Cgan,
        5,
    ),
    ("DCGAN generator", "sample_dcgan", ModelKind::Dcgan, 2),
];

/// PyTorch's side of the neural suite, one workload at a time.
struct Reference<'a> {
    script: PathBuf,
    threads: usize,
    enabled: bool,
    version: Option<String>,
    log: &'a mut dyn FnMut(&str),
}

impl Reference<'_> {
    /// PyTorch's figure for one workload, measured right after genmod's: the machine's speed
    /// drifts over minutes, so the two sides of a ratio are timed seconds apart. A failure
    /// is logged and leaves the figure out.
    fn figure(&mut self, key: &str) -> Option<f64> {
        if !self.enabled {
            return None;
        }
        let out = run_reference(
            Command::new("python3")
                .arg(&self.script)
                .args(["--only", key])
                .env("GENMOD_THREADS", self.threads.to_string()),
            &format!("reference script on {key}"),
            self.log,
        );
        let v = match out {
            Ok(v) => v?,
            Err(e) => {
                (self.log)(&e.to_string());
                return None;
            }
        };
        self.version = v["torch"].as_str().map(str::to_string);
        v[key].as_f64()
    }
}

fn neural_suite(opts: &BenchOptions, log: &mut dyn FnMut(&str)) -> Result<String, BenchError> {
    let threads = rayon::current_num_threads();
    let scale = opts.reps;
    let mut rows: Vec<Row> = Vec::new();
    let mut reference = Reference {
        script: reference_script("pytorch_neural.py"),
        threads,
        enabled: !opts.no_reference,
        version: None,
        log,
    };
    for (name, key, kind, steps) in TRAINING {
        (reference.log)(&format!(
            "timing training: {name}, genmod then PyTorch, {threads} threads ..."
        ));
        rows.push(Row {
            workload: format!("training, batch 128: {name}"),
            unit: "img/s",
            genmod: neural::throughput(kind, 128, steps * scale / 5 + 1),
            reference: reference.figure(key),
            reference_name: "PyTorch",
            lower_is_better: false,
        });
    }
    for layer in &neural::DCGAN_LAYERS {
        (reference.log)(&format!(
            "timing a DCGAN layer, forward and backward: {}, genmod then PyTorch ...",
            layer.name
        ));
        let ours = neural::dcgan_layer_seconds(layer, 3 * scale)
            .ok_or(BenchError::Layer { layer: layer.key })?;
        rows.push(Row {
            workload: format!("DCGAN layer forward+backward, batch 128: {}", layer.name),
            unit: "ms",
            genmod: ours * 1e3,
            reference: reference.figure(layer.key).map(|s| s * 1e3),
            reference_name: "PyTorch",
            lower_is_better: true,
        });
    }
    for (name, key, kind, rounds) in SAMPLING {
        (reference.log)(&format!(
            "timing sampling, 1000 images a batch: {name}, genmod then PyTorch ..."
        ));
        rows.push(Row {
            workload: format!("sampling, 1000 a batch: {name}"),
            unit: "img/s",
            genmod: neural::sampling_throughput(kind, 1000, rounds),
            reference: reference.figure(key),
            reference_name: "PyTorch",
            lower_is_better: false,
        });
    }
    (reference.log)("timing start to first grid, 3 fresh processes each ...");
    let ours_first = median_of_three(|| {
        Command::new(&opts.genmod_exe)
            .args(["bench", "first-grid"])
            .output()
    })
    .ok_or_else(|| BenchError::FirstGrid {
        exe: opts.genmod_exe.display().to_string(),
    })?;
    let torch_first = if opts.no_reference {
        None
    } else {
        median_of_three(|| {
            Command::new("python3")
                .arg(&reference.script)
                .arg("--first-grid")
                .env("GENMOD_THREADS", threads.to_string())
                .output()
        })
    };
    rows.push(Row {
        workload: "start to first 8x8 VAE grid (fresh process, median of 3)".into(),
        unit: "s",
        genmod: ours_first,
        reference: torch_first,
        reference_name: "PyTorch",
        lower_is_better: true,
    });
    let versions = reference
        .version
        .map(|v| format!("; PyTorch {v}, each workload timed right after genmod's"))
        .unwrap_or_default();
    Ok(format!(
        "Embedded digits, CPU, {threads} threads{versions}.\n\n{}",
        markdown(&rows)
    ))
}

/// The median of three fresh processes' printed seconds; runs that fail or print no number
/// are left out, and `None` if none gave one.
fn median_of_three(mut run: impl FnMut() -> std::io::Result<Output>) -> Option<f64> {
    let mut v: Vec<f64> = (0..3)
        .filter_map(|_| {
            let o = run().ok().filter(|o| o.status.success())?;
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}
