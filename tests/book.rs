//! The book stays under test: every chapter in SUMMARY.md is included as a doctest by
//! src/lib.rs, every figure it shows exists, and Rust-looking blocks are really tested.

use std::path::Path;

fn summary_files() -> Vec<String> {
    let s = std::fs::read_to_string("book/src/SUMMARY.md").unwrap();
    s.split('(')
        .skip(1)
        .filter_map(|t| t.split(')').next())
        .filter(|f| f.ends_with(".md"))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_chapter_in_summary_is_a_doctest() {
    let lib = std::fs::read_to_string("src/lib.rs").unwrap();
    let files = summary_files();
    assert!(
        files.len() >= 15,
        "SUMMARY.md lists {} chapters",
        files.len()
    );
    for f in files {
        let include = format!("include_str!(\"../book/src/{f}\")");
        assert!(
            lib.contains(&include),
            "{f} is in SUMMARY.md but not included as a doctest in src/lib.rs"
        );
        assert!(
            Path::new("book/src").join(&f).is_file(),
            "{f} is listed but missing"
        );
    }
}

#[test]
fn every_figure_a_chapter_shows_exists() {
    for f in summary_files() {
        let text = std::fs::read_to_string(Path::new("book/src").join(&f)).unwrap();
        for part in text.split("](").skip(1) {
            let target = part.split(')').next().unwrap();
            if target.starts_with("figures/") {
                let p = Path::new("book/src").join(target);
                assert!(
                    p.is_file(),
                    "{f} shows {target}, which does not exist (run genmod figures)"
                );
                image::open(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            }
        }
    }
}

#[test]
fn code_blocks_are_tagged_so_rustdoc_runs_only_rust() {
    // An untagged fence is Rust to rustdoc; console output must say so.
    for f in summary_files() {
        let text = std::fs::read_to_string(Path::new("book/src").join(&f)).unwrap();
        let mut in_block = false;
        for (i, line) in text.lines().enumerate() {
            if let Some(tag) = line.trim_start().strip_prefix("```") {
                if !in_block {
                    assert!(
                        !tag.trim().is_empty(),
                        "{f}:{}: untagged code block (use rust, console or text)",
                        i + 1
                    );
                }
                in_block = !in_block;
            }
        }
    }
}

#[test]
fn the_figure_command_writes_every_figure_in_a_tiny_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("figures");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_genmod"))
        .args(["figures", "--quick", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Every figure the book shows is among those written.
    for f in summary_files() {
        let text = std::fs::read_to_string(Path::new("book/src").join(&f)).unwrap();
        for part in text.split("](figures/").skip(1) {
            let name = part.split(')').next().unwrap();
            let p = out.join(name);
            let img = image::open(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert!(
                img.width() >= 50 && img.height() >= 50,
                "{name} is {}x{}",
                img.width(),
                img.height()
            );
        }
    }
    let table = std::fs::read_to_string(dir.path().join("generated/likelihoods.md")).unwrap();
    assert!(
        table.contains("| naive-bayes (3.2) | binarised at 0.5 |"),
        "{table}"
    );
    assert!(table.contains("VAE importance-weighted"), "{table}");
}
