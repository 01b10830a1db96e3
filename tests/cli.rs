//! The command line's own conveniences: shell completions, the man page, and progress that
//! suits both a terminal and a log file.

use std::process::Command;

fn genmod() -> Command {
    Command::new(env!("CARGO_BIN_EXE_genmod"))
}

/// Completions and the man page come from the same clap definitions as the parser: the
/// bash script completes the model names and options, the man page is roff for `genmod`.
#[test]
fn completions_and_man_page_are_generated_from_the_real_options() {
    let out = genmod().args(["completions", "bash"]).output().unwrap();
    assert!(out.status.success());
    let script = String::from_utf8_lossy(&out.stdout);
    for word in [
        "_genmod",
        "train",
        "vae",
        "dcgan",
        "--kl-schedule",
        "--runs-dir",
        "--d-dropout",
    ] {
        assert!(script.contains(word), "the bash completions lack {word}");
    }
    let out = genmod().args(["completions", "fish"]).output().unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("complete -c genmod")
    );
    let out = genmod().arg("man").output().unwrap();
    assert!(out.status.success());
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(
        page.starts_with(".ie") || page.contains(".TH genmod"),
        "{}",
        &page[..page.len().min(200)]
    );
    assert!(
        page.contains("\\-\\-threads") || page.contains("--threads"),
        "{page}"
    );
}

/// Piped to a file or CI, training reports plain lines (one per epoch): the terminal's
/// progress bar, its carriage returns and escape codes stay out.
#[test]
fn progress_falls_back_to_plain_lines_when_output_is_piped() {
    let dir = tempfile::tempdir().unwrap();
    let out = genmod()
        .args([
            "train",
            "vae",
            "--max-steps",
            "70",
            "--sample-every",
            "0",
            "--out",
        ])
        .arg(dir.path().join("run"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        stdout.contains("epoch 1 (step 62/70") && stdout.contains("finished at step 70"),
        "{stdout}"
    );
    for text in [&stdout, &stderr] {
        assert!(
            !text.contains('\r') && !text.contains('\u{1b}') && !text.contains('█'),
            "{text:?}"
        );
    }
}

/// The figures (and the scoreboard, through the same progress type) count their work: on a
/// terminal a bar; piped, one plain line per finished unit and no bar.
#[test]
fn figure_progress_is_counted_in_plain_lines_when_piped() {
    let dir = tempfile::tempdir().unwrap();
    let out = genmod()
        .args(["figures", "--quick", "--only", "2d", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("1/1 groups of figures done"), "{stderr}");
    assert!(
        !stderr.contains('\r') && !stderr.contains('\u{1b}') && !stderr.contains('█'),
        "{stderr:?}"
    );
}

/// `bench measure`, which `bench neural` starts afresh to read a workload's peak memory,
/// answers a request in the reference's words with a figure and a peak, and refuses a
/// workload it does not have by naming it.
#[test]
fn bench_measure_answers_a_request_or_names_what_is_wrong() {
    let request = r#"{"op":"train","model":"vae","batch":16,"steps":2}"#;
    let out = genmod()
        .args(["bench", "measure", "--request", request])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(answer["value"].as_f64().unwrap() > 0.0, "{answer}");
    if cfg!(target_os = "linux") {
        // The embedded digits alone are 7.5 MiB decoded; a smaller peak was not this one.
        assert!(answer["peak_mib"].as_f64().unwrap() > 6.0, "{answer}");
    }
    // The GANs whose defaults cluster their images are timed with the report's nets, which
    // need no fit before their first step; the VAE, whose default draws its codes through a
    // mixture fitted after training, is sampled from its prior as the report's is.
    let requests = ["gan", "gan_recipe", "dcgan"]
        .map(|model| format!(r#"{{"op":"train","model":"{model}","batch":8,"steps":1}}"#));
    let sampling = [r#"{"op":"sample","model":"vae","n":8,"rounds":1}"#.to_string()];
    for request in requests.iter().chain(&sampling) {
        let out = genmod()
            .args(["bench", "measure", "--request", request])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{request}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for (request, named) in [
        (
            r#"{"op":"train","model":"gan","shape":[1,32,32],"batch":8,"steps":1}"#,
            "gan: no workload at shape [1, 32, 32]",
        ),
        (
            r#"{"op":"train","model":"vae","batch":0,"steps":1}"#,
            "batch must be a positive integer",
        ),
        (r#"{"op":"fit"}"#, "unknown op"),
    ] {
        let out = genmod()
            .args(["bench", "measure", "--request", request])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(named), "{stderr}");
    }
}
