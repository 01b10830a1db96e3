//! The neural models and the trainer: shapes, closed forms against Monte Carlo, short runs
//! whose losses move the right way, checkpoints that reproduce samples and continue the
//! same curve, divergence caught, commands obeyed. Runs are kept to seconds.

use candle_core::{Device, Tensor};
use genmod::data::{Split, mnist};
use genmod::neural::{
    self, ConfigError, GeneratorLoss, ImageShape, KlSchedule, Metric, ModelKind, NeuralConfig,
};
use genmod::train::{self, DeviceError, TrainCommand, TrainConfig, TrainError, TrainEvent};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

fn digits(n_train: usize) -> Split {
    let s = mnist::embedded();
    Split {
        train: s.train.take(n_train),
        test: s.test.take(64),
    }
}

const MNIST: ImageShape = ImageShape {
    channels: 1,
    height: 28,
    width: 28,
};

fn small(kind: ModelKind) -> NeuralConfig {
    let mut c = NeuralConfig::new(kind);
    c.hidden = match kind {
        ModelKind::Dcgan => 8,
        _ => 64,
    };
    c.iw_samples = 4;
    // The default 200 components need more codes than these tests' few hundred digits.
    c.code_components = 10;
    c
}

fn run_collect(
    cfg: TrainConfig,
    split: Split,
    resume: Option<PathBuf>,
) -> (Vec<TrainEvent>, Result<(), TrainError>) {
    let mut events = Vec::new();
    let never = std::sync::atomic::AtomicBool::new(false);
    let r = train::train(cfg, split, resume, &never, |e| events.push(e.clone()));
    (events, r)
}

fn step_metric(events: &[TrainEvent], name: Metric) -> Vec<(u64, f64)> {
    events
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Step { step, metrics, .. } => metrics
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*step, *v)),
            _ => None,
        })
        .collect()
}

/// The pixels `model` generates from codes `z` (an unconditional model), flattened.
fn pixels(model: &dyn neural::Model, z: &Tensor) -> Vec<f32> {
    model
        .generate(z, None)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

fn mean(v: &[(u64, f64)]) -> f64 {
    v.iter().map(|x| x.1).sum::<f64>() / v.len() as f64
}

#[test]
fn every_net_has_the_right_shapes() {
    let dev = Device::Cpu;
    for kind in ModelKind::ALL {
        let mut cfg = small(kind);
        // The default autoencoder decodes codes from a mixture fitted at the end of each
        // epoch; before any training there is none (checked below), so its shapes are
        // checked on codes decoded as they are.
        cfg.code_sampling = neural::CodeSampling::StandardNormal;
        // Likewise the default DCGAN's clusters are fitted before its first step (checked
        // below): here its nets alone.
        cfg.clusters = 0;
        let m = neural::build(&cfg, MNIST, 10, &dev, 0).unwrap();
        let z = neural::normal(3, cfg.latent_dim, &mut ChaCha8Rng::seed_from_u64(0), &dev).unwrap();
        let labels = Tensor::new(&[0u32, 5, 9], &dev).unwrap();
        let x = m.generate(&z, Some(&labels)).unwrap();
        assert_eq!(x.dims(), &[3, 1, 28, 28], "{kind:?}");
        if matches!(kind, ModelKind::Autoencoder | ModelKind::Vae) {
            let code = m.encode(&x).unwrap().unwrap();
            assert_eq!(code.dims(), &[3, cfg.latent_dim], "{kind:?}");
        }
    }
    let mut unclustered = small(ModelKind::Dcgan);
    assert_eq!(
        unclustered.clusters, 40,
        "the DCGAN conditions on clusters by default"
    );
    let unfitted = neural::build(&unclustered, MNIST, 0, &dev, 0).unwrap();
    let z = neural::normal(
        3,
        unclustered.latent_dim,
        &mut ChaCha8Rng::seed_from_u64(0),
        &dev,
    )
    .unwrap();
    let refused = unfitted.generate(&z, None).unwrap_err().to_string();
    assert!(
        refused.contains("40 clusters have not been fitted yet"),
        "{refused}"
    );
    // The report's unconditional DCGAN at every size.
    unclustered.clusters = 0;
    let unfitted = neural::build(&small(ModelKind::Autoencoder), MNIST, 0, &dev, 0).unwrap();
    let latent = unfitted.config().latent_dim;
    let z = neural::normal(3, latent, &mut ChaCha8Rng::seed_from_u64(0), &dev).unwrap();
    let refused = unfitted.generate(&z, None).unwrap_err().to_string();
    assert!(
        refused.contains("code mixture has not been fitted yet"),
        "{refused}"
    );
    for side in [32, 64] {
        let shape = ImageShape {
            channels: 3,
            height: side,
            width: side,
        };
        let cfg = unclustered.clone();
        let m = neural::build(&cfg, shape, 0, &dev, 0).unwrap();
        let z = neural::normal(2, cfg.latent_dim, &mut ChaCha8Rng::seed_from_u64(0), &dev).unwrap();
        assert_eq!(m.generate(&z, None).unwrap().dims(), &[2, 3, side, side]);
    }
    let bad = neural::build(
        &small(ModelKind::Dcgan),
        ImageShape {
            channels: 1,
            height: 30,
            width: 30,
        },
        0,
        &dev,
        0,
    );
    assert!(
        bad.err()
            .unwrap()
            .to_string()
            .contains("28x28, 32x32 and 64x64")
    );
}

fn quick(kind: ModelKind, steps: u64) -> TrainConfig {
    let mut c = TrainConfig::new(small(kind));
    c.batch_size = 32;
    c.epochs = 100;
    c.max_steps = Some(steps);
    c.sample_every = 0;
    c.eval_batches = Some(1);
    c.grid_size = 16;
    c
}

#[test]
fn short_runs_move_each_loss_the_right_way() {
    // Autoencoder and VAE: the reconstruction and the negative ELBO fall.
    for (kind, metric) in [
        (ModelKind::Autoencoder, Metric::Recon),
        (ModelKind::Vae, Metric::NegElbo),
    ] {
        let (ev, r) = run_collect(quick(kind, 40), digits(640), None);
        r.unwrap();
        let m = step_metric(&ev, metric);
        let (first, last) = (mean(&m[..5]), mean(&m[m.len() - 5..]));
        assert!(last < 0.8 * first, "{kind:?} {metric}: {first} -> {last}");
    }
    // GANs: the discriminator learns to tell real from fake: D(x) rises above D(G(z)).
    for (kind, steps) in [
        (ModelKind::Gan, 30),
        (ModelKind::Cgan, 30),
        (ModelKind::Dcgan, 12),
        (ModelKind::Cdcgan, 12),
    ] {
        let (ev, r) = run_collect(quick(kind, steps), digits(640), None);
        r.unwrap();
        let real = step_metric(&ev, Metric::DReal);
        let fake = step_metric(&ev, Metric::DFake);
        let n = real.len();
        let gap = mean(&real[n - 5..]) - mean(&fake[n - 5..]);
        assert!(gap > 0.05, "{kind:?}: D(x) − D(G(z)) = {gap}");
        assert!(
            step_metric(&ev, Metric::GGradNorm)
                .iter()
                .all(|(_, v)| v.is_finite() && *v > 0.0)
        );
    }
}

#[test]
fn kl_schedules_differ_as_the_report_erratum_says() {
    let run = |schedule| {
        let mut c = quick(ModelKind::Vae, 30);
        c.model.kl_schedule = schedule;
        c.model.warmup_steps = 1000;
        let (ev, r) = run_collect(c, digits(640), None);
        r.unwrap();
        ev
    };
    let standard = run(KlSchedule::Standard);
    let report = run(KlSchedule::Report);
    // Step 0: the standard schedule's loss is the reconstruction alone, the report's the KL alone.
    let at0 = |ev: &[TrainEvent], k| step_metric(ev, k)[0].1;
    assert!((at0(&standard, Metric::Loss) - at0(&standard, Metric::Recon)).abs() < 1e-3);
    assert!((at0(&report, Metric::Loss) - at0(&report, Metric::Kl)).abs() < 1e-3);
    // Weighting the reconstruction by r ≈ 0 pushes q(z|x) onto the prior: the KL collapses.
    let kl_std = mean(&step_metric(&standard, Metric::Kl)[25..]);
    let kl_rep = mean(&step_metric(&report, Metric::Kl)[25..]);
    assert!(
        kl_rep < 0.25 * kl_std,
        "report KL {kl_rep} vs standard {kl_std}"
    );
}

#[test]
fn checkpoint_round_trip_gives_identical_samples() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = quick(ModelKind::Dcgan, 3);
    c.out_dir = Some(dir.path().to_path_buf());
    let (ev, r) = run_collect(c.clone(), digits(128), None);
    r.unwrap();
    assert!(
        ev.iter()
            .any(|e| matches!(e, TrainEvent::Checkpoint { step: 3, .. }))
    );
    let ckpt = train::checkpoint::resolve(dir.path()).unwrap();
    let meta = train::checkpoint::read_meta(&ckpt).unwrap();
    assert_eq!(meta.step, 3);
    let dev = Device::Cpu;
    let z = neural::normal(
        4,
        meta.model.latent_dim,
        &mut ChaCha8Rng::seed_from_u64(5),
        &dev,
    )
    .unwrap();
    let mut a = neural::build(&meta.model, meta.shape, 0, &dev, 1).unwrap();
    let mut b = neural::build(&meta.model, meta.shape, 0, &dev, 2).unwrap();
    // A fresh DCGAN samples once its clusters are fitted (here from another seed).
    train::pixel_clusters::fit(a.as_ref(), &digits(128).train, &dev, 1).unwrap();
    let before = pixels(a.as_ref(), &z);
    train::checkpoint::load_into(&ckpt, a.as_mut(), &meta, &dev).unwrap();
    train::checkpoint::load_into(&ckpt, b.as_mut(), &meta, &dev).unwrap();
    let (xa, xb) = (pixels(a.as_ref(), &z), pixels(b.as_ref(), &z));
    assert_eq!(
        xa, xb,
        "two models loaded from one checkpoint must sample identically"
    );
    assert_ne!(before, xa, "loading must replace the fresh weights");
    // Batch-norm running statistics were trained and saved (not the initial 0 and 1).
    let data = a.varmap().data().lock().unwrap();
    let rm = data
        .iter()
        .find(|(k, _)| k.ends_with("running_mean"))
        .unwrap()
        .1;
    assert!(
        rm.as_tensor()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            > 0.0
    );
}

#[test]
fn resuming_continues_the_same_curve() {
    let split = digits(320); // 10 steps per epoch at batch 32
    let straight = {
        let (ev, r) = run_collect(quick(ModelKind::Gan, 16), split.clone(), None);
        r.unwrap();
        step_metric(&ev, Metric::DLoss)
    };
    let dir = tempfile::tempdir().unwrap();
    let mut first = quick(ModelKind::Gan, 7);
    first.out_dir = Some(dir.path().to_path_buf());
    let (_, r) = run_collect(first, split.clone(), None);
    r.unwrap();
    let mut second = quick(ModelKind::Gan, 16);
    second.out_dir = Some(dir.path().to_path_buf());
    second.seed = 999; // ignored: the checkpoint's seed defines the curve
    let (ev, r) = run_collect(second, split, Some(dir.path().to_path_buf()));
    r.unwrap();
    let resumed = step_metric(&ev, Metric::DLoss);
    assert_eq!(resumed.first().unwrap().0, 8, "the step counter continues");
    for (a, b) in straight[7..].iter().zip(&resumed) {
        assert_eq!(a.0, b.0);
        assert!(
            (a.1 - b.1).abs() <= 1e-5 * a.1.abs(),
            "step {}: {} vs {}",
            a.0,
            a.1,
            b.1
        );
    }
}

/// A checkpoint resumes only on the data it was trained on: Fashion-MNIST has MNIST's shape,
/// so the shape check alone would splice a clothes curve onto a digits one.
#[test]
fn a_checkpoint_is_not_resumed_on_another_dataset_of_the_same_shape() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = quick(ModelKind::Vae, 3);
    c.out_dir = Some(dir.path().to_path_buf());
    run_collect(c.clone(), digits(320), None).1.unwrap();
    let mut clothes = digits(320);
    clothes.train.name = "fashion-mnist (train)".into();
    c.max_steps = Some(6);
    let (events, r) = run_collect(c.clone(), clothes, Some(dir.path().to_path_buf()));
    let err = r.unwrap_err();
    assert!(matches!(err, TrainError::WrongDataset { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("trained on mnist (train)") && msg.contains("data is fashion-mnist (train)"),
        "{msg}"
    );
    assert!(events.is_empty(), "nothing trained: {events:?}");
    // The same data resumes.
    run_collect(c, digits(320), Some(dir.path().to_path_buf()))
        .1
        .unwrap();
}

/// A run that diverges names the newest checkpoint that trained soundly, marks the newer
/// ones, and that checkpoint resumes with a smaller learning rate. Here a healthy VAE run
/// is resumed at learning rate 10⁴ (the user's "let us go faster"), which blows up within
/// a few steps; resuming the named checkpoint at 10⁻⁴ trains on with finite losses.
#[test]
fn divergence_names_the_last_good_checkpoint_which_resumes_with_a_smaller_rate() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = quick(ModelKind::Vae, 20);
    c.checkpoint_every = 10;
    c.out_dir = Some(dir.path().to_path_buf());
    run_collect(c.clone(), digits(640), None).1.unwrap();
    let good = dir.path().join("ckpt-0000000020");
    assert!(good.join("meta.json").is_file());

    let mut fast = c.clone();
    fast.max_steps = Some(200);
    fast.checkpoint_every = 1;
    fast.resume_lr = Some(1e4);
    let (ev, r) = run_collect(fast, digits(640), Some(dir.path().to_path_buf()));
    let msg = r.unwrap_err().to_string();
    assert!(
        msg.contains(&format!("last good checkpoint is {}", good.display())),
        "{msg}"
    );
    let failed_step = ev
        .iter()
        .find_map(|e| match e {
            TrainEvent::Failed { step, .. } => Some(*step),
            _ => None,
        })
        .expect("a Failed event");
    assert!(failed_step > 20, "diverged at step {failed_step}");
    // Every checkpoint the fast run wrote is marked; `--resume RUN` passes over them.
    let newer: Vec<_> = train::checkpoint::list(dir.path())
        .into_iter()
        .filter(|p| train::checkpoint::step_of(p).unwrap() > 20)
        .collect();
    assert!(!newer.is_empty(), "the fast run wrote checkpoints");
    assert!(newer.iter().all(|p| train::checkpoint::is_diverged(p)));
    assert!(!train::checkpoint::is_diverged(&good));
    assert_eq!(train::checkpoint::resolve(dir.path()).unwrap(), good);

    let mut gentle = c;
    gentle.max_steps = Some(60);
    gentle.resume_lr = Some(1e-4);
    let (ev, r) = run_collect(gentle, digits(640), Some(good));
    r.unwrap();
    let losses = step_metric(&ev, Metric::Loss);
    assert_eq!(losses.len(), 40);
    assert!(losses.iter().all(|(_, v)| v.is_finite()), "{losses:?}");
}

/// The MLP GAN at learning rate 50 does not produce NaN: its losses jump to 10¹¹ and stay
/// there. The explosion rule stops it within a few dozen steps.
#[test]
fn an_exploding_gan_is_stopped_though_its_losses_stay_finite() {
    let mut c = quick(ModelKind::Gan, 300);
    c.model.lr = 50.0;
    let (ev, r) = run_collect(c, digits(640), None);
    let msg = r.unwrap_err().to_string();
    assert!(
        msg.contains("stayed above") && msg.contains("times its reference level"),
        "{msg}"
    );
    let steps = ev
        .iter()
        .filter(|e| matches!(e, TrainEvent::Step { .. }))
        .count();
    assert!(steps < 60, "stopped only after {steps} steps");
}

#[test]
fn commands_pause_sample_and_stop_a_running_trainer() {
    let mut c = quick(ModelKind::Gan, 100_000);
    c.grid_size = 4;
    let h = train::spawn(c, digits(320), None).unwrap();
    h.commands.send(TrainCommand::Pause).unwrap();
    let mut saw = (false, false, false);
    for ev in h.events.iter() {
        match ev {
            TrainEvent::Paused { .. } => {
                saw.0 = true;
                h.commands.send(TrainCommand::SampleNow).unwrap();
                h.commands.send(TrainCommand::Resume).unwrap();
                h.commands.send(TrainCommand::Stop).unwrap();
            }
            TrainEvent::Samples { grid, .. } => {
                saw.1 = true;
                assert_eq!((grid.width, grid.height), (2 * 28 + 3, 2 * 28 + 3));
            }
            TrainEvent::Finished { stopped_early, .. } => {
                saw.2 = stopped_early;
                break;
            }
            _ => {}
        }
    }
    h.thread.join().unwrap();
    assert_eq!(saw, (true, true, true));
}

/// With `linger`, a run that finished keeps its model: it still interpolates and samples,
/// and ends when told to stop.
#[test]
fn a_finished_run_that_lingers_still_interpolates_and_samples() {
    let mut c = quick(ModelKind::Vae, 5);
    c.grid_size = 4;
    c.linger = true;
    let h = train::spawn(c, digits(320), None).unwrap();
    let mut finished = false;
    let mut seen = Vec::new();
    for ev in h.events.iter() {
        match ev {
            TrainEvent::Finished { step: 5, .. } => {
                finished = true;
                h.commands
                    .send(TrainCommand::Interpolate { seed: 3, steps: 6 })
                    .unwrap();
                h.commands.send(TrainCommand::SampleNow).unwrap();
            }
            TrainEvent::Interpolation { step, grid } if finished => {
                seen.push("interpolation");
                assert_eq!(step, 5);
                // Two rows (linear, spherical) of six images.
                assert_eq!((grid.width, grid.height), (6 * 28 + 7, 2 * 28 + 3));
            }
            TrainEvent::Samples { step, .. } if finished => {
                seen.push("samples");
                assert_eq!(step, 5);
                h.commands.send(TrainCommand::Stop).unwrap();
            }
            _ => {}
        }
    }
    h.thread.join().unwrap();
    assert_eq!(seen, ["interpolation", "samples"]);
}

#[test]
fn bad_settings_are_refused_before_training() {
    let split = digits(64);
    let mut c = quick(ModelKind::Vae, 1);
    c.device = train::DeviceChoice::Cuda(0);
    if !cfg!(feature = "cuda") {
        let e = train::spawn(c, split.clone(), None).err().unwrap();
        assert!(
            matches!(e, TrainError::Device(DeviceError::NoCudaSupport(_))),
            "{e:?}"
        );
        assert!(e.to_string().contains("--features cuda"), "{e}");
    }
    let invalid_setting = |c: TrainConfig, words: &str| {
        let e = train::spawn(c, digits(64), None).err().unwrap();
        assert!(
            matches!(
                e,
                TrainError::Model(ConfigError::Invalid(_)) | TrainError::Setting(_)
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains(words), "{e}");
    };
    let mut c = quick(ModelKind::Vae, 1);
    c.model.lr = f64::NAN;
    invalid_setting(c, "learning rate");
    let mut c = quick(ModelKind::Cdcgan, 1);
    c.model.conditioning = genmod::neural::Conditioning::Concat;
    invalid_setting(c, "by projection only");
    let mut c = quick(ModelKind::Vae, 1);
    c.model.latent_dim = 0;
    invalid_setting(c, "latent size");
    let mut c = quick(ModelKind::Vae, 1);
    c.batch_size = 1000;
    invalid_setting(c, "larger than the 64 training images");
    // A checkpoint of another model.
    let dir = tempfile::tempdir().unwrap();
    let mut c = quick(ModelKind::Vae, 1);
    c.out_dir = Some(dir.path().to_path_buf());
    run_collect(c, split.clone(), None).1.unwrap();
    let e = train::spawn(
        quick(ModelKind::Gan, 1),
        split,
        Some(dir.path().to_path_buf()),
    )
    .err()
    .unwrap();
    assert!(
        matches!(
            e,
            TrainError::WrongModel {
                found: "vae",
                wanted: "gan",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("checkpoint of a vae, not a gan"),
        "{e}"
    );
    assert_eq!(
        GeneratorLoss::NonSaturating,
        NeuralConfig::new(ModelKind::Gan).g_loss
    );
}

#[test]
fn the_stop_flag_ends_a_run_early_with_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = quick(ModelKind::Vae, 1000);
    c.out_dir = Some(dir.path().to_path_buf());
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut events = Vec::new();
    train::train(c, digits(640), None, &stop, |e| {
        // Asked to stop as soon as the third step is reported, as a signal handler would.
        if matches!(e, TrainEvent::Step { step: 2, .. }) {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        events.push(e.clone());
    })
    .unwrap();
    let total = events.iter().find_map(|e| match e {
        TrainEvent::Started { total_steps, .. } => Some(*total_steps),
        _ => None,
    });
    let finished = events.iter().find_map(|e| match e {
        TrainEvent::Finished {
            step,
            stopped_early,
        } => Some((*step, *stopped_early)),
        _ => None,
    });
    let (step, early) = finished.expect("a Finished event");
    assert!(early, "the run should report that it stopped early");
    assert!(step < total.unwrap(), "stopped at {step} of {total:?}");
    let ckpt = train::checkpoint::resolve(dir.path()).unwrap();
    assert_eq!(train::checkpoint::read_meta(&ckpt).unwrap().step, step);
}

/// The default recipe of every neural model runs on full MNIST and Fashion-MNIST through
/// `--dataset/--data-dir` (neither can be downloaded here, so the four IDX files are
/// written from the embedded digits): the data load through the IDX path, every model's
/// settings validate against them, steps run with finite losses and a checkpoint is left.
/// What the recipes reach on the full data sets is not measured.
#[test]
fn default_recipes_train_on_full_mnist_and_fashion_mnist_folders() {
    use genmod::data::DataSource;
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in mnist::embedded_files() {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    for source in [
        DataSource::Mnist(dir.path().to_path_buf()),
        DataSource::FashionMnist(dir.path().to_path_buf()),
    ] {
        let (split, _) = source.load(0).unwrap();
        assert_eq!(
            split.train.shape(),
            [8004, 1, 28, 28],
            "{}",
            source.describe()
        );
        for kind in ModelKind::ALL {
            let mut cfg = TrainConfig::new(NeuralConfig::new(kind));
            cfg.max_steps = Some(3);
            cfg.eval_batches = Some(1);
            cfg.sample_every = 0;
            let runs = tempfile::tempdir().unwrap();
            cfg.out_dir = Some(runs.path().to_path_buf());
            let (events, r) = run_collect(cfg, split.clone(), None);
            r.unwrap_or_else(|e| panic!("{} on {}: {e}", kind.name(), source.describe()));
            let losses: Vec<f64> = events
                .iter()
                .filter_map(|e| match e {
                    TrainEvent::Step { metrics, .. } => Some(metrics.iter().map(|(_, v)| *v)),
                    _ => None,
                })
                .flatten()
                .filter(|v| !v.is_nan())
                .collect();
            assert!(
                !losses.is_empty() && losses.iter().all(|v| v.is_finite()),
                "{losses:?}"
            );
            assert!(
                events
                    .iter()
                    .any(|e| matches!(e, TrainEvent::Finished { step: 3, .. })),
                "{} did not finish 3 steps",
                kind.name()
            );
            assert!(train::checkpoint::resolve(runs.path()).is_ok());
        }
    }
}

/// A checkpoint of a tiny VAE after one step, in a temporary run folder.
fn tiny_checkpoint() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = small(ModelKind::Vae);
    cfg.hidden = 8;
    cfg.latent_dim = 2;
    let mut c = TrainConfig::new(cfg);
    c.batch_size = 32;
    c.max_steps = Some(1);
    c.sample_every = 0;
    c.out_dir = Some(dir.path().to_path_buf());
    run_collect(c, digits(64), None).1.unwrap();
    let ckpt = train::checkpoint::resolve(dir.path()).unwrap();
    (dir, ckpt)
}

/// Loads `ckpt` into a model built from its own meta data, as resuming does.
fn load_checkpoint(ckpt: &std::path::Path) -> Result<(), String> {
    let meta = train::checkpoint::read_meta(ckpt).map_err(|e| e.to_string())?;
    let mut m = neural::build(&meta.model, meta.shape, meta.num_classes, &Device::Cpu, 0)
        .map_err(|e| e.to_string())?;
    train::checkpoint::load_into(ckpt, m.as_mut(), &meta, &Device::Cpu).map_err(|e| e.to_string())
}

/// A checkpoint cut short anywhere (a full disk, a copy interrupted) is refused with the
/// name of the damaged file, never loaded as something else: every truncation of
/// `meta.json` that removes more than trailing whitespace, and cuts through the whole of
/// both safetensors files.
#[test]
fn every_truncation_of_a_checkpoint_file_is_refused_naming_it() {
    let (_dir, ckpt) = tiny_checkpoint();
    let load = || load_checkpoint(&ckpt);
    load().unwrap();
    let mut tried = 0;
    for name in ["meta.json", "model.safetensors", "optimizer.safetensors"] {
        let path = ckpt.join(name);
        let whole = std::fs::read(&path).unwrap();
        // Every cut of the JSON; about 300 spread over each safetensors file, header first.
        let stride = if name.ends_with(".json") {
            1
        } else {
            (whole.len() / 300).max(1)
        };
        let cuts = (0..whole.len().min(256)).chain((256..whole.len()).step_by(stride));
        for cut in cuts {
            if whole[cut..].iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            std::fs::write(&path, &whole[..cut]).unwrap();
            match load() {
                Ok(()) => panic!("{name} cut at {cut} of {} bytes loaded", whole.len()),
                Err(e) => assert!(e.contains(name), "{name} cut at {cut}: {e}"),
            }
            tried += 1;
        }
        std::fs::write(&path, &whole).unwrap();
    }
    load().unwrap();
    assert!(tried > 900, "{tried} truncations tried");
}

/// A checkpoint from someone else cannot make loading allocate more than the model needs:
/// an oversized meta.json, a tensor table longer than the model's, a tensor the model does
/// not have (here 16 MiB of it), or a table entry claiming more bytes than its shape are
/// each refused, naming the file, before its tensors are read.
#[test]
fn a_checkpoint_is_checked_against_the_model_before_anything_is_allocated() {
    let (dir, ckpt) = tiny_checkpoint();
    let load = || load_checkpoint(&ckpt);
    load().unwrap();
    let refused = |name: &str, bytes: Vec<u8>, says: &str| {
        let path = ckpt.join(name);
        let whole = std::fs::read(&path).unwrap();
        std::fs::write(&path, bytes).unwrap();
        let e = load().unwrap_err();
        std::fs::write(&path, whole).unwrap();
        assert!(e.contains(name) && e.contains(says), "{name}: {e}");
    };
    // meta.json: 2 MiB of it, valid JSON padded with spaces.
    let mut meta = std::fs::read(ckpt.join("meta.json")).unwrap();
    meta.extend(std::iter::repeat_n(b' ', 2 << 20));
    refused("meta.json", meta, "more than the 1048576");
    // The weights with a 16 MiB tensor the model has not got, in a valid safetensors file.
    let wp = ckpt.join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&wp, &Device::Cpu).unwrap();
    tensors.insert(
        "intruder".into(),
        candle_core::Tensor::zeros((2048, 2048), candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    let spiked = dir.path().join("spiked.safetensors");
    candle_core::safetensors::save(&tensors, &spiked).unwrap();
    refused(
        "model.safetensors",
        std::fs::read(&spiked).unwrap(),
        "`intruder` is no tensor of this model",
    );
    // A table length of 2^40 bytes.
    let mut whole = std::fs::read(&wp).unwrap();
    whole[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    refused(
        "model.safetensors",
        whole,
        "its tensor table is 1099511627776 bytes",
    );
    // A table entry whose offsets span more than its shape: the table is rewritten with the
    // first tensor's end moved 4 bytes on, the length field kept right.
    let whole = std::fs::read(ckpt.join("optimizer.safetensors")).unwrap();
    let n = u64::from_le_bytes(whole[..8].try_into().unwrap()) as usize;
    let mut table: serde_json::Value = serde_json::from_slice(&whole[8..8 + n]).unwrap();
    let first = table
        .as_object()
        .unwrap()
        .keys()
        .find(|k| *k != "__metadata__")
        .unwrap()
        .clone();
    let end = table[&first]["data_offsets"][1].as_u64().unwrap();
    table[&first]["data_offsets"][1] = (end + 4).into();
    let text = table.to_string();
    let mut forged = (text.len() as u64).to_le_bytes().to_vec();
    forged.extend(text.as_bytes());
    forged.extend(&whole[8 + n..]);
    refused(
        "optimizer.safetensors",
        forged,
        &format!("`{first}` claims bytes"),
    );
    load().unwrap();
}

/// The mixture an autoencoder samples from is refitted at every epoch's end and saved with
/// each checkpoint, and the same seed fits the same mixture. A mixture fitted to a
/// checkpoint's own codes shows it: an EM iteration ends with an M-step, whose weights and
/// means average to the data's mean exactly (Σ_k w_k μ_k = Σ_k (N_k/N) Σ_n γ_nk x_n / N_k
/// = Σ_n x_n / N, since each row's responsibilities sum to 1); a mixture left over from
/// an earlier epoch's encoder does not.
#[test]
fn every_autoencoder_checkpoint_carries_a_fitted_code_mixture() {
    let split = digits(128);
    let all: Vec<usize> = (0..split.train.len()).collect();
    let images = split
        .train
        .batch_of(
            &all,
            &genmod::data::PixelScale::ZeroOne.table(),
            &Device::Cpu,
        )
        .unwrap()
        .images;
    let fitted = |run: &Path| {
        let mut mixtures = Vec::new();
        for ckpt in train::checkpoint::list(run) {
            let (model, meta) = train::load_model(&ckpt).unwrap();
            let mixture = model
                .code_mixture()
                .expect("the default autoencoder samples from a code mixture")
                .get()
                .unwrap()
                .unwrap_or_else(|| {
                    panic!("checkpoint at step {} holds no fitted mixture", meta.step)
                });
            let total: f64 = mixture.weights.iter().sum();
            assert!((total - 1.0).abs() < 1e-5, "weights sum to {total}");
            let codes = model
                .encode(&images)
                .unwrap()
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            let d = meta.model.latent_dim;
            for j in 0..d {
                let data = codes.iter().map(|c| c[j] as f64).sum::<f64>() / codes.len() as f64;
                let mixed: f64 = (0..mixture.weights.len())
                    .map(|k| mixture.weights[k] * mixture.means[k * d + j])
                    .sum();
                assert!(
                    (data - mixed).abs() < 1e-4 * (1.0 + data.abs()),
                    "step {}, code dimension {j}: the codes' mean {data} but the mixture's {mixed}",
                    meta.step
                );
            }
            let z = neural::normal(
                8,
                meta.model.latent_dim,
                &mut ChaCha8Rng::seed_from_u64(3),
                &Device::Cpu,
            )
            .unwrap();
            mixtures.push((meta.step, mixture, pixels(model.as_ref(), &z)));
        }
        mixtures
    };
    let run = |dir: &Path| {
        let mut c = quick(ModelKind::Autoencoder, 12);
        c.model.code_components = 4;
        c.keep_checkpoints = 3;
        c.out_dir = Some(dir.to_path_buf());
        let (_, r) = run_collect(c, digits(128), None);
        r.unwrap();
        fitted(dir)
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = run(a.path());
    let steps: Vec<u64> = first.iter().map(|(s, _, _)| *s).collect();
    assert_eq!(steps, vec![4, 8, 12], "one checkpoint per epoch of 4 steps");
    for pair in first.windows(2) {
        assert_ne!(
            pair[0].1, pair[1].1,
            "the mixture follows the encoder from step {} to step {}",
            pair[0].0, pair[1].0
        );
    }
    let again = run(b.path());
    for ((s, m1, x1), (_, m2, x2)) in first.iter().zip(&again) {
        assert_eq!(m1, m2, "step {s}: the same seed fits the same mixture");
        assert_eq!(x1, x2, "step {s}: the same codes decode to the same images");
    }
}

/// A code mixture with more components than training images is refused before training,
/// naming the dataset and the largest count it allows.
#[test]
fn a_code_mixture_larger_than_the_training_set_is_refused_before_work() {
    let mut c = quick(ModelKind::Autoencoder, 4);
    c.model.code_components = 30;
    let (events, r) = run_collect(c, digits(20), None);
    let msg = r.unwrap_err().to_string();
    assert!(
        msg.contains("20 training images, too few for a code mixture of 30 components")
            && msg.contains("at most 20 with --code-components"),
        "{msg}"
    );
    assert!(
        !events.iter().any(|e| matches!(e, TrainEvent::Step { .. })),
        "no step may run"
    );
}

/// The clusters of the MLP GAN and the DCGAN are fitted once, before the first step: every
/// checkpoint carries the same ones, a resumed run keeps them, and the same seed finds the
/// same ones. Each centroid is the mean of the training images nearest to it (Lloyd's fixed
/// point) and each share the fraction of those images.
#[test]
fn the_unlabelled_gans_condition_on_clusters_fitted_once_before_training() {
    for kind in [ModelKind::Gan, ModelKind::Dcgan] {
        clusters_are_fitted_once_before_training(kind);
    }
}

fn clusters_are_fitted_once_before_training(kind: ModelKind) {
    let split = digits(320);
    let all: Vec<usize> = (0..split.train.len()).collect();
    let images = split
        .train
        .batch_of(
            &all,
            &genmod::data::PixelScale::MinusOneOne.table(),
            &Device::Cpu,
        )
        .unwrap()
        .images;
    let clusters_of = |ckpt: &Path| {
        let (model, meta) = train::load_model(ckpt).unwrap();
        let c = model
            .pixel_clusters()
            .expect("a clustered GAN has clusters");
        assert_eq!(c.clusters(), 4);
        (
            meta.step,
            c.centroids().unwrap(),
            c.shares().unwrap(),
            c.assign(&images).unwrap().to_vec1::<u32>().unwrap(),
        )
    };
    let run = |dir: &Path, resume: Option<PathBuf>, steps: u64| {
        let mut c = quick(kind, steps);
        c.model.clusters = 4;
        c.keep_checkpoints = 3;
        c.out_dir = Some(dir.to_path_buf());
        let (_, r) = run_collect(c, digits(320), resume);
        r.unwrap();
        train::checkpoint::list(dir)
            .iter()
            .map(|ckpt| clusters_of(ckpt))
            .collect::<Vec<_>>()
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = run(a.path(), None, 20);
    let steps: Vec<u64> = first.iter().map(|c| c.0).collect();
    assert_eq!(steps, vec![10, 20], "one checkpoint per epoch of 10 steps");
    let (_, centroids, shares, labels) = &first[0];
    assert_eq!(
        (&first[1].1, &first[1].2),
        (centroids, shares),
        "training must not move the clusters"
    );
    let dim = 784;
    for k in 0..4 {
        let members: Vec<usize> = (0..labels.len())
            .filter(|&i| labels[i] == k as u32)
            .collect();
        assert!(!members.is_empty(), "cluster {k} is empty");
        let share = members.len() as f32 / labels.len() as f32;
        assert!(
            (share - shares[k]).abs() < 1e-6,
            "cluster {k}: share {} vs {share}",
            shares[k]
        );
        let pixels = images.flatten_from(1).unwrap().to_vec2::<f32>().unwrap();
        for j in (0..dim).step_by(7) {
            let mean =
                members.iter().map(|&i| pixels[i][j] as f64).sum::<f64>() / members.len() as f64;
            let c = centroids[k * dim + j] as f64;
            assert!(
                (mean - c).abs() < 1e-4,
                "cluster {k}, pixel {j}: centroid {c}, mean {mean}"
            );
        }
    }
    let again = run(b.path(), None, 10);
    assert_eq!(
        (&again[0].1, &again[0].2),
        (centroids, shares),
        "same seed, same clusters"
    );
    // Resumed from step 10 into a fresh folder: the clusters come from the checkpoint.
    let c = tempfile::tempdir().unwrap();
    let ckpt10 = train::checkpoint::list(a.path())[0].clone();
    let resumed = run(c.path(), Some(ckpt10), 20);
    assert_eq!(
        (&resumed.last().unwrap().1, &resumed.last().unwrap().2),
        (centroids, shares)
    );
}

/// More clusters than training images are refused before training, naming the dataset and
/// the largest count allowed; clusters are refused for the other models.
#[test]
fn clusters_beyond_the_training_set_or_outside_the_unlabelled_gans_are_refused() {
    let mut c = quick(ModelKind::Dcgan, 4);
    c.model.clusters = 30;
    let (events, r) = run_collect(c, digits(20), None);
    let msg = r.unwrap_err().to_string();
    assert!(
        msg.contains("20 training images, too few for 30 clusters")
            && msg.contains("at most 20 with --clusters"),
        "{msg}"
    );
    assert!(!events.iter().any(|e| matches!(e, TrainEvent::Step { .. })));
    for kind in [ModelKind::Cgan, ModelKind::Vae] {
        let mut labelled = small(kind);
        labelled.clusters = 10;
        let msg = labelled.validate().unwrap_err().to_string();
        assert!(
            msg.contains("clusters condition the MLP GAN and the DCGAN only"),
            "{msg}"
        );
    }
}

/// A latent path of a model that draws its codes through a mixture runs between the codes
/// its two draws map to, not between the draws: its ends are the images `generate` gives
/// for those draws, and the linear midpoint is the decoded mean of the two codes.
#[test]
fn a_latent_path_through_a_code_mixture_runs_between_the_codes() {
    let dev = Device::Cpu;
    for kind in [ModelKind::Autoencoder, ModelKind::Vae] {
        let cfg = small(kind);
        assert_eq!(cfg.code_sampling, neural::CodeSampling::Mixture, "{kind:?}");
        let model = neural::build(&cfg, MNIST, 0, &dev, 0).unwrap();
        train::code_mixture::refit(
            model.as_ref(),
            &digits(200).train,
            &dev,
            0,
            train::code_mixture::Refit::Final,
        )
        .unwrap();
        let ends =
            neural::normal(2, cfg.latent_dim, &mut ChaCha8Rng::seed_from_u64(5), &dev).unwrap();
        let path = neural::interpolate::images(model.as_ref(), &ends, 5, None).unwrap();
        assert_eq!(path.dims(), &[10, 1, 28, 28], "{kind:?}: two rows of five");
        let rows =
            |t: &Tensor| -> Vec<Vec<f32>> { t.flatten_from(1).unwrap().to_vec2::<f32>().unwrap() };
        let (path, at_ends) = (rows(&path), rows(&model.generate(&ends, None).unwrap()));
        // Both rows (linear and spherical) start and end at the draws' own images.
        for (i, end) in [(0, 0), (4, 1), (5, 0), (9, 1)] {
            let gap = path[i]
                .iter()
                .zip(&at_ends[end])
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                gap < 1e-5,
                "{kind:?}: image {i} differs from end {end} by {gap}"
            );
        }
        let codes = model
            .code_mixture()
            .unwrap()
            .transform(&ends)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let mid: Vec<f32> = codes[0]
            .iter()
            .zip(&codes[1])
            .map(|(a, b)| 0.5 * (a + b))
            .collect();
        let mid = Tensor::from_vec(mid, (1, cfg.latent_dim), &dev).unwrap();
        let mid = rows(&model.decode_codes(&mid).unwrap().unwrap());
        let gap = path[2]
            .iter()
            .zip(&mid[0])
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(gap < 1e-5, "{kind:?}: the linear midpoint differs by {gap}");
    }
}
