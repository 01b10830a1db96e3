//! `genmod eval` end to end in its tiny configuration: every model gets a row, the real
//! digits score best, and the files it writes parse.

#[test]
fn eval_scores_every_model_and_real_digits_score_best() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_genmod"))
        .args(["eval", "--quick", "--out"])
        .arg(dir.path())
        .env("GENMOD_CACHE", dir.path().join("cache"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("eval.json")).unwrap()).unwrap();
    let rows = json["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["model"].as_str().unwrap()).collect();
    for want in [
        "naive-bayes",
        "gaussian-nb",
        "lda",
        "qda",
        "gmm",
        "gmm-per-class",
        "autoencoder",
        "vae",
        "gan",
        "dcgan",
        "cgan",
    ] {
        assert!(names.contains(&want), "no row for {want}: {names:?}");
    }
    let fd = |r: &serde_json::Value| r["fid"].as_f64().unwrap();
    assert!(names[0].contains("reference"));
    for (r, name) in rows.iter().zip(&names).skip(1) {
        assert!(
            fd(&rows[0]) < fd(r),
            "real digits (FD {}) should beat {name} (FD {})",
            fd(&rows[0]),
            fd(r)
        );
    }
    // The class-conditional models report conditional accuracy; the mixture does not.
    assert!(
        rows[names.iter().position(|n| *n == "qda").unwrap()]["conditional_accuracy"].is_number()
    );
    assert!(
        rows[names.iter().position(|n| *n == "gmm").unwrap()]["conditional_accuracy"].is_null()
    );
    let md = std::fs::read_to_string(dir.path().join("eval.md")).unwrap();
    assert!(
        md.contains("Seed 0") && md.contains("| cgan | 4.3 |"),
        "{md}"
    );
}

fn genmod(args: &[&str], cache: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_genmod"))
        .args(args)
        .env("GENMOD_CACHE", cache)
        .output()
        .unwrap()
}

/// Samples leave genmod as NPY (`genmod generate`) and come back through `eval
/// --sample-file`: scored from the file, the conditional GAN's samples get exactly the row
/// its checkpoint gets, conditional accuracy included.
#[test]
fn generated_samples_scored_from_a_file_match_the_models_own_row() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let cache = dir.path().join("cache");
    let run = p("runs/cgan");
    let out = genmod(
        &[
            "train",
            "cgan",
            "--epochs",
            "1",
            "--max-steps",
            "3",
            "--out",
            &run,
        ],
        &cache,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // eval --quick draws 200 samples with seed 0: the same draws.
    let npy = p("cgan.npy");
    let out = genmod(
        &[
            "generate",
            "--checkpoint",
            &run,
            "--count",
            "200",
            "--out",
            &npy,
        ],
        &cache,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let labels = p("cgan.labels.npy");
    assert!(std::path::Path::new(&labels).exists());
    let out = genmod(
        &[
            "eval",
            "--quick",
            "--runs",
            &p("runs"),
            "--only",
            "cgan",
            "--sample-file",
            &npy,
            "--sample-labels",
            &labels,
            "--out",
            &p("eval"),
        ],
        &cache,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("eval/eval.json")).unwrap()).unwrap();
    let rows = json["rows"].as_array().unwrap();
    let row = |name: &str| {
        rows.iter()
            .find(|r| r["model"].as_str().unwrap().ends_with(name))
            .unwrap_or_else(|| panic!("no row {name}: {rows:?}"))
    };
    let (model, file) = (row("cgan"), row("cgan.npy"));
    for key in [
        "fid",
        "precision",
        "recall",
        "classes_covered",
        "coverage_kl",
        "conditional_accuracy",
        "legible",
    ] {
        assert!(model[key].is_number(), "{key}: {model}");
        assert_eq!(model[key], file[key], "{key}");
    }
}

/// A tanh generator's output, saved as NumPy does, is refused without the flag that says
/// so (never silently rescaled), then scored with it; bad label files are named.
#[test]
fn sample_files_in_another_range_or_with_bad_labels_are_refused_clearly() {
    use genmod::data::arrays::{Elements, npy_bytes};
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let split = genmod::data::mnist::embedded();
    let n = 50;
    let idx: Vec<usize> = (0..n).collect();
    let batch = split
        .test
        .batch_of(
            &idx,
            &genmod::data::PixelScale::MinusOneOne.table(),
            &candle_core::Device::Cpu,
        )
        .unwrap();
    let pixels = batch
        .images
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let images = dir.path().join("tanh.npy");
    std::fs::write(&images, npy_bytes(&[n, 784], &Elements::F32(pixels))).unwrap();
    let labels = dir.path().join("labels.npy");
    let wrong: Vec<i64> = (0..n as i64)
        .map(|i| if i == 7 { 12 } else { i % 10 })
        .collect();
    std::fs::write(&labels, npy_bytes(&[n], &Elements::Int(wrong))).unwrap();
    let img = images.to_str().unwrap();
    let out_dir = dir.path().join("e");
    let eval = |extra: &[&str]| {
        let mut args = vec!["eval", "--quick", "--sample-file", img, "--out"];
        args.push(out_dir.to_str().unwrap());
        args.extend_from_slice(extra);
        let out = genmod(&args, &cache);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = eval(&[]);
    assert!(!ok);
    assert!(
        err.contains("tanh.npy") && err.contains("--pixel-range minus-one-one"),
        "{err}"
    );
    let range = ["--pixel-range", "minus-one-one"];
    let (ok, err) = eval(&[&range[..], &["--sample-labels", labels.to_str().unwrap()]].concat());
    assert!(!ok);
    assert!(
        err.contains("labels.npy") && err.contains("label 12 at element 7"),
        "{err}"
    );
    let (ok, err) = eval(&range);
    assert!(ok, "{err}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("e/eval.json")).unwrap()).unwrap();
    let rows = json["rows"].as_array().unwrap();
    // Only the reference and the file: genmod's models are scored when named.
    assert_eq!(rows.len(), 2, "{rows:?}");
    // The samples are test digits themselves: mapped back from [−1, 1] correctly, each lies
    // on a test digit, so all of them count as precise (a wrong mapping scores near 0).
    let precision = rows[1]["precision"].as_f64().unwrap();
    assert!(precision >= 0.99, "precision {precision}");
}

/// `--seeds 2` trains each model once per seed and reports the mean with the range: the
/// mean lies inside the range, the range is not a single point for a model trained twice,
/// and the table shows it.
#[test]
fn several_seeds_give_a_mean_and_its_range() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("e");
    let o = genmod(
        &[
            "eval",
            "--quick",
            "--only",
            "autoencoder",
            "--seeds",
            "2",
            "--out",
            out.to_str().unwrap(),
        ],
        &dir.path().join("cache"),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("eval.json")).unwrap()).unwrap();
    let rows = json["rows"].as_array().unwrap();
    let ae = rows.iter().find(|r| r["model"] == "autoencoder").unwrap();
    let spread = &ae["spread"];
    assert_eq!(spread["seeds"], 2);
    let (lo, hi) = (
        spread["fid"][0].as_f64().unwrap(),
        spread["fid"][1].as_f64().unwrap(),
    );
    let fid = ae["fid"].as_f64().unwrap();
    assert!(lo < hi && lo <= fid && fid <= hi, "{lo} <= {fid} <= {hi}");
    let md = std::fs::read_to_string(out.join("eval.md")).unwrap();
    assert!(md.contains(&format!("{fid:.2} [{lo:.2}–{hi:.2}]")), "{md}");
    assert!(md.contains("Seeds 0–1"), "{md}");
}
