//! `genmod bench default-runs`: how long each neural model's default run takes, started as
//! a user starts it (`genmod train MODEL`, a fresh process writing its checkpoints and
//! sample grids), so that the "about three minutes" the defaults are sized for is a
//! measurement the book includes rather than a number typed into it.
//!
//! The runs are interleaved, one of each model in turn and then again, so that a busy
//! minute on a shared machine lands on one run of several models instead of on every run
//! of one; the table reports each model's median with its range.

use super::suite::BenchError;
use super::{median, min_max};
use crate::neural::ModelKind;
use crate::train;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// What `bench default-runs` times (the runs per model and the executable are the bench's
/// own `--reps` and `genmod` executable).
#[derive(Debug, Clone)]
pub struct DefaultRunsOptions {
    pub models: Vec<ModelKind>,
}

/// One model's runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Timed {
    pub kind: ModelKind,
    pub epochs: usize,
    pub batch: usize,
    pub steps: usize,
    /// Wall seconds of each run, in the order they ran.
    pub seconds: Vec<f64>,
}

impl Timed {
    /// Training images per second at the median run.
    pub fn images_per_second(&self) -> f64 {
        (self.steps * self.batch) as f64 / median(&self.seconds)
    }
}

fn error(message: impl Into<String>) -> BenchError {
    BenchError::DefaultRuns(message.into())
}

/// Runs every model's default run `reps` times with `genmod_exe`, interleaved; `log`
/// follows progress.
pub fn run(
    opts: &DefaultRunsOptions,
    reps: usize,
    genmod_exe: &Path,
    log: &mut dyn FnMut(&str),
) -> Result<Vec<Timed>, BenchError> {
    if reps == 0 {
        return Err(BenchError::NoReps);
    }
    let train_images = crate::data::mnist::embedded().train.len();
    let mut timed: Vec<Timed> = opts
        .models
        .iter()
        .map(|&kind| {
            let (epochs, batch) = train::default_budget(kind);
            Timed {
                kind,
                epochs,
                batch,
                steps: train_images / batch * epochs,
                seconds: Vec::new(),
            }
        })
        .collect();
    for rep in 0..reps {
        for t in &mut timed {
            let name = t.kind.name();
            log(&format!("run {} of {}: genmod train {name}", rep + 1, reps));
            let dir = tempfile::tempdir().map_err(|e| error(format!("a run folder: {e}")))?;
            let out = dir.path().join(name);
            let start = Instant::now();
            let result = Command::new(genmod_exe)
                .args(["train", name, "--out"])
                .arg(&out)
                .output()
                .map_err(|e| error(format!("starting {}: {e}", genmod_exe.display())))?;
            let seconds = start.elapsed().as_secs_f64();
            if !result.status.success() {
                let stderr = String::from_utf8_lossy(&result.stderr);
                let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
                return Err(error(format!(
                    "genmod train {name} failed ({}): {}",
                    result.status,
                    tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
                )));
            }
            log(&format!("  {seconds:.1} s"));
            t.seconds.push(seconds);
        }
    }
    Ok(timed)
}

/// The table: each model's budget, median seconds with the range, and throughput.
pub fn markdown(timed: &[Timed]) -> String {
    let mut s = String::from(
        "| model | epochs × batch (steps) | seconds, median [min–max] | training images/s |\n|---|---|---|---|\n",
    );
    for t in timed {
        let (lo, hi) = min_max(&t.seconds);
        s.push_str(&format!(
            "| {} | {} × {} ({}) | {:.0} [{lo:.0}–{hi:.0}] | {:.0} |\n",
            t.kind.name(),
            t.epochs,
            t.batch,
            t.steps,
            median(&t.seconds),
            t.images_per_second(),
        ));
    }
    let reps = timed.first().map_or(0, |t| t.seconds.len());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    s.push_str(&format!(
        "\n{reps} runs of `genmod train MODEL` per model ({} build, {cores} logical CPUs), taken in turn across the models; wall time from start to exit, checkpoints and sample grids included. Written by `genmod bench default-runs --reps {reps}`.\n",
        if cfg!(debug_assertions) { "debug" } else { "release" },
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_reports_the_median_run_and_its_range() {
        let timed = Timed {
            kind: ModelKind::Dcgan,
            epochs: 15,
            batch: 64,
            steps: 1875,
            seconds: vec![196.2, 154.4, 156.0],
        };
        // 1875 · 64 images in the median run's 156 s.
        assert!((timed.images_per_second() - 120_000.0 / 156.0).abs() < 1e-9);
        let md = markdown(&[timed]);
        assert!(
            md.contains("| dcgan | 15 × 64 (1875) | 156 [154–196] | 769 |"),
            "{md}"
        );
        assert!(
            md.contains("3 runs of `genmod train MODEL` per model"),
            "{md}"
        );
    }

    fn vae_runs(reps: usize, exe: &str) -> Result<Vec<Timed>, BenchError> {
        let opts = DefaultRunsOptions {
            models: vec![ModelKind::Vae],
        };
        run(&opts, reps, Path::new(exe), &mut |_| {})
    }

    #[test]
    fn no_runs_is_refused() {
        let refused = vae_runs(0, "genmod");
        assert!(matches!(refused, Err(BenchError::NoReps)));
    }

    #[test]
    fn an_executable_that_cannot_start_is_named() {
        let err = vae_runs(1, "/nonexistent/genmod").unwrap_err().to_string();
        assert!(err.contains("starting /nonexistent/genmod"), "{err}");
    }
}
