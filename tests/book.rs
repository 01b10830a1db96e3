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

/// The chapters `src/lib.rs` includes as doctests: the `include_str!` arguments of its
/// `#[doc = …]` attributes inside the `#[cfg(doctest)] mod book` block, as file names.
fn doctest_chapters() -> Vec<String> {
    let lib = std::fs::read_to_string("src/lib.rs").unwrap();
    let block = lib
        .split("#[cfg(doctest)]")
        .nth(1)
        .expect("src/lib.rs has a #[cfg(doctest)] block");
    block
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("//"))
        .filter_map(|l| l.strip_prefix("#[doc = include_str!(\""))
        .filter_map(|l| l.split('"').next())
        .map(|path| {
            path.strip_prefix("../book/src/")
                .unwrap_or_else(|| panic!("{path}: a doctest chapter outside book/src"))
                .to_string()
        })
        .collect()
}

#[test]
fn every_chapter_in_summary_is_a_doctest_and_only_those() {
    let files = summary_files();
    assert!(
        files.len() >= 15,
        "SUMMARY.md lists {} chapters",
        files.len()
    );
    for f in &files {
        assert!(
            Path::new("book/src").join(f).is_file(),
            "{f} is listed but missing"
        );
    }
    let mut listed = files.clone();
    let mut included = doctest_chapters();
    listed.sort();
    included.sort();
    assert_eq!(
        listed, included,
        "SUMMARY.md's chapters (left) and src/lib.rs's doctest chapters (right) differ"
    );
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
    // The evidence tables the chapters include, one row per schedule and per loss.
    let kl = std::fs::read_to_string(dir.path().join("generated/kl-schedules.md")).unwrap();
    for schedule in ["`none`", "`standard`", "`report`"] {
        assert!(kl.contains(&format!("| {schedule} |")), "{kl}");
    }
    let losses = std::fs::read_to_string(dir.path().join("generated/generator-losses.md")).unwrap();
    for loss in ["`saturating`", "`non-saturating`"] {
        assert!(losses.contains(&format!("| {loss} |")), "{losses}");
    }
    let extents = std::fs::read_to_string(dir.path().join("generated/latent-extents.md")).unwrap();
    for model in ["the autoencoder", "the VAE (posterior means)"] {
        assert!(extents.contains(&format!("| {model} |")), "{extents}");
    }
}

/// Every Rust file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The names of the functions defined in the crate's sources and tests, and which of them
/// are tests (a `#[test]` within the three lines above the `fn`).
fn defined_functions() -> (
    std::collections::BTreeSet<String>,
    std::collections::BTreeSet<String>,
) {
    let mut files = Vec::new();
    rust_files(Path::new("src"), &mut files);
    rust_files(Path::new("tests"), &mut files);
    let (mut all, mut tests) = (
        std::collections::BTreeSet::new(),
        std::collections::BTreeSet::new(),
    );
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let t = line.trim_start();
            let rest = t
                .strip_prefix("pub fn ")
                .or_else(|| t.strip_prefix("pub(crate) fn "))
                .or_else(|| t.strip_prefix("fn "));
            let Some(rest) = rest else { continue };
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if lines[i.saturating_sub(3)..i]
                .iter()
                .any(|l| l.trim() == "#[test]")
            {
                tests.insert(name.clone());
            }
            all.insert(name);
        }
    }
    (all, tests)
}

/// The book cites tests by name as its evidence (the errata appendix above all). A renamed
/// or deleted test must not leave a citation behind: every backticked snake_case name of
/// four or more words in a chapter is a function of the crate, and those that read as
/// claims (six words or more) are tests.
#[test]
fn every_test_the_book_cites_exists() {
    let (functions, tests) = defined_functions();
    let mut cited = 0;
    for f in summary_files() {
        let text = std::fs::read_to_string(Path::new("book/src").join(&f)).unwrap();
        for quoted in text.split('`').skip(1).step_by(2) {
            let words = quoted.split('_').count();
            let snake = quoted
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !snake || words < 4 {
                continue;
            }
            cited += 1;
            assert!(
                functions.contains(quoted),
                "{f} cites `{quoted}`, which is no function of the crate or its tests"
            );
            if words >= 6 {
                assert!(
                    tests.contains(quoted),
                    "{f} cites `{quoted}` as evidence, but it is not a #[test]"
                );
            }
        }
    }
    assert!(
        cited >= 20,
        "only {cited} citations found: is the scan broken?"
    );
}

/// Every `{{#include FILE:ANCHOR}}` in a chapter names a file that exists, relative to the
/// chapter; a Rust file's anchor holds `ANCHOR: name` and `ANCHOR_END: name` in that order
/// around real code, inside a `rust,ignore` fence, so the book shows
/// the code that runs (a renamed anchor would otherwise leave an empty listing; mdbook only
/// warns).
#[test]
fn every_included_listing_exists_with_its_anchors() {
    let mut included = 0;
    for f in summary_files() {
        let chapter = Path::new("book/src").join(&f);
        let text = std::fs::read_to_string(&chapter).unwrap();
        for part in text.split("{{#include ").skip(1) {
            let spec = part.split("}}").next().unwrap().trim();
            let (file, anchor) = match spec.rsplit_once(':') {
                Some((file, anchor)) => (file, Some(anchor)),
                None => (spec, None),
            };
            let path = chapter.parent().unwrap().join(file);
            let source = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{f} includes {file}: {}: {e}", path.display()));
            if let Some(a) = anchor {
                let start = source.find(&format!("ANCHOR: {a}\n"));
                let end = source.find(&format!("ANCHOR_END: {a}\n"));
                assert!(
                    matches!((start, end), (Some(s), Some(e)) if s < e),
                    "{f} includes {file}:{a}, which has no ANCHOR: {a} … ANCHOR_END: {a}"
                );
                // The listing is code, not a few comment lines.
                let body = &source[start.unwrap()..end.unwrap()];
                assert!(body.lines().count() > 5, "{f}: {file}:{a} is nearly empty");
            }
            if !file.ends_with(".rs") {
                // Generated tables and text, included as Markdown.
                continue;
            }
            // A listing is shown, not compiled again by rustdoc: it is tested where it lives.
            let before = &text[..text.find(&format!("{{{{#include {spec}}}}}")).unwrap()];
            let fence = before.rfind("```").map(|i| &before[i..]).unwrap_or("");
            assert!(
                fence.starts_with("```rust,ignore"),
                "{f}: the include of {spec} must sit in a rust,ignore fence"
            );
            included += 1;
        }
    }
    assert!(included >= 7, "only {included} Rust listings included");
}

/// Every chapter of the book (the `ch*` files of SUMMARY.md) shows at least one Rust snippet
/// that asserts something, so each one has a claim that `cargo test` checks.
#[test]
fn every_chapter_has_a_snippet_that_asserts() {
    for f in summary_files().iter().filter(|f| f.starts_with("ch")) {
        let text = std::fs::read_to_string(Path::new("book/src").join(f)).unwrap();
        let mut in_rust = false;
        let mut asserts = false;
        for line in text.lines() {
            let t = line.trim_start();
            if let Some(tag) = t.strip_prefix("```") {
                in_rust = !in_rust && tag.trim() == "rust";
                continue;
            }
            asserts |= in_rust && t.contains("assert");
        }
        assert!(asserts, "{f} has no tested snippet with an assert");
    }
}

/// Each chapter ends with exercises whose answers are tests (the part openers, `ch*-00-*`,
/// only introduce their sections): the last `##` heading is "Exercises", every exercise in
/// it names a test as its answer, the numbers are unique across the book, and the index
/// (exercises.md) links each chapter's section with exactly its numbers.
#[test]
fn every_chapter_ends_with_exercises_that_the_index_lists() {
    let (_, tests) = defined_functions();
    let index = std::fs::read_to_string("book/src/exercises.md").unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let chapters: Vec<String> = summary_files()
        .into_iter()
        .filter(|f| f.starts_with("ch") && !f.contains("-00-"))
        .collect();
    assert!(chapters.len() >= 14, "{chapters:?}");
    for f in chapters {
        let text = std::fs::read_to_string(Path::new("book/src").join(&f)).unwrap();
        let section = text
            .rsplit("\n## ")
            .next()
            .filter(|s| s.starts_with("Exercises\n"))
            .unwrap_or_else(|| panic!("{f}: the last ## section is not Exercises"));
        let mut numbers = Vec::new();
        for exercise in section.split("**Exercise ").skip(1) {
            let n: u32 = exercise
                .split('.')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{f}: an exercise without a number"));
            assert!(
                seen.insert(n),
                "{f}: exercise {n} is numbered twice in the book"
            );
            let answers: Vec<&str> = exercise
                .split('`')
                .skip(1)
                .step_by(2)
                .filter(|name| tests.contains(*name))
                .collect();
            assert!(
                exercise.contains("Answer") && !answers.is_empty(),
                "{f}: exercise {n} names no test as its answer"
            );
            numbers.push(n.to_string());
        }
        assert!(
            !numbers.is_empty(),
            "{f}: an Exercises section with no exercise"
        );
        let line = index
            .lines()
            .find(|l| l.contains(&format!("({f}#exercises)")))
            .unwrap_or_else(|| panic!("exercises.md does not link {f}#exercises"));
        let listed: Vec<&str> = line
            .rsplit(": ")
            .next()
            .unwrap()
            .split(", ")
            .map(str::trim)
            .collect();
        assert_eq!(
            listed, numbers,
            "exercises.md lists {f}'s exercises wrongly"
        );
    }
}
