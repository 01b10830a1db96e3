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
