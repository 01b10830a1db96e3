//! Checkpoints: `RUN/ckpt-STEP/` holding `model.safetensors` (weights and batch-norm
//! statistics), `optimizer.safetensors` (Adam's moments) and `meta.json` (configuration,
//! step, seed, optimiser step counts). Each is written into a temporary folder that is then
//! renamed into place, so a crash at any moment leaves either a complete checkpoint or none;
//! a stale temporary folder is removed by the next save or load.

use crate::neural::{ImageShape, Model, NeuralConfig};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
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
    /// Adam's step count per optimiser name.
    pub optimizer_steps: HashMap<String, u64>,
}

/// The current checkpoint format.
pub const FORMAT: u32 = 1;
const TMP_PREFIX: &str = ".tmp-ckpt-";

fn err(path: &Path, m: impl std::fmt::Display) -> String {
    format!("{}: {m}", path.display())
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

/// The newest complete checkpoint under `path`, or `path` itself if it is a checkpoint.
pub fn resolve(path: &Path) -> Result<PathBuf, String> {
    if path.join("meta.json").is_file() {
        return Ok(path.to_path_buf());
    }
    if !path.is_dir() {
        return Err(err(path, "no such checkpoint or run folder"));
    }
    clean_stale(path);
    list(path)
        .pop()
        .ok_or_else(|| err(path, "holds no complete checkpoint (ckpt-*/meta.json)"))
}

/// Saves `model` after `meta.step` steps into `run`, keeping the newest `keep` checkpoints.
pub fn save(
    run: &Path,
    model: &mut dyn Model,
    meta: &Meta,
    keep: usize,
) -> Result<PathBuf, String> {
    std::fs::create_dir_all(run).map_err(|e| err(run, e))?;
    clean_stale(run);
    let tmp = run.join(format!("{TMP_PREFIX}{}-{}", meta.step, std::process::id()));
    std::fs::create_dir_all(&tmp).map_err(|e| err(&tmp, e))?;
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
        candle_core::safetensors::save(&tensors, &p).map_err(|e| err(&p, e))?;
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
    let json = serde_json::to_vec_pretty(&meta).map_err(|e| err(&tmp, e))?;
    let mp = tmp.join("meta.json");
    std::fs::write(&mp, json).map_err(|e| err(&mp, e))?;
    sync(&mp)?;
    let dest = run.join(format!("ckpt-{:010}", meta.step));
    if dest.exists() {
        discard(run, &dest).map_err(|e| err(&dest, e))?;
    }
    std::fs::rename(&tmp, &dest).map_err(|e| err(&dest, e))?;
    if let Ok(d) = std::fs::File::open(run) {
        let _ = d.sync_all();
    }
    let all = list(run);
    for old in all.iter().take(all.len().saturating_sub(keep.max(1))) {
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

fn sync(p: &Path) -> Result<(), String> {
    std::fs::File::open(p)
        .and_then(|f| f.sync_all())
        .map_err(|e| err(p, e))
}

/// Reads a checkpoint's meta data.
pub fn read_meta(ckpt: &Path) -> Result<Meta, String> {
    let p = ckpt.join("meta.json");
    let bytes = std::fs::read(&p).map_err(|e| err(&p, e))?;
    let meta: Meta = serde_json::from_slice(&bytes)
        .map_err(|e| err(&p, format!("not a genmod checkpoint: {e}")))?;
    if meta.format != FORMAT {
        return Err(err(
            &p,
            format!(
                "checkpoint format {} is not the supported {FORMAT}",
                meta.format
            ),
        ));
    }
    Ok(meta)
}

/// Loads weights and optimiser moments into a model built from the same configuration.
pub fn load_into(
    ckpt: &Path,
    model: &mut dyn Model,
    meta: &Meta,
    device: &Device,
) -> Result<(), String> {
    let wp = ckpt.join("model.safetensors");
    let weights = candle_core::safetensors::load(&wp, device).map_err(|e| err(&wp, e))?;
    {
        let data = model.varmap().data().lock().expect("varmap lock");
        for (name, var) in data.iter() {
            let t = weights.get(name).ok_or_else(|| {
                err(
                    &wp,
                    format!("lacks the tensor `{name}`: a checkpoint of another model?"),
                )
            })?;
            if t.dims() != var.dims() {
                return Err(err(
                    &wp,
                    format!(
                        "tensor `{name}` has shape {:?}, the model expects {:?}",
                        t.dims(),
                        var.dims()
                    ),
                ));
            }
            var.set(t).map_err(|e| err(&wp, e))?;
        }
    }
    let op = ckpt.join("optimizer.safetensors");
    let state = candle_core::safetensors::load(&op, device).map_err(|e| err(&op, e))?;
    for (name, opt) in model.optimizers() {
        let t = meta.optimizer_steps.get(name).copied().unwrap_or(0);
        opt.load_state(name, &state, t).map_err(|e| err(&op, e))?;
    }
    Ok(())
}
