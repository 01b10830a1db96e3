//! Run folders: where a run's checkpoints, sample grid and metrics live, and the rules that
//! keep a new run from destroying an earlier one. Both faces follow them:
//!
//! - a new run gets a folder of its own under the runs folder (`runs/` by default), named
//!   after the model and the time it started (`vae-20261202-214506`), as TensorBoard users
//!   expect;
//! - an exact folder (`--out`) that already holds a run is refused, naming `--resume` and
//!   `--overwrite`;
//! - a resumed run continues in its own folder unless told otherwise.
//!
//! Every run appends its metrics to `metrics.csv` (`step,epoch,metric,value`, one row per
//! metric and step, each step's rows written whole). A row torn by a kill is skipped on
//! reading, and a resumed run first drops the rows past its checkpoint, so the file stays
//! one curve.

use super::checkpoint;
use crate::neural::ModelKind;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The metrics file of a run folder.
pub const METRICS_FILE: &str = "metrics.csv";
/// The sample grid a run keeps up to date.
pub const SAMPLES_FILE: &str = "samples.png";

/// Where a run is to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunFolder {
    /// A new folder under this parent.
    New(PathBuf),
    /// Exactly this folder; `overwrite` allows replacing a run already there.
    Exact { dir: PathBuf, overwrite: bool },
}

/// Why a run folder cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RunFolderError {
    #[error(
        "{}: already holds a run ({what}); continue it with --resume {}, choose another --out, or pass --overwrite to replace it",
        dir.display(),
        dir.display()
    )]
    Occupied { dir: PathBuf, what: String },
    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RunFolderError + '_ {
    move |cause| RunFolderError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

/// The run folder a checkpoint belongs to (the path itself if it is a run folder).
pub fn run_of(path: &Path) -> PathBuf {
    if path.join("meta.json").is_file()
        && let Some(parent) = path.parent()
    {
        return parent.to_path_buf();
    }
    path.to_path_buf()
}

/// What a folder holds of a run, in words, or `None` if it holds none.
pub fn existing_run(dir: &Path) -> Option<String> {
    let ckpts = checkpoint::list(dir);
    let metrics = dir.join(METRICS_FILE).is_file();
    match ckpts.last() {
        Some(newest) => Some(format!(
            "{} checkpoint{}, the newest {}",
            ckpts.len(),
            if ckpts.len() == 1 { "" } else { "s" },
            newest.file_name().unwrap_or_default().to_string_lossy()
        )),
        None if metrics => Some(format!("a {METRICS_FILE}")),
        None => None,
    }
}

/// The newest good checkpoint of a `kind` run under `parent`: from `parent/KIND` if that
/// holds one (a folder named with `--out`), else from the newest `KIND-…` run folder that
/// does (the names sort by the time the runs started).
pub fn newest_checkpoint(parent: &Path, kind: ModelKind) -> Option<PathBuf> {
    let of_kind = |dir: &Path| {
        let ckpt = checkpoint::resolve(dir).ok()?;
        let meta = checkpoint::read_meta(&ckpt).ok()?;
        (meta.model.kind == kind).then_some(ckpt)
    };
    if let Some(c) = of_kind(&parent.join(kind.name())) {
        return Some(c);
    }
    let prefix = format!("{}-", kind.name());
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(parent)
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    dirs.iter().rev().find_map(|d| of_kind(d))
}

/// The folder for a run of `kind`, created, by the rules above. `resume` is the checkpoint
/// or run folder the run continues, if any.
pub fn settle(
    folder: &RunFolder,
    kind: ModelKind,
    resume: Option<&Path>,
) -> Result<PathBuf, RunFolderError> {
    let continued = resume.map(run_of);
    match (folder, continued) {
        (RunFolder::New(_), Some(run)) => Ok(run),
        (RunFolder::New(parent), None) => create_new(parent, kind),
        (RunFolder::Exact { dir, overwrite }, continued) => {
            let same = continued.as_ref().is_some_and(|run| same_folder(run, dir));
            if !same && let Some(what) = existing_run(dir) {
                if !overwrite {
                    return Err(RunFolderError::Occupied {
                        dir: dir.clone(),
                        what,
                    });
                }
                clear(dir)?;
            }
            std::fs::create_dir_all(dir).map_err(io(dir))?;
            Ok(dir.clone())
        }
    }
}

fn same_folder(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Creates `parent/KIND-YYYYMMDD-HHMMSS` (UTC), with `-2`, `-3`, … if that exists.
pub fn create_new(parent: &Path, kind: ModelKind) -> Result<PathBuf, RunFolderError> {
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let stamp = utc_stamp(std::time::SystemTime::now());
    let base = format!("{}-{stamp}", kind.name());
    for n in 1.. {
        let name = if n == 1 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        let dir = parent.join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(cause) => return Err(RunFolderError::Io { path: dir, cause }),
        }
    }
    unreachable!("an unbounded range ends only by returning")
}

/// Removes what a run wrote to `dir` (checkpoints, the grid, the metrics), and nothing else.
fn clear(dir: &Path) -> Result<(), RunFolderError> {
    for ckpt in checkpoint::list(dir) {
        std::fs::remove_dir_all(&ckpt).map_err(io(&ckpt))?;
    }
    checkpoint::clean_stale(dir);
    for file in [METRICS_FILE, SAMPLES_FILE] {
        let p = dir.join(file);
        if p.is_file() {
            std::fs::remove_file(&p).map_err(io(&p))?;
        }
    }
    Ok(())
}

/// `YYYYMMDD-HHMMSS` of a time, in UTC (the civil-from-days conversion of Howard Hinnant's
/// "chrono-compatible low-level date algorithms").
pub fn utc_stamp(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `YYYY-MM-DD HH:MM` of a time, in UTC, for people.
pub fn utc_minute(t: std::time::SystemTime) -> String {
    let s = utc_stamp(t);
    format!(
        "{}-{}-{} {}:{}",
        &s[0..4],
        &s[4..6],
        &s[6..8],
        &s[9..11],
        &s[11..13]
    )
}

/// One row of a metrics file.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    /// Steps completed when the value was measured.
    pub step: u64,
    pub epoch: usize,
    pub metric: String,
    pub value: f64,
}

/// The rows of a metrics file; a row that does not parse whole (a kill mid-write) is
/// skipped.
pub fn read_metrics(path: &Path) -> std::io::Result<Vec<MetricRow>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text.lines().filter_map(parse_row).collect())
}

fn parse_row(line: &str) -> Option<MetricRow> {
    let mut f = line.split(',');
    let row = MetricRow {
        step: f.next()?.parse().ok()?,
        epoch: f.next()?.parse().ok()?,
        metric: f.next()?.to_string(),
        value: f.next()?.parse().ok()?,
    };
    (f.next().is_none() && !row.metric.is_empty()).then_some(row)
}

/// Appends each step's metrics to a run's `metrics.csv`.
pub struct MetricsLog {
    path: PathBuf,
    file: std::fs::File,
}

impl MetricsLog {
    /// Opens `dir/metrics.csv` for a run that starts at `start_step`: rows past it (from a
    /// run that went further before it was interrupted) and torn rows are dropped first.
    pub fn open(dir: &Path, start_step: u64) -> std::io::Result<Self> {
        let path = dir.join(METRICS_FILE);
        if path.is_file() {
            let text = std::fs::read_to_string(&path)?;
            let kept: String = text
                .lines()
                .filter(|l| parse_row(l).is_some_and(|r| r.step <= start_step))
                .flat_map(|l| [l, "\n"])
                .collect();
            if kept.len() != text.len() {
                let tmp = dir.join(format!(".{METRICS_FILE}.tmp"));
                std::fs::write(&tmp, kept)?;
                std::fs::rename(&tmp, &path)?;
            }
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        Ok(Self { path, file })
    }

    /// Appends to any file (the CLI's `--metrics-log`), as it is: rows already there stay.
    pub fn append_to(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one step's rows in a single write.
    pub fn append(
        &mut self,
        step: u64,
        epoch: usize,
        metrics: &crate::neural::Metrics,
    ) -> std::io::Result<()> {
        use std::fmt::Write as _;
        let mut rows = String::new();
        for (k, v) in metrics {
            let _ = writeln!(rows, "{step},{epoch},{k},{v}");
        }
        self.file.write_all(rows.as_bytes())
    }
}

/// What the runs browser shows of one run folder.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    pub dir: PathBuf,
    /// The folder's name.
    pub name: String,
    /// From the newest checkpoint; a run killed before its first has none.
    pub kind: Option<ModelKind>,
    pub dataset: Option<String>,
    /// The last step in the metrics file (or of the newest checkpoint, without metrics).
    pub steps: u64,
    /// Epochs begun, from the metrics file.
    pub epochs: usize,
    /// The metrics of the last step logged, in the file's order.
    pub last_metrics: Vec<(String, f64)>,
    /// The newest checkpoint that is not marked diverged, and when it was written.
    pub newest_checkpoint: Option<(PathBuf, std::time::SystemTime)>,
    /// Checkpoints marked DIVERGED.
    pub diverged: usize,
    /// When the run last wrote anything (its metrics or a checkpoint): the list's order.
    pub modified: std::time::SystemTime,
}

/// The rows of the last step in a metrics file, read from its end (a long run's file holds
/// hundreds of thousands of rows, and the browser lists every run).
fn last_step_rows(path: &Path) -> std::io::Result<Vec<MetricRow>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    // A step writes one short row per metric: 16 KiB holds the last several steps.
    let from = len.saturating_sub(16 * 1024);
    file.seek(SeekFrom::Start(from))?;
    let mut text = String::new();
    file.take(len - from).read_to_string(&mut text)?;
    // The first line may start mid-row unless the read began at the start of the file.
    let lines = text.lines().skip(usize::from(from > 0));
    let rows: Vec<MetricRow> = lines.filter_map(parse_row).collect();
    let last = rows.iter().map(|r| r.step).max();
    Ok(rows.into_iter().filter(|r| Some(r.step) == last).collect())
}

/// A summary of the run in `dir`, or `None` if it holds no run (no checkpoint and no
/// metrics file).
pub fn summarise(dir: &Path) -> Option<RunSummary> {
    existing_run(dir)?;
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    // Read-only: a run may be training in another process right now.
    let newest = checkpoint::newest_good(dir);
    let meta = newest
        .as_deref()
        .and_then(|c| checkpoint::read_meta(c).ok());
    let metrics_path = dir.join(METRICS_FILE);
    let rows = last_step_rows(&metrics_path).unwrap_or_default();
    let diverged = checkpoint::list(dir)
        .iter()
        .filter(|c| checkpoint::is_diverged(c))
        .count();
    let checkpoint_time = newest.as_deref().and_then(|c| mtime(&c.join("meta.json")));
    let modified = [mtime(&metrics_path), checkpoint_time]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(std::time::UNIX_EPOCH);
    Some(RunSummary {
        dir: dir.to_path_buf(),
        name: dir.file_name().map_or_else(
            || dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ),
        kind: meta.as_ref().map(|m| m.model.kind),
        dataset: meta.as_ref().map(|m| m.dataset.clone()),
        steps: rows
            .first()
            .map(|r| r.step)
            .or(meta.as_ref().map(|m| m.step))
            .unwrap_or(0),
        epochs: rows.first().map_or(0, |r| r.epoch + 1),
        last_metrics: rows.into_iter().map(|r| (r.metric, r.value)).collect(),
        newest_checkpoint: newest.zip(checkpoint_time),
        diverged,
        modified,
    })
}

/// The runs directly under `parent`, the most recently active first. A missing parent
/// holds no runs.
pub fn list_runs(parent: &Path) -> std::io::Result<Vec<RunSummary>> {
    let entries = match std::fs::read_dir(parent) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut runs: Vec<RunSummary> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .filter_map(|p| summarise(&p))
        .collect();
    runs.sort_by(|a, b| b.modified.cmp(&a.modified).then(a.name.cmp(&b.name)));
    Ok(runs)
}

/// Deletes the run in `dir`: its checkpoints, grid and metrics, then the folder if nothing
/// else is left in it (PNGs a user saved there stay, with the folder). Refuses a folder
/// that holds no run, so a wrong path cannot remove other files.
pub fn delete_run(dir: &Path) -> Result<(), RunFolderError> {
    if existing_run(dir).is_none() {
        return Err(RunFolderError::Io {
            path: dir.to_path_buf(),
            cause: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "holds no run (no ckpt-* folder and no metrics.csv)",
            ),
        });
    }
    clear(dir)?;
    // Fails, harmlessly, when the user's own files remain.
    let _ = std::fs::remove_dir(dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps_match_known_dates() {
        let at = |s: u64| utc_stamp(std::time::UNIX_EPOCH + std::time::Duration::from_secs(s));
        assert_eq!(at(0), "19700101-000000");
        // 2000-02-29 (a leap day in a century year divisible by 400) 12:34:56.
        assert_eq!(at(951_827_696), "20000229-123456");
        // 2026-12-02 21:45:06.
        assert_eq!(at(1_796_247_906), "20261202-214506");
    }

    #[test]
    fn torn_rows_are_skipped_and_a_resume_drops_rows_past_its_step() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(METRICS_FILE);
        std::fs::write(&p, "1,0,loss,3.5\n2,0,loss,3.25\n3,0,loss,3.0\n4,0,lo").unwrap();
        let rows = read_metrics(&p).unwrap();
        assert_eq!(rows.iter().map(|r| r.step).collect::<Vec<_>>(), [1, 2, 3]);
        let mut log = MetricsLog::open(dir.path(), 2).unwrap();
        log.append(3, 0, &vec![(crate::neural::Metric::Loss, 2.5)])
            .unwrap();
        let rows = read_metrics(&p).unwrap();
        let got: Vec<(u64, f64)> = rows.iter().map(|r| (r.step, r.value)).collect();
        assert_eq!(got, [(1, 3.5), (2, 3.25), (3, 2.5)]);
    }

    #[test]
    fn an_occupied_exact_folder_is_refused_unless_resumed_or_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        std::fs::create_dir_all(run.join("ckpt-0000000010")).unwrap();
        std::fs::write(run.join("ckpt-0000000010/meta.json"), "{}").unwrap();
        std::fs::write(run.join("notes.txt"), "mine").unwrap();
        let exact = |overwrite| RunFolder::Exact {
            dir: run.clone(),
            overwrite,
        };
        let e = settle(&exact(false), ModelKind::Vae, None).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("1 checkpoint, the newest ckpt-0000000010")
                && msg.contains("--resume")
                && msg.contains("--overwrite"),
            "{msg}"
        );
        // Continuing the run in its own folder is no conflict.
        let ckpt = run.join("ckpt-0000000010");
        assert_eq!(
            settle(&exact(false), ModelKind::Vae, Some(&ckpt)).unwrap(),
            run
        );
        assert_eq!(
            settle(
                &RunFolder::New(dir.path().into()),
                ModelKind::Vae,
                Some(&ckpt)
            )
            .unwrap(),
            run
        );
        // Overwriting removes the run's files and leaves the user's.
        settle(&exact(true), ModelKind::Vae, None).unwrap();
        assert!(existing_run(&run).is_none());
        assert!(run.join("notes.txt").is_file());
    }

    #[test]
    fn new_runs_never_share_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        let a = settle(&RunFolder::New(dir.path().into()), ModelKind::Gan, None).unwrap();
        let b = settle(&RunFolder::New(dir.path().into()), ModelKind::Gan, None).unwrap();
        assert_ne!(a, b);
        let name = a.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("gan-20") && name.len() == "gan-20261202-214506".len(),
            "{name}"
        );
    }

    #[test]
    fn runs_are_summarised_from_the_end_of_their_metrics_and_only_runs_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        let long = dir.path().join("vae-long");
        std::fs::create_dir(&long).unwrap();
        // 3,000 steps of two metrics: far more than the 16 KiB read from the end.
        let mut text = String::new();
        for step in 1..=3000u64 {
            let epoch = (step - 1) / 62;
            text.push_str(&format!(
                "{step},{epoch},recon,{}\n",
                200.0 - step as f64 / 100.0
            ));
            text.push_str(&format!("{step},{epoch},kl,{}\n", step as f64 / 1000.0));
        }
        std::fs::write(long.join(METRICS_FILE), &text).unwrap();
        let torn = dir.path().join("gan-torn");
        std::fs::create_dir(&torn).unwrap();
        std::fs::write(
            torn.join(METRICS_FILE),
            "1,0,d_loss,1.5\n1,0,g_loss,0.7\n2,0,d_lo",
        )
        .unwrap();
        let other = dir.path().join("notes");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join("todo.txt"), "not a run").unwrap();

        let runs = list_runs(dir.path()).unwrap();
        let names: std::collections::BTreeSet<&str> =
            runs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["gan-torn", "vae-long"].into());
        assert!(runs.windows(2).all(|w| w[0].modified >= w[1].modified));
        let l = runs.iter().find(|r| r.name == "vae-long").unwrap();
        assert_eq!((l.steps, l.epochs), (3000, 2999 / 62 + 1));
        assert_eq!(
            l.last_metrics,
            [("recon".to_string(), 170.0), ("kl".to_string(), 3.0)]
        );
        assert_eq!((l.kind, l.newest_checkpoint.is_none()), (None, true));
        let t = runs.iter().find(|r| r.name == "gan-torn").unwrap();
        assert_eq!(t.steps, 1, "the torn row of step 2 is not a step");
        assert_eq!(t.last_metrics.len(), 2);
        assert!(list_runs(&dir.path().join("missing")).unwrap().is_empty());
        // A save in progress (its temporary folder) in a listed run is left alone.
        let saving = torn.join(format!("{}0000000002", checkpoint::TMP_PREFIX));
        std::fs::create_dir(&saving).unwrap();
        list_runs(dir.path()).unwrap();
        assert!(saving.is_dir(), "listing removed another process's save");
    }

    #[test]
    fn deleting_removes_a_run_and_refuses_a_folder_that_holds_none() {
        let dir = tempfile::tempdir().unwrap();
        let other = dir.path().join("notes");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join("todo.txt"), "keep").unwrap();
        let e = delete_run(&other).unwrap_err().to_string();
        assert!(e.contains("notes") && e.contains("holds no run"), "{e}");
        assert!(other.join("todo.txt").is_file());

        let run = dir.path().join("vae-1");
        std::fs::create_dir_all(run.join("ckpt-0000000010")).unwrap();
        std::fs::write(run.join("ckpt-0000000010/meta.json"), "{}").unwrap();
        std::fs::write(run.join(METRICS_FILE), "1,0,loss,1\n").unwrap();
        delete_run(&run).unwrap();
        assert!(!run.exists());

        // A PNG the user saved in the run folder stays, and so does the folder.
        let kept = dir.path().join("vae-2");
        std::fs::create_dir(&kept).unwrap();
        std::fs::write(kept.join(METRICS_FILE), "1,0,loss,1\n").unwrap();
        std::fs::write(kept.join("grid-step-1.png"), "png").unwrap();
        delete_run(&kept).unwrap();
        assert!(!kept.join(METRICS_FILE).exists() && kept.join("grid-step-1.png").is_file());
    }
}
