//! Fault injection on the real `genmod` binary: SIGKILL mid-training (also mid-checkpoint),
//! SIGTERM, divergence, and a catalogue of bad arguments. Each test prints a
//! `RELIABILITY:` line that `.ci/reliability-report` collects into RELIABILITY.md.

use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn genmod() -> Command {
    Command::new(env!("CARGO_BIN_EXE_genmod"))
}

/// A small GAN run: the report's 32-wide nets, batch 32, a checkpoint every 4 steps.
fn train_args(out: &Path, max_steps: u64) -> Vec<String> {
    [
        "train",
        "gan",
        "--hidden",
        "32",
        "--batch-size",
        "32",
        "--epochs",
        "100",
        "--seed",
        "3",
        "--checkpoint-every",
        "4",
        "--sample-every",
        "0",
        // The report's unclustered nets: the default's k-means fit before the first step
        // would take a large, machine-dependent share of these short runs, and kills timed
        // as fractions of a whole run could then land before any checkpoint exists.
        "--clusters",
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        "--max-steps".into(),
        max_steps.to_string(),
        "--out".into(),
        out.display().to_string(),
        "--metrics-log".into(),
        out.join("metrics.csv").display().to_string(),
    ])
    .collect()
}

/// The last logged d_loss of every step (a killed run may leave a torn last line).
fn d_losses(csv: &Path) -> BTreeMap<u64, f64> {
    let text = std::fs::read_to_string(csv).unwrap_or_default();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() == 4
            && f[2] == "d_loss"
            && let (Ok(step), Ok(v)) = (f[0].parse::<u64>(), f[3].parse::<f64>())
        {
            out.insert(step, v);
        }
    }
    out
}

/// Every checkpoint folder on disk is complete and loads into a model.
fn assert_checkpoints_whole(run: &Path) -> Vec<u64> {
    let mut steps = Vec::new();
    for ckpt in genmod::train::checkpoint::list(run) {
        let meta = genmod::train::checkpoint::read_meta(&ckpt).unwrap_or_else(|e| panic!("{e}"));
        let mut m = genmod::neural::build(
            &meta.model,
            meta.shape,
            meta.num_classes,
            &candle_core::Device::Cpu,
            0,
        )
        .unwrap();
        genmod::train::checkpoint::load_into(&ckpt, m.as_mut(), &meta, &candle_core::Device::Cpu)
            .unwrap_or_else(|e| panic!("half-written checkpoint {}: {e}", ckpt.display()));
        steps.push(meta.step);
    }
    steps
}

fn stale_temporaries(run: &Path) -> usize {
    std::fs::read_dir(run)
        .map(|it| {
            it.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-ckpt-"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn sigkill_mid_training_loses_at_most_one_checkpoint_interval() {
    // Six kills in `cargo test`; `.ci/reliability-report` asks for 100 through this variable.
    // The run is long enough for every round to land mid-run: 20 steps a round.
    let rounds: u64 = std::env::var("GENMOD_KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let total = 20 * rounds;
    // The reference: one uninterrupted run.
    let reference_dir = tempfile::tempdir().unwrap();
    let began = Instant::now();
    let ok = genmod()
        .args(train_args(reference_dir.path(), total))
        .env("GENMOD_TEST_CHECKPOINT_DELAY_MS", "120")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
    // Kill moments scale with how long a whole run takes on this machine and build (debug or
    // release), so that the kills land before the run can finish: each round runs between
    // 1/(2.5·rounds) and 1/rounds of a whole run.
    let whole_run_ms = began.elapsed().as_millis() as u64;
    let reference = d_losses(&reference_dir.path().join("metrics.csv"));
    assert_eq!(reference.len() as u64, total);

    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().to_path_buf();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(20261124);
    let (mut kills, mut in_write, mut max_lost) = (0u64, 0, 0u64);
    for round in 0..rounds {
        let mut args = train_args(&run, total);
        if round > 0 {
            args.extend(["--resume".into(), run.display().to_string()]);
        }
        let mut child = genmod()
            .args(&args)
            .env("GENMOD_TEST_CHECKPOINT_DELAY_MS", "120")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Let it start and make some progress, then kill at a random moment.
        let start = Instant::now();
        let target = Duration::from_millis(
            rng.random_range(whole_run_ms * 2 / (5 * rounds)..whole_run_ms / rounds)
                .max(150),
        );
        while start.elapsed() < target {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if child.try_wait().unwrap().is_some() {
            break; // finished before the kill
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        if stale_temporaries(&run) > 0 {
            in_write += 1;
        }
        let steps = assert_checkpoints_whole(&run);
        let logged = d_losses(&run.join("metrics.csv"));
        if let (Some(&newest), Some((&last, _))) = (steps.iter().max(), logged.iter().next_back()) {
            max_lost = max_lost.max(last.saturating_sub(newest));
        }
    }
    // Finish the run from the newest checkpoint.
    let ok = genmod()
        .args(train_args(&run, total))
        .args(["--resume".to_string(), run.display().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
    assert_eq!(
        stale_temporaries(&run),
        0,
        "a stale temporary checkpoint folder was not cleaned up"
    );
    assert!(
        kills >= 4.min(rounds),
        "only {kills} kills landed before the run finished"
    );
    // Checkpoint writes are slowed (GENMOD_TEST_CHECKPOINT_DELAY_MS) so that kills land
    // inside them: the promise is about exactly those moments.
    assert!(
        in_write >= 1,
        "no kill landed during a checkpoint write ({kills} kills)"
    );
    assert!(
        max_lost <= 4,
        "lost {max_lost} steps, more than one checkpoint interval (4)"
    );
    // The step counter and the loss curve continue exactly where the uninterrupted run goes.
    let resumed = d_losses(&run.join("metrics.csv"));
    assert_eq!(resumed.len() as u64, total);
    for (step, want) in &reference {
        let got = resumed[step];
        assert!(
            (got - want).abs() <= 1e-5 * want.abs(),
            "step {step}: resumed {got}, uninterrupted {want}"
        );
    }
    println!(
        "RELIABILITY: kill9 rounds={rounds} kills={kills} during_checkpoint_write={in_write} max_steps_lost={max_lost} interval=4 curve_identical=yes"
    );
}

/// SIGTERM (a service manager), SIGINT (Ctrl-C) and SIGHUP (a dropped SSH session) each
/// stop the CLI with a checkpoint at the step it stopped and a clean exit.
#[test]
fn sigterm_saves_a_checkpoint_and_exits_cleanly() {
    for signal in ["TERM", "INT", "HUP"] {
        stop_with_signal(signal);
    }
}

fn stop_with_signal(signal: &str) {
    let dir = tempfile::tempdir().unwrap();
    let child = genmod()
        .args(train_args(dir.path(), 100_000))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Signal once training is under way: the run folder's metrics reach step 5.
    let metrics = dir.path().join("metrics.csv");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !std::fs::read_to_string(&metrics).is_ok_and(|t| {
        t.lines()
            .filter_map(|l| l.split(',').next()?.parse::<u64>().ok())
            .any(|s| s >= 5)
    }) {
        assert!(Instant::now() < deadline, "training never reached step 5");
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let step: u64 = stdout
        .split("stopped at step ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no 'stopped at step' in: {stdout}"));
    let steps = assert_checkpoints_whole(dir.path());
    assert_eq!(
        steps.last(),
        Some(&step),
        "the final checkpoint is the step training stopped at"
    );
    println!(
        "RELIABILITY: sig{} stopped_at={step} checkpoint=yes exit=0",
        signal.to_lowercase()
    );
}

/// The session, through the CLI: a healthy run, resumed with a learning rate far
/// too large, diverges; the message names the last good checkpoint, and resuming the run
/// folder with a smaller `--lr` continues from it with finite losses.
#[test]
fn divergence_names_a_checkpoint_that_resumes_with_a_smaller_lr() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let train = |extra: &[&str]| {
        genmod()
            .args(["train", "vae", "--batch-size", "32", "--sample-every", "0"])
            .args(extra)
            .arg("--out")
            .arg(&run)
            .output()
            .unwrap()
    };
    let first = train(&["--max-steps", "20", "--checkpoint-every", "10"]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let runaway = train(&[
        "--resume",
        run.to_str().unwrap(),
        "--lr",
        "10000",
        "--checkpoint-every",
        "1",
        "--max-steps",
        "300",
    ]);
    let err = String::from_utf8_lossy(&runaway.stderr);
    assert!(!runaway.status.success());
    let good = run.join("ckpt-0000000020");
    assert!(
        err.contains("at step")
            && err.contains(&format!("last good checkpoint is {}", good.display())),
        "{err}"
    );
    let steps = assert_checkpoints_whole(&run);
    assert!(
        steps.iter().any(|&s| s > 20),
        "the runaway wrote checkpoints: {steps:?}"
    );
    let log = dir.path().join("metrics.csv");
    let gentle = train(&[
        "--resume",
        run.to_str().unwrap(),
        "--lr",
        "1e-4",
        "--max-steps",
        "60",
        "--metrics-log",
        log.to_str().unwrap(),
    ]);
    assert!(
        gentle.status.success(),
        "{}",
        String::from_utf8_lossy(&gentle.stderr)
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let losses: Vec<f64> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f.get(2) == Some(&"loss")).then(|| f[3].parse().unwrap())
        })
        .collect();
    assert_eq!(
        losses.len(),
        40,
        "steps 20..60 resumed from the good checkpoint"
    );
    assert!(losses.iter().all(|v| v.is_finite()), "{losses:?}");
    println!(
        "RELIABILITY: divergence message=\"{}\" resumed_steps={} all_finite=yes",
        err.lines().last().unwrap_or("").replace('"', "'"),
        losses.len()
    );
}

#[test]
fn bad_arguments_get_a_clear_message_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    // A VAE checkpoint to resume from with the wrong model or data.
    let vae_run = dir.path().join("vae");
    assert!(
        genmod()
            .args([
                "train",
                "vae",
                "--max-steps",
                "1",
                "--sample-every",
                "0",
                "--out"
            ])
            .arg(&vae_run)
            .output()
            .unwrap()
            .status
            .success()
    );
    // A folder of 32x32 RGB images, to resume a 28x28 checkpoint on.
    let imgs = dir.path().join("imgs");
    std::fs::create_dir(&imgs).unwrap();
    for i in 0..40 {
        image::RgbImage::from_fn(40, 40, |x, y| {
            image::Rgb([(x * 6) as u8, (y * 6) as u8, i as u8 * 5])
        })
        .save(imgs.join(format!("{i:02}.png")))
        .unwrap();
    }
    let v = vae_run.display().to_string();
    let e = empty.display().to_string();
    let im = imgs.display().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["train", "vae", "--epochs", "0"],
            "epochs must be at least 1",
        ),
        (
            vec!["train", "vae", "--data-dir", "."],
            "--data-dir . was given without --dataset; add --dataset mnist",
        ),
        (vec!["train", "vae", "--overwrite"], "--out"),
        (
            vec!["train", "vae", "--batch-size", "0"],
            "batch size must be at least 1",
        ),
        (
            vec!["train", "vae", "--lr", "nan"],
            "learning rate must be finite and positive",
        ),
        (
            vec!["train", "vae", "--lr=-0.1"],
            "learning rate must be finite and positive",
        ),
        (
            vec!["train", "vae", "--lr", "inf"],
            "learning rate must be finite and positive",
        ),
        (
            vec!["train", "vae", "--latent", "0"],
            "latent size must be at least 1",
        ),
        (
            vec!["train", "dcgan", "--beta2", "1"],
            "beta2 must be in [0, 1), got 1",
        ),
        (
            vec!["train", "vae", "--beta1=-0.1"],
            "beta1 must be in [0, 1), got -0.1",
        ),
        (
            vec!["train", "vae", "--code-sampling", "fitted-gaussian"],
            "the VAE samples from its prior or from a mixture fitted to its codes",
        ),
        (
            vec!["train", "autoencoder", "--code-components", "0"],
            "code components must be in 1..=1000, got 0",
        ),
        (
            vec!["train", "cgan", "--clusters", "10"],
            "clusters condition the MLP GAN and the DCGAN only",
        ),
        (
            vec!["train", "dcgan", "--clusters", "1"],
            "clusters must be 0 (off) or in 2..=1000, got 1",
        ),
        (vec!["train", "gan", "--k", "0"], "at least 1"),
        (vec!["train", "vea"], "did you mean `vae`"),
        (
            vec!["train", "vae", "--dataset", "mnsit"],
            "did you mean `mnist`",
        ),
        (
            vec![
                "train",
                "vae",
                "--dataset",
                "mnist",
                "--data-dir",
                "/no/such/folder",
            ],
            "/no/such/folder",
        ),
        (
            vec!["train", "vae", "--dataset", "mnist", "--data-dir", &e],
            "train-images-idx3-ubyte",
        ),
        (
            vec!["train", "vae", "--dataset", "cifar10"],
            "needs --data-dir",
        ),
        (vec!["train", "vae", "--device", "cuda"], "--features cuda"),
        (
            vec!["train", "vae", "--device", "tpu"],
            "unknown device `tpu`",
        ),
        (
            vec!["train", "gan", "--resume", &v],
            "checkpoint of a vae, not a gan",
        ),
        (
            vec!["train", "vae", "--resume", "/no/such/run"],
            "no such checkpoint",
        ),
        (
            vec![
                "train",
                "vae",
                "--resume",
                &v,
                "--dataset",
                "folder",
                "--data-dir",
                &im,
                "--image-size",
                "32",
            ],
            "checkpoint for 1x28x28 images, the dataset has 3x32x32",
        ),
        (
            vec!["train", "vae", "--kl-schedule", "cosine"],
            "expected one of: none, standard, report",
        ),
        (
            vec!["fit", "--model", "lda", "--shrinkage", "2"],
            "shrinkage",
        ),
        (vec!["fit", "--model", "gmn"], "did you mean `gmm`"),
        (
            vec!["fit", "--model", "gmm", "--components", "0"],
            "components",
        ),
        (
            vec![
                "sample",
                "--model",
                "qda",
                "--out",
                "x.png",
                "--per-class",
                "0",
            ],
            "--per-class must be at least 1",
        ),
        (
            vec![
                "data",
                "info",
                "--dataset",
                "folder",
                "--data-dir",
                &im,
                "--image-size",
                "0",
            ],
            "'--image-size <IMAGE_SIZE>': must be at least 1, got 0",
        ),
        (
            vec!["data", "fetch", "imagenet"],
            "unknown dataset `imagenet`",
        ),
    ];
    for (args, want) in &cases {
        let start = Instant::now();
        let out = genmod()
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: expected `{want}` in:\n{err}");
        assert!(!err.contains("panicked"), "{args:?} panicked:\n{err}");
        // Refused before any work: no training runs for these.
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{args:?} took {:?}",
            start.elapsed()
        );
    }
    assert!(
        !PathBuf::from(dir.path()).join("runs").exists(),
        "a refused command created a run folder"
    );
    println!(
        "RELIABILITY: bad_arguments tried={} all_refused_with_message=yes",
        cases.len()
    );
}

/// Mutates a valid input: flips, overwrites, truncates or extends it.
fn mutate(valid: &[u8], rng: &mut rand_chacha::ChaCha8Rng) -> Vec<u8> {
    let mut b = valid.to_vec();
    match rng.random_range(0..4) {
        0 => {
            for _ in 0..rng.random_range(1..16) {
                let i = rng.random_range(0..b.len().max(1));
                if let Some(x) = b.get_mut(i) {
                    *x ^= 1 << rng.random_range(0..8);
                }
            }
        }
        1 => {
            let i = rng.random_range(0..b.len().max(1));
            b.truncate(i);
        }
        2 => {
            let n = rng.random_range(1..64);
            b.extend((0..n).map(|_| rng.random::<u8>()));
        }
        _ => {
            b = (0..rng.random_range(0..512))
                .map(|_| rng.random::<u8>())
                .collect();
        }
    }
    b
}

#[test]
fn readers_survive_arbitrary_and_mutated_bytes() {
    use genmod::data::{cifar10, idx};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
    let dir = tempfile::tempdir().unwrap();
    let n = 3000;
    let caught = |what: &str, f: &mut dyn FnMut()| {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
            panic!("{what} panicked");
        }
    };
    // IDX: valid files, plain and gzip, as seeds.
    let mut idx_seeds = Vec::new();
    for gz in [false, true] {
        let p = dir.path().join(format!("seed{gz}"));
        idx::write(&p, &[3, 4, 5], &(0..60).collect::<Vec<u8>>(), gz).unwrap();
        idx_seeds.push(std::fs::read(&p).unwrap());
    }
    for i in 0..n {
        let b = mutate(&idx_seeds[i % 2], &mut rng);
        caught("the IDX reader", &mut || {
            let _ = idx::parse_bytes(Path::new("fuzz"), b.clone());
        });
    }
    // CIFAR-10 records.
    let record: Vec<u8> = (0..2 * 3073).map(|i| (i % 10) as u8).collect();
    for _ in 0..n {
        let b = mutate(&record, &mut rng);
        caught("the CIFAR-10 reader", &mut || {
            let (mut p, mut l) = (Vec::new(), Vec::new());
            let _ = cifar10::parse_records(Path::new("fuzz"), &b, &mut p, &mut l);
        });
    }
    // Image folders: mutated PNG and JPEG files.
    let img = image::RgbImage::from_fn(9, 7, |x, y| image::Rgb([x as u8 * 20, y as u8 * 30, 99]));
    let mut seeds = Vec::new();
    for ext in ["png", "jpg"] {
        let p = dir.path().join(format!("seed.{ext}"));
        img.save(&p).unwrap();
        seeds.push((ext, std::fs::read(&p).unwrap()));
    }
    let folder = dir.path().join("imgs");
    let images = 400;
    for round in 0..4 {
        let _ = std::fs::remove_dir_all(&folder);
        std::fs::create_dir(&folder).unwrap();
        for i in 0..images / 4 {
            let (ext, seed) = &seeds[i % 2];
            std::fs::write(
                folder.join(format!("{round}-{i}.{ext}")),
                mutate(seed, &mut rng),
            )
            .unwrap();
        }
        caught("the image-folder reader", &mut || {
            let _ = genmod::data::image_folder::load(&folder, 8, None);
        });
    }
    // Checkpoints: a real one, then each file mutated.
    let run = dir.path().join("run");
    assert!(
        genmod()
            .args([
                "train",
                "vae",
                "--hidden",
                "8",
                "--latent",
                "2",
                "--max-steps",
                "1",
                "--sample-every",
                "0",
                "--out"
            ])
            .arg(&run)
            .output()
            .unwrap()
            .status
            .success()
    );
    let ckpt = genmod::train::checkpoint::resolve(&run).unwrap();
    let originals: Vec<(String, Vec<u8>)> =
        ["meta.json", "model.safetensors", "optimizer.safetensors"]
            .iter()
            .map(|f| (f.to_string(), std::fs::read(ckpt.join(f)).unwrap()))
            .collect();
    let ckpt_inputs = 600;
    for i in 0..ckpt_inputs {
        let (name, bytes) = &originals[i % 3];
        std::fs::write(ckpt.join(name), mutate(bytes, &mut rng)).unwrap();
        caught("the checkpoint reader", &mut || {
            if let Ok(meta) = genmod::train::checkpoint::read_meta(&ckpt)
                && let Ok(mut m) = genmod::neural::build(
                    &meta.model,
                    meta.shape,
                    meta.num_classes,
                    &candle_core::Device::Cpu,
                    0,
                )
            {
                let _ = genmod::train::checkpoint::load_into(
                    &ckpt,
                    m.as_mut(),
                    &meta,
                    &candle_core::Device::Cpu,
                );
            }
        });
        std::fs::write(ckpt.join(name), bytes).unwrap();
    }
    println!(
        "RELIABILITY: fuzz idx={n} cifar10={n} image_files={images} checkpoint_files={ckpt_inputs} panics=0"
    );
}

/// RELIABILITY.md stays true: every test it names exists, and every test of this file
/// (the fault-injection tests) is named there.
#[test]
fn reliability_md_names_every_fault_injection_test_and_only_real_ones() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("RELIABILITY.md")).unwrap();
    let mut sources = String::new();
    let mut dirs = vec![root.join("tests"), root.join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                sources.push_str(&std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    // Test names in the document: backticked snake_case words with an underscore.
    let named: Vec<&str> = doc
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|w| {
            w.contains('_')
                && w.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && w.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
        .collect();
    assert!(named.len() >= 10, "only {named:?}");
    for name in &named {
        let fuzz_target = root.join(format!("fuzz/fuzz_targets/{name}.rs")).is_file();
        assert!(
            fuzz_target || sources.contains(&format!("fn {name}(")),
            "RELIABILITY.md names `{name}`, which no test or fuzz target defines"
        );
    }
    let this = std::fs::read_to_string(root.join("tests/reliability.rs")).unwrap();
    let tests: Vec<&str> = this
        .split("#[test]\nfn ")
        .skip(1)
        .filter_map(|rest| rest.split('(').next())
        .collect();
    assert!(tests.len() >= 5, "{tests:?}");
    for t in tests {
        if t != "reliability_md_names_every_fault_injection_test_and_only_real_ones" {
            assert!(
                named.contains(&t),
                "{t} is a fault-injection test that RELIABILITY.md does not name"
            );
        }
    }
}
