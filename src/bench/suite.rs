//! The suites of `genmod bench`: genmod's workloads timed beside the reference scripts in
//! `bench/reference/` (scikit-learn, PyTorch), run in the same invocation and on the same
//! thread count, as one Markdown table.

use super::{Row, classical, markdown, neural};
use crate::classical::gda::CovarianceKind;
use crate::classical::gmm::GmmCovariance;
use crate::neural::ModelKind;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};

/// Which workloads to time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Suite {
    /// EM iterations and GDA fits beside scikit-learn.
    Classical,
    /// Training, layer and sampling throughput beside PyTorch.
    Neural,
    /// One cold start to a first VAE grid in this process (what `neural` runs three times).
    FirstGrid,
    /// One measurement in this fresh process, described by `--request` (JSON, as the
    /// reference's protocol): prints its figure and the process's peak resident memory.
    #[value(hide = true)]
    Measure,
    /// Learning parity: each neural model trained by genmod and by PyTorch from the same
    /// initial weights for the same steps, both sides' samples scored (minutes per model
    /// and seed).
    Quality,
    /// Recipe ablation: each neural model's default run and its variants (the
    /// report's recipe, one setting changed at a time), trained and scored (minutes per
    /// variant and seed).
    Ablation,
    /// Arithmetic parity: each GAN's first steps replayed in PyTorch (float32 and float64)
    /// from genmod's recorded inputs, weights compared after 1, 10 and 100 steps.
    Lockstep,
    /// How long each neural model's default run takes: `genmod train MODEL` started --reps
    /// times per model, in turn across the models (minutes per model and run).
    DefaultRuns,
}

/// How a suite is run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Timed repetitions per workload (medians are reported); at least 1.
    pub reps: usize,
    /// Time genmod only.
    pub no_reference: bool,
    /// The Python interpreter that runs the reference scripts.
    pub python: PathBuf,
    /// [`Suite::Measure`]'s request.
    pub request: Option<String>,
    /// The `genmod` executable, which the neural suite starts afresh to time a cold start.
    pub genmod_exe: PathBuf,
    /// The quality suite's settings.
    pub quality: super::quality::QualityOptions,
    /// The ablation suite's settings.
    pub ablation: super::ablation::AblationOptions,
    /// The lockstep suite's settings.
    pub lockstep: super::lockstep::LockstepOptions,
    /// The default-runs suite's settings.
    pub default_runs: super::default_runs::DefaultRunsOptions,
    /// The neural suite: a folder of MNIST-format files (full MNIST, or `genmod data export
    /// --train-count 60000`) whose training part some models also train on, to show the
    /// throughput and memory at full size.
    pub data_dir: Option<PathBuf>,
}

/// Why a suite could not be timed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("--reps must be at least 1, got 0")]
    NoReps,
    #[error("--data-dir: {0}")]
    DataDir(String),
    #[error("{what}: its output is not the JSON expected: {cause}")]
    ReferenceOutput {
        what: String,
        cause: serde_json::Error,
    },
    #[error("bench measure --request: {0}")]
    Request(String),
    #[error("timing {workload}: {cause}")]
    Workload { workload: String, cause: String },
    #[error("timing `{exe} bench first-grid` in a fresh process: no run gave a time")]
    FirstGrid { exe: String },
    /// The quality suite could not train, export or run the reference.
    #[error("bench quality: {0}")]
    Quality(String),
    /// The ablation suite could not train or score a variant.
    #[error("bench ablation: {0}")]
    Ablation(String),
    /// The lockstep suite could not record a run or replay it.
    #[error("bench lockstep: {0}")]
    Lockstep(String),
    /// A default run could not be started or failed.
    #[error("bench default-runs: {0}")]
    DefaultRuns(String),
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
        Suite::Measure => {
            let request: serde_json::Value =
                serde_json::from_str(opts.request.as_deref().unwrap_or(""))
                    .map_err(|e| BenchError::Request(e.to_string()))?;
            let value = neural::measure(&request).map_err(BenchError::Request)?;
            Ok(format!(
                "{}\n",
                serde_json::json!({"value": value, "peak_mib": super::peak_rss_mib()})
            ))
        }
        Suite::Quality => {
            let results = super::quality::run(&opts.quality, log)?;
            Ok(super::quality::markdown(&results, opts.quality.samples))
        }
        Suite::Ablation => {
            let results = super::ablation::run(&opts.ablation, log)?;
            Ok(super::ablation::markdown(&results, opts.ablation.samples))
        }
        Suite::Lockstep => {
            let replays = super::lockstep::run(&opts.lockstep, log)?;
            Ok(super::lockstep::markdown(&replays))
        }
        Suite::DefaultRuns => {
            let timed =
                super::default_runs::run(&opts.default_runs, opts.reps, &opts.genmod_exe, log)?;
            Ok(super::default_runs::markdown(&timed))
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

fn classical_suite(opts: &BenchOptions, log: &mut dyn FnMut(&str)) -> Result<String, BenchError> {
    let pairs = opts.reps;
    let threads = rayon::current_num_threads();
    let split = crate::data::mnist::embedded();
    let mut reference = if opts.no_reference {
        None
    } else {
        ReferenceServer::start(&opts.python, "sklearn_classical.py", threads)
            .map_err(|e| {
                log(&format!(
                    "could not start {} {}: {e}; timing genmod only",
                    opts.python.display(),
                    reference_script("sklearn_classical.py").display()
                ))
            })
            .ok()
    };
    // Both sides fit each mixture once and time iterations of it at each measurement.
    let x = crate::classical::features(&split.train);
    let em_diagonal = classical::EmIterations::new(x.as_ref(), GmmCovariance::Diagonal, 10);
    let em_full = classical::EmIterations::new(x.as_ref(), GmmCovariance::Full, 10);
    // Each side times `reps` runs of the workload per measurement (the median). The
    // diagonal iteration (4 ms) needs nine: on this shared 2-core machine the first few
    // iterations after a pause ran at one core's speed while the second core woke (8 ms
    // with three, 4 ms from about five on, as in a fit's run of iterations).
    type Measure<'a> = Box<dyn Fn(usize) -> f64 + 'a>;
    let workloads: [(&str, &str, usize, Measure<'_>); 4] = [
        (
            "EM iteration, diagonal, K=10",
            "em_diag",
            9,
            Box::new(|r| em_diagonal.time(r)),
        ),
        (
            "EM iteration, full, K=10",
            "em_full",
            1,
            Box::new(|r| em_full.time(r)),
        ),
        (
            "GDA fit, shared covariance (LDA)",
            "lda_fit",
            1,
            Box::new(|r| classical::gda_fit(&split, CovarianceKind::Shared, r)),
        ),
        (
            "GDA fit, per-class covariance (QDA)",
            "qda_fit",
            1,
            Box::new(|r| classical::gda_fit(&split, CovarianceKind::PerClass, r)),
        ),
    ];
    let mut rows = Vec::new();
    for (name, key, reps, ours) in &workloads {
        log(&format!(
            "{name}: {pairs} pairs of genmod then scikit-learn, {threads} threads ..."
        ));
        let request = serde_json::json!({"op": key, "reps": reps});
        let row = Row::new(*name, "s", 0.0, None, "scikit-learn", true);
        rows.push(paired(
            row,
            pairs,
            || Ok(ours(*reps)),
            &request,
            &mut reference,
            log,
        )?);
    }
    let versions = reference
        .as_ref()
        .and_then(|r| r.version.clone())
        .map(|v| format!("; {v} kept running beside genmod, each workload timed as {pairs} interleaved pairs (genmod, then scikit-learn): medians of each side, and the median pair's speed-up with the range of all pairs"))
        .unwrap_or_else(|| format!("; medians of {pairs} measurements"));
    drop(reference);
    log("timing the f64 matrix product and the full-covariance iteration's floor ...");
    let gflops = classical::gemm_gflops(5);
    let (n, d) = (split.train.len(), 784);
    let scatter_rows = em_full.responsible_rows();
    let flops = classical::full_em_flops(n, d, &scatter_rows);
    let scattered = scatter_rows.iter().sum::<usize>();
    let floor = flops / 1e9 / gflops;
    let full = rows[1].genmod;
    let kn = 10 * n;
    Ok(format!(
        "Embedded digits (8,004 x 784, f64), {threads} threads{versions}.\n\n{}\nThe full-covariance iteration's floor: {:.1} GFLOP of cubic-order work (K = 10 components, each a triangular product of the rows (N·D²), a symmetric weighted scatter matrix of the rows with nonzero responsibility (M_k·D²; ΣM_k = {scattered} of the K·N = {kn} pairs at the timed mixture: the other responsibilities underflow to exactly 0 and add nothing), a Cholesky factorisation and a triangular inverse (D³/3 each)) at this machine's f64 matrix-product rate of {gflops:.1} GFLOP/s (faer, 8004 x 784 by 784 x 784, median of 5) is {floor:.2} s; genmod's iteration takes {full:.2} s, {:.2}x the floor.\n",
        markdown(&rows),
        flops / 1e9,
        full / floor,
    ))
}

/// PyTorch's side of the neural suite: `pytorch_neural.py --serve`, kept open for the whole
/// suite so that each of its measurements can follow one of genmod's within seconds.
struct ReferenceServer {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// The torch version it reported.
    version: Option<String>,
}

/// A process's user and system time in clock ticks, from /proc/PID/stat (fields 14 and
/// 15, after the parenthesised command name); `None` where it cannot be read.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

impl ReferenceServer {
    fn start(python: &Path, script: &str, threads: usize) -> std::io::Result<Self> {
        let mut child = Command::new(python)
            .arg(reference_script(script))
            .arg("--serve")
            .env("GENMOD_THREADS", threads.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().map(BufReader::new);
        match (stdin, stdout) {
            (Some(stdin), Some(stdout)) => Ok(Self {
                child,
                stdin: Some(stdin),
                stdout,
                version: None,
            }),
            _ => Err(std::io::Error::other(
                "the reference's pipes could not be opened",
            )),
        }
    }

    /// Waits until neither this process nor the reference uses the processor, so that
    /// each side's measurement starts on an idle machine. After a measurement, the
    /// reference's BLAS or OpenMP threads keep spinning for a while, waiting for more
    /// work: they took a core from genmod's next measurement, and the 4 ms diagonal EM
    /// iteration read 8 ms with the reference's process beside it. Each process is idle once its
    /// processor time (from /proc, in clock ticks) stays put over two polls; gives up after
    /// two seconds, and does not wait where /proc is not there.
    fn wait_until_idle(&self) {
        let pids = [std::process::id(), self.child.id()];
        let busy = || pids.map(cpu_ticks);
        let mut last = busy();
        let mut still = 0;
        let start = std::time::Instant::now();
        while still < 2 && start.elapsed() < std::time::Duration::from_secs(2) {
            std::thread::sleep(std::time::Duration::from_millis(20));
            let now = busy();
            if now.iter().any(Option::is_none) {
                return;
            }
            still = if now == last { still + 1 } else { 0 };
            last = now;
        }
    }

    /// One measurement: the reference's figure.
    fn ask(&mut self, request: &serde_json::Value) -> Result<f64, String> {
        let stdin = self.stdin.as_mut().ok_or("the reference has stopped")?;
        writeln!(stdin, "{request}")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("writing to the reference: {e}"))?;
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(0) => return Err("the reference exited (its error is above)".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("reading the reference's answer: {e}")),
        }
        let answer: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| format!("the reference's answer is not JSON ({e}): {line}"))?;
        if let Some(error) = answer["error"].as_str() {
            return Err(error.to_string());
        }
        if let Some(v) = answer["torch"].as_str() {
            self.version = Some(format!("PyTorch {v}"));
        }
        if let (Some(s), Some(n)) = (answer["sklearn"].as_str(), answer["numpy"].as_str()) {
            self.version = Some(format!("scikit-learn {s} with numpy {n}"));
        }
        answer["value"]
            .as_f64()
            .ok_or_else(|| format!("the reference's answer has no value: {line}"))
    }
}

impl Drop for ReferenceServer {
    fn drop(&mut self) {
        // Closing its input ends the script's loop; it is waited for so no process is left.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// Times one workload, described by `request`, as `pairs` interleaved pairs: genmod's
/// measurement, then the reference's, so that a neighbour's load over the machine's minutes
/// falls on both sides of each ratio. Gives the row's medians and every pair's speed-up; a
/// reference that fails is logged and asked nothing more for this row, which then has
/// genmod's figure only.
fn paired(
    mut row: Row,
    pairs: usize,
    mut ours: impl FnMut() -> Result<f64, String>,
    request: &serde_json::Value,
    reference: &mut Option<ReferenceServer>,
    log: &mut dyn FnMut(&str),
) -> Result<Row, BenchError> {
    let (mut g, mut r) = (Vec::new(), Vec::new());
    let mut asking = reference.is_some();
    for _ in 0..pairs {
        if let Some(server) = reference.as_ref() {
            server.wait_until_idle();
        }
        let ours = ours().map_err(|cause| BenchError::Workload {
            workload: row.workload.clone(),
            cause,
        })?;
        g.push(ours);
        let Some(server) = reference.as_mut().filter(|_| asking) else {
            continue;
        };
        server.wait_until_idle();
        match server.ask(request) {
            Ok(theirs) => {
                r.push(theirs);
                row.pair_speedups.push(if row.lower_is_better {
                    theirs / ours
                } else {
                    ours / theirs
                });
            }
            Err(e) => {
                log(&format!("{} on {}: {e}", row.reference_name, row.workload));
                asking = false;
            }
        }
    }
    row.genmod = super::median(&g);
    row.reference = (!r.is_empty()).then(|| super::median(&r));
    if r.len() != g.len() {
        // A side with fewer measurements is not a paired comparison.
        row.pair_speedups.clear();
        row.reference = None;
    }
    Ok(row)
}

/// Each side's peak resident memory for `request`, in MiB: one measurement in a fresh
/// process of each (`genmod bench measure`, `pytorch_neural.py --once`), whose lifetime peak
/// is the workload's, libraries and data included. A side that fails gives none.
fn fresh_peaks(
    opts: &BenchOptions,
    request: &serde_json::Value,
    threads: usize,
) -> [Option<f64>; 2] {
    let peak = |cmd: &mut Command| -> Option<f64> {
        let out = cmd
            .env("GENMOD_THREADS", threads.to_string())
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        let answer: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        answer["peak_mib"].as_f64()
    };
    let json = request.to_string();
    let ours = peak(
        Command::new(&opts.genmod_exe)
            .args(["bench", "measure", "--request", &json])
            .args(["--threads", &threads.to_string()]),
    );
    let theirs = (!opts.no_reference)
        .then(|| {
            peak(
                Command::new(&opts.python)
                    .arg(reference_script("pytorch_neural.py"))
                    .args(["--once", &json]),
            )
        })
        .flatten();
    [ours, theirs]
}

/// Training rows: (workload, batch sizes, images per measurement).
fn training_rows() -> Vec<(neural::Workload, &'static [usize], usize)> {
    use neural::Workload;
    const ALL_BATCHES: &[usize] = &[64, 128, 256];
    vec![
        (
            Workload::report(ModelKind::Autoencoder),
            ALL_BATCHES,
            12_800,
        ),
        (Workload::report(ModelKind::Vae), ALL_BATCHES, 12_800),
        (Workload::report(ModelKind::Gan), ALL_BATCHES, 5_120),
        (Workload::report(ModelKind::Cgan), ALL_BATCHES, 5_120),
        (Workload::report(ModelKind::Dcgan), ALL_BATCHES, 1_280),
        (Workload::recipe(ModelKind::Gan), &[64], 5_120),
        (Workload::recipe(ModelKind::Cgan), &[64], 5_120),
        (Workload::recipe(ModelKind::Cdcgan), &[64], 1_280),
        (Workload::dcgan_colour(32), &[64], 640),
        (Workload::dcgan_colour(64), &[64], 192),
    ]
}

/// Training rows repeated on `--data-dir`'s images: one model of each kind of net.
fn full_size_rows() -> Vec<(neural::Workload, &'static [usize], usize)> {
    use neural::Workload;
    vec![
        (Workload::report(ModelKind::Vae), &[64], 12_800),
        (Workload::report(ModelKind::Gan), &[64], 5_120),
        (Workload::report(ModelKind::Dcgan), &[64], 1_280),
    ]
}

/// Sampling rows: (workload, images a batch, rounds).
fn sampling_rows() -> Vec<(neural::Workload, usize, usize)> {
    use neural::Workload;
    vec![
        (Workload::report(ModelKind::Vae), 1000, 10),
        (Workload::report(ModelKind::Gan), 1000, 5),
        (Workload::report(ModelKind::Cgan), 1000, 5),
        (Workload::report(ModelKind::Dcgan), 1000, 2),
        (Workload::recipe(ModelKind::Cgan), 1000, 5),
        (Workload::recipe(ModelKind::Cdcgan), 1000, 2),
        (Workload::dcgan_colour(32), 256, 2),
        (Workload::dcgan_colour(64), 64, 2),
    ]
}

fn neural_suite(opts: &BenchOptions, log: &mut dyn FnMut(&str)) -> Result<String, BenchError> {
    let threads = rayon::current_num_threads();
    let pairs = opts.reps;
    let mut rows: Vec<Row> = Vec::new();
    // First, so that a start that fails stops the run before the long measurements, and
    // before the reference's server starts beside it.
    log("timing start to first grid, 3 fresh processes each ...");
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
            Command::new(&opts.python)
                .arg(reference_script("pytorch_neural.py"))
                .arg("--first-grid")
                .env("GENMOD_THREADS", threads.to_string())
                .output()
        })
    };
    let mut reference = if opts.no_reference {
        None
    } else {
        match ReferenceServer::start(&opts.python, "pytorch_neural.py", threads) {
            Ok(server) => Some(server),
            Err(e) => {
                log(&format!(
                    "could not start {} {}: {e}; timing genmod only",
                    opts.python.display(),
                    reference_script("pytorch_neural.py").display()
                ));
                None
            }
        }
    };
    let mut timed: Vec<(Row, serde_json::Value, bool)> = Vec::new();
    let mut rows_of_training = training_rows();
    if let Some(dir) = &opts.data_dir {
        // Loaded here once, so that a wrong folder stops the run before the paired
        // measurements.
        let split = crate::data::mnist::load_dir(dir, crate::data::mnist::Variant::Mnist)
            .map_err(|e| BenchError::DataDir(e.to_string()))?;
        for (mut w, batches, images) in full_size_rows() {
            w.name = format!(
                "{}, the {} training images of `--data-dir`",
                w.name,
                split.train.len()
            );
            w.data_dir = Some(dir.clone());
            rows_of_training.push((w, batches, images));
        }
    }
    for (w, batches, images) in rows_of_training {
        for &batch in batches {
            let steps = (images / batch).max(2);
            let mut request = w.request("train");
            request["batch"] = batch.into();
            request["steps"] = steps.into();
            let name = format!("training, batch {batch}: {}", w.name);
            timed.push((
                Row::new(name, "img/s", 0.0, None, "PyTorch", false),
                request,
                true,
            ));
        }
    }
    for layer in &neural::DCGAN_LAYERS {
        let request = serde_json::json!({"op": "layer", "key": layer.key, "reps": 9});
        let name = format!("DCGAN layer forward+backward, batch 128: {}", layer.name);
        timed.push((
            Row::new(name, "ms", 0.0, None, "PyTorch", true),
            request,
            false,
        ));
    }
    for (w, n, rounds) in sampling_rows() {
        let mut request = w.request("sample");
        request["n"] = n.into();
        request["rounds"] = rounds.into();
        let name = format!("sampling, {n} a batch: {}", w.name);
        timed.push((
            Row::new(name, "img/s", 0.0, None, "PyTorch", false),
            request,
            true,
        ));
    }
    for (row, request, memory) in timed {
        log(&format!(
            "{}: {pairs} pairs of genmod then PyTorch, {threads} threads ...",
            row.workload
        ));
        let mut row = paired(
            row,
            pairs,
            || neural::measure(&request),
            &request,
            &mut reference,
            log,
        )?;
        if row.unit == "ms" {
            row.genmod *= 1e3;
            row.reference = row.reference.map(|s| s * 1e3);
        }
        if memory {
            row.peak_mib = fresh_peaks(opts, &request, threads);
        }
        rows.push(row);
    }
    let version = reference.as_ref().and_then(|r| r.version.clone());
    drop(reference);
    rows.push(Row::new(
        "start to first 8x8 VAE grid (fresh process, median of 3)",
        "s",
        ours_first,
        torch_first,
        "PyTorch",
        true,
    ));
    let versions = version
        .map(|v| format!("; {v} kept running beside genmod, each workload timed as {pairs} interleaved pairs (genmod, then PyTorch): medians of each side, and the median pair's speed-up with the range of all pairs"))
        .unwrap_or_else(|| format!("; medians of {pairs} measurements"));
    let memory = " Peak RSS: the peak resident memory of a fresh process of each side making one of the row's measurements, libraries and data included.";
    let data = if opts.data_dir.is_some() {
        " (the rows marked `--data-dir`: that folder's training images)"
    } else {
        ""
    };
    Ok(format!(
        "Embedded digits{data} (28x28 rows) or uniform noise (32x32x3 and 64x64x3 rows), CPU, {threads} threads{versions}.{memory}\n\n{}",
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

#[cfg(test)]
mod tests {
    use super::cpu_ticks;

    /// The idle wait reads processor time from /proc: it must see this process's time grow
    /// while it computes, and report no figure for a process that does not exist.
    #[test]
    #[cfg(target_os = "linux")]
    fn processor_time_grows_while_computing() {
        let me = std::process::id();
        let before = cpu_ticks(me).expect("this process's /proc/PID/stat");
        // Clock ticks are 10 ms: spin until the count moves, at most 5 s of work.
        let start = std::time::Instant::now();
        let mut x = 1u64;
        while cpu_ticks(me) == Some(before) && start.elapsed().as_secs() < 5 {
            for i in 0..100_000u64 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
            }
        }
        assert!(cpu_ticks(me).expect("still readable") > before);
        assert_eq!(cpu_ticks(u32::MAX), None);
    }
}
