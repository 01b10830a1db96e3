//! The checkpoint reader: a real checkpoint of a tiny VAE is written once; each input then
//! replaces one of its three files (the first byte picks which) and the reader loads it into
//! a model built from whatever meta data it finds. An error or a loaded model, never a panic.
#![no_main]
use candle_core::Device;
use genmod::neural::{ModelKind, NeuralConfig};
use genmod::train::checkpoint;
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

const FILES: [&str; 3] = ["meta.json", "model.safetensors", "optimizer.safetensors"];

struct Seed {
    _dir: tempfile::TempDir,
    ckpt: PathBuf,
    originals: Vec<Vec<u8>>,
}

fn seed() -> &'static Seed {
    static SEED: OnceLock<Seed> = OnceLock::new();
    SEED.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temporary folder");
        let mut cfg = NeuralConfig::new(ModelKind::Vae);
        cfg.hidden = 8;
        cfg.latent_dim = 2;
        let shape = genmod::neural::ImageShape {
            channels: 1,
            height: 28,
            width: 28,
        };
        let mut model = genmod::neural::build(&cfg, shape, 10, &Device::Cpu, 0).expect("model");
        let meta = checkpoint::Meta {
            format: checkpoint::FORMAT,
            model: cfg,
            shape,
            num_classes: 10,
            step: 1,
            seed: 0,
            batch_size: 8,
            dataset: "fuzz".into(),
            optimizer_steps: Default::default(),
        };
        let ckpt = checkpoint::save(dir.path(), model.as_mut(), &meta, 1, &[]).expect("save");
        let originals = FILES
            .iter()
            .map(|f| std::fs::read(ckpt.join(f)).expect("read back"))
            .collect();
        Seed {
            _dir: dir,
            ckpt,
            originals,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let s = seed();
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    let which = which as usize % FILES.len();
    let path = s.ckpt.join(FILES[which]);
    std::fs::write(&path, bytes).expect("write input");
    if let Ok(meta) = checkpoint::read_meta(&s.ckpt)
        && let Ok(mut m) =
            genmod::neural::build(&meta.model, meta.shape, meta.num_classes, &Device::Cpu, 0)
    {
        let _ = checkpoint::load_into(&s.ckpt, m.as_mut(), &meta, &Device::Cpu);
    }
    std::fs::write(&path, &s.originals[which]).expect("restore");
});
