//! Checkpoints: `RUN/ckpt-STEP/` holding `model.safetensors` (weights and batch-norm
//! statistics), `optimizer.safetensors` (Adam's moments) and `meta.json` (configuration,
//! step, seed, optimiser step counts). Each is written into a temporary folder that is then
//! renamed into place, so a crash at any moment leaves either a complete checkpoint or none;
//! a stale temporary folder is removed by the next save or load.
//!
//! A checkpoint whose weights led a run to diverge gets a [`DIVERGED_MARK`] file; finding
//! the newest checkpoint of a run folder passes over those, so `--resume RUN` continues from
//! weights that trained soundly.

use crate::neural::{ImageShape, Model, NeuralConfig};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// What a checkpoint says about the run it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub format: u32,
    pub model: NeuralConfig,
    pub shape: ImageShape,
    pub num_classes: usize,
    /// Optimisation steps completed.
    pub step: u64,
    pub seed: u64,
    pub batch_size: usize,
    pub dataset: String,
    /// Adam's step count per optimiser name, in name order so that the same run writes
    /// the same bytes.
    pub optimizer_steps: BTreeMap<String, u64>,
}

/// The current checkpoint format.
pub const FORMAT: u32 = 1;
pub(crate) const TMP_PREFIX: &str = ".tmp-ckpt-";
/// The file that marks a checkpoint whose weights diverged; it holds the reason.
pub const DIVERGED_MARK: &str = "DIVERGED";

/// Why a checkpoint could not be found, written or read. Each names the file or folder.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{}: no such checkpoint or run folder", .0.display())]
    NotFound(PathBuf),
    #[error("{}: holds no complete checkpoint (ckpt-*/meta.json)", .0.display())]
    NoneComplete(PathBuf),
    #[error("{}: every checkpoint is marked {DIVERGED_MARK}; to try one anyway, name its ckpt-* folder", .0.display())]
    OnlyDiverged(PathBuf),
    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{}: {cause}", path.display())]
    Tensors {
        path: PathBuf,
        cause: candle_core::Error,
    },
    #[error("{}: not a genmod checkpoint: {cause}", path.display())]
    NotACheckpoint {
        path: PathBuf,
        cause: serde_json::Error,
    },
    #[error("{}: checkpoint format {found} is not the supported {FORMAT}", path.display())]
    Format { path: PathBuf, found: u32 },
    #[error("{}: lacks the tensor `{name}`: a checkpoint of another model?", path.display())]
    MissingTensor { path: PathBuf, name: String },
    #[error("{}: tensor `{name}` has shape {found:?}, the model expects {expected:?}", path.display())]
    Shape {
        path: PathBuf,
        name: String,
        found: Vec<usize>,
        expected: Vec<usize>,
    },
    /// A file larger, or a header longer, than the model it claims to hold can need: it is
    /// refused before anything is allocated for it.
    #[error("{}: {what} is {found} bytes, more than the {limit} this model's checkpoint can need; not read", path.display())]
    TooLarge {
        path: PathBuf,
        what: &'static str,
        found: u64,
        limit: u64,
    },
    #[error("{}: the tensor table is not what a checkpoint holds: {why}", path.display())]
    BadTable { path: PathBuf, why: String },
}

/// The largest `meta.json` read: a real one is about a kilobyte.
const META_LIMIT: u64 = 1 << 20;

/// Checks a safetensors file's table against the tensors a model expects, reading only the
/// table: every expected name present with its shape in f32, nothing else, and the data
/// exactly where the table says. So a file from someone else cannot make loading allocate
/// more than the model's own size, whatever its table claims.
fn check_table(path: &Path, expected: &[(String, Vec<usize>)]) -> Result<(), CheckpointError> {
    use std::io::Read;
    let bad = |why: String| CheckpointError::BadTable {
        path: path.to_path_buf(),
        why,
    };
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let file_len = f.metadata().map_err(io(path))?.len();
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|_| bad(format!("{file_len} bytes, too short for a table's length")))?;
    let header_len = u64::from_le_bytes(len);
    // About a hundred bytes a tensor; anything far beyond is not a table of this model.
    let limit = 4096 + 512 * expected.len() as u64;
    if header_len > limit {
        return Err(CheckpointError::TooLarge {
            path: path.to_path_buf(),
            what: "its tensor table",
            found: header_len,
            limit,
        });
    }
    let mut header = vec![0u8; header_len as usize];
    f.read_exact(&mut header).map_err(|_| {
        bad(format!(
            "the table claims {header_len} bytes, the file is {file_len}"
        ))
    })?;
    let table: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| bad(format!("not JSON: {e}")))?;
    let data_len = file_len - 8 - header_len;
    let want: std::collections::HashMap<&str, &[usize]> = expected
        .iter()
        .map(|(n, s)| (n.as_str(), s.as_slice()))
        .collect();
    let mut total = 0u64;
    for (name, entry) in &table {
        if name == "__metadata__" {
            continue;
        }
        let Some(&shape) = want.get(name.as_str()) else {
            return Err(bad(format!("`{name}` is no tensor of this model")));
        };
        let found: Vec<usize> = serde_json::from_value(entry["shape"].clone())
            .map_err(|e| bad(format!("`{name}`: shape: {e}")))?;
        if found != shape {
            return Err(CheckpointError::Shape {
                path: path.to_path_buf(),
                name: name.clone(),
                found,
                expected: shape.to_vec(),
            });
        }
        if entry["dtype"] != "F32" {
            return Err(bad(format!("`{name}` is {}, not F32", entry["dtype"])));
        }
        let offsets: [u64; 2] = serde_json::from_value(entry["data_offsets"].clone())
            .map_err(|e| bad(format!("`{name}`: data_offsets: {e}")))?;
        let bytes = 4 * shape.iter().product::<usize>() as u64;
        if offsets[0] > offsets[1] || offsets[1] - offsets[0] != bytes || offsets[1] > data_len {
            return Err(bad(format!(
                "`{name}` claims bytes {}..{} of {data_len}, its shape needs {bytes}",
                offsets[0], offsets[1]
            )));
        }
        total += bytes;
    }
    if let Some((name, _)) = expected.iter().find(|(n, _)| !table.contains_key(n)) {
        return Err(CheckpointError::MissingTensor {
            path: path.to_path_buf(),
            name: name.clone(),
        });
    }
    if data_len != total {
        return Err(bad(format!(
            "{data_len} bytes of data for tensors of {total}"
        )));
    }
    Ok(())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |cause| CheckpointError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

fn tensor_err(path: &Path) -> impl FnOnce(candle_core::Error) -> CheckpointError + '_ {
    move |cause| CheckpointError::Tensors {
        path: path.to_path_buf(),
        cause,
    }
}

/// Removes temporary folders left by an interrupted save.
pub fn clean_stale(run: &Path) {
    if let Ok(entries) = std::fs::read_dir(run) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// The complete checkpoints of a run folder, oldest first.
pub fn list(run: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(run)
        .map(|it| {
            it.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("ckpt-"))
                        && p.join("meta.json").is_file()
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The step a checkpoint folder was written at, from its name.
pub fn step_of(ckpt: &Path) -> Option<u64> {
    ckpt.file_name()?
        .to_str()?
        .strip_prefix("ckpt-")?
        .parse()
        .ok()
}

/// Whether a checkpoint is marked as the start of a divergence.
pub fn is_diverged(ckpt: &Path) -> bool {
    ckpt.join(DIVERGED_MARK).is_file()
}

/// Marks every checkpoint of `run` newer than step `good` (all, if `None`) as diverged,
/// with `reason`.
pub fn mark_diverged(run: &Path, good: Option<u64>, reason: &str) -> Result<(), CheckpointError> {
    for ckpt in list(run) {
        if step_of(&ckpt).is_some_and(|s| good.is_none_or(|g| s > g)) && !is_diverged(&ckpt) {
            let tmp = ckpt.join(format!(".{DIVERGED_MARK}.tmp"));
            std::fs::write(&tmp, format!("{reason}\n")).map_err(io(&tmp))?;
            let mark = ckpt.join(DIVERGED_MARK);
            std::fs::rename(&tmp, &mark).map_err(io(&mark))?;
        }
    }
    Ok(())
}

/// The newest complete checkpoint under `path` that is not marked diverged, or `path`
/// itself if it is a checkpoint (marked or not: naming one is a deliberate choice).
pub fn resolve(path: &Path) -> Result<PathBuf, CheckpointError> {
    if path.join("meta.json").is_file() {
        return Ok(path.to_path_buf());
    }
    if !path.is_dir() {
        return Err(CheckpointError::NotFound(path.to_path_buf()));
    }
    clean_stale(path);
    if list(path).is_empty() {
        return Err(CheckpointError::NoneComplete(path.to_path_buf()));
    }
    newest_good(path).ok_or_else(|| CheckpointError::OnlyDiverged(path.to_path_buf()))
}

/// The newest complete checkpoint of `run` not marked diverged. It only reads: unlike
/// [`resolve`] it removes no temporary folder, so listing runs cannot break a save that
/// another process has in progress.
pub fn newest_good(run: &Path) -> Option<PathBuf> {
    list(run).into_iter().rev().find(|c| !is_diverged(c))
}

/// Saves `model` after `meta.step` steps into `run`, keeping the newest `keep` checkpoints
/// and those in `protect` (what a divergence could fall back to).
pub fn save(
    run: &Path,
    model: &mut dyn Model,
    meta: &Meta,
    keep: usize,
    protect: &[&Path],
) -> Result<PathBuf, CheckpointError> {
    std::fs::create_dir_all(run).map_err(io(run))?;
    clean_stale(run);
    let tmp = run.join(format!("{TMP_PREFIX}{}-{}", meta.step, std::process::id()));
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let weights: HashMap<String, Tensor> = model
        .varmap()
        .data()
        .lock()
        .expect("varmap lock")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    let mut opt_state = HashMap::new();
    let mut meta = meta.clone();
    for (name, opt) in model.optimizers() {
        opt_state.extend(opt.state(name));
        meta.optimizer_steps.insert(name.to_string(), opt.t);
    }
    let files = [
        ("model.safetensors", weights),
        ("optimizer.safetensors", opt_state),
    ];
    for (file, tensors) in files {
        let p = tmp.join(file);
        candle_core::safetensors::save(&tensors, &p).map_err(tensor_err(&p))?;
        sync(&p)?;
    }
    // Test-only: widen the window between writing the tensors and the rename, so that a
    // fault-injection test can kill the process in the middle of a checkpoint.
    if let Some(ms) = std::env::var("GENMOD_TEST_CHECKPOINT_DELAY_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    let mp = tmp.join("meta.json");
    let json = serde_json::to_vec_pretty(&meta).map_err(|cause| CheckpointError::Io {
        path: mp.clone(),
        cause: cause.into(),
    })?;
    std::fs::write(&mp, json).map_err(io(&mp))?;
    sync(&mp)?;
    let dest = run.join(format!("ckpt-{:010}", meta.step));
    if dest.exists() {
        discard(run, &dest).map_err(io(&dest))?;
    }
    std::fs::rename(&tmp, &dest).map_err(io(&dest))?;
    if let Ok(d) = std::fs::File::open(run) {
        let _ = d.sync_all();
    }
    let all = list(run);
    for old in all.iter().take(all.len().saturating_sub(keep.max(1))) {
        if protect.contains(&old.as_path()) {
            continue;
        }
        let _ = discard(run, old);
    }
    Ok(dest)
}

/// Deletes a checkpoint folder without ever showing a half-deleted checkpoint: deleting
/// file by file, a kill could leave `meta.json` beside a missing `optimizer.safetensors`
/// (the SIGKILL test caught it). The folder is first renamed out of the listing, which is
/// atomic, then deleted; a kill in between leaves a temporary folder that the next save or
/// resume removes.
fn discard(run: &Path, ckpt: &Path) -> std::io::Result<()> {
    let name = ckpt
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let doomed = run.join(format!("{TMP_PREFIX}discard-{name}-{}", std::process::id()));
    std::fs::rename(ckpt, &doomed)?;
    std::fs::remove_dir_all(&doomed)
}

fn sync(p: &Path) -> Result<(), CheckpointError> {
    std::fs::File::open(p)
        .and_then(|f| f.sync_all())
        .map_err(io(p))
}

/// Reads a checkpoint's meta data.
pub fn read_meta(ckpt: &Path) -> Result<Meta, CheckpointError> {
    let p = ckpt.join("meta.json");
    let size = std::fs::metadata(&p).map_err(io(&p))?.len();
    if size > META_LIMIT {
        return Err(CheckpointError::TooLarge {
            path: p,
            what: "meta.json",
            found: size,
            limit: META_LIMIT,
        });
    }
    let bytes = std::fs::read(&p).map_err(io(&p))?;
    let meta: Meta =
        serde_json::from_slice(&bytes).map_err(|cause| CheckpointError::NotACheckpoint {
            path: p.clone(),
            cause,
        })?;
    if meta.format != FORMAT {
        return Err(CheckpointError::Format {
            path: p,
            found: meta.format,
        });
    }
    Ok(meta)
}

/// Loads weights and optimiser moments into a model built from the same configuration.
pub fn load_into(
    ckpt: &Path,
    model: &mut dyn Model,
    meta: &Meta,
    device: &Device,
) -> Result<(), CheckpointError> {
    let wp = ckpt.join("model.safetensors");
    let op = ckpt.join("optimizer.safetensors");
    // Both tables are checked before either file is loaded.
    let expected: Vec<(String, Vec<usize>)> = {
        let data = model.varmap().data().lock().expect("varmap lock");
        data.iter()
            .map(|(n, v)| (n.clone(), v.dims().to_vec()))
            .collect()
    };
    check_table(&wp, &expected)?;
    let moments: Vec<(String, Vec<usize>)> = model
        .optimizers()
        .into_iter()
        .flat_map(|(name, opt)| opt.state_shapes(name))
        .collect();
    check_table(&op, &moments)?;
    let weights = candle_core::safetensors::load(&wp, device).map_err(tensor_err(&wp))?;
    {
        let data = model.varmap().data().lock().expect("varmap lock");
        for (name, var) in data.iter() {
            let t = weights
                .get(name)
                .ok_or_else(|| CheckpointError::MissingTensor {
                    path: wp.clone(),
                    name: name.clone(),
                })?;
            if t.dims() != var.dims() {
                return Err(CheckpointError::Shape {
                    path: wp,
                    name: name.clone(),
                    found: t.dims().to_vec(),
                    expected: var.dims().to_vec(),
                });
            }
            var.set(t).map_err(tensor_err(&wp))?;
        }
    }
    let state = candle_core::safetensors::load(&op, device).map_err(tensor_err(&op))?;
    for (name, opt) in model.optimizers() {
        let t = meta.optimizer_steps.get(name).copied().unwrap_or(0);
        opt.load_state(name, &state, t).map_err(tensor_err(&op))?;
    }
    Ok(())
}
