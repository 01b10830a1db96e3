//! The module graph points one way (shared ARCHITECTURE.md): data → classical, neural →
//! train → eval, figures → bench → tui, cli → the binaries. bench sits above eval because
//! its quality suite scores both frameworks' samples on eval's scoreboard. A module may use the ones of a
//! lower layer, never a higher one nor a sibling of its own layer. This test reads the
//! `crate::` paths of every source file (comments excepted) and fails on an arrow that
//! points back, naming the file and line.

use std::path::{Path, PathBuf};

/// Each top-level module's layer; a module may depend only on lower layers.
fn layer(module: &str) -> Option<u8> {
    Some(match module {
        "util" => 0,
        "data" => 1,
        "render" => 2,
        "classical" | "neural" => 3,
        "train" => 4,
        "eval" | "figures" => 5,
        "bench" => 6,
        "tui" | "cli" => 7,
        _ => return None,
    })
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a source file belongs to (`src/neural/kernels/conv.rs` → neural).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    Some(first.trim_end_matches(".rs").to_string())
}

/// The modules named by `crate::NAME` paths in `line`.
fn crate_paths(line: &str) -> Vec<&str> {
    line.match_indices("crate::")
        .map(|(i, m)| {
            let rest = &line[i + m.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .filter(|name| !name.is_empty())
        .collect()
}

fn back_edges(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut bad = Vec::new();
    for file in files {
        let Some(module) = module_of(src, &file) else {
            continue;
        };
        let Some(own) = layer(&module) else { continue };
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            for used in crate_paths(code) {
                if used == module {
                    continue;
                }
                if let Some(l) = layer(used)
                    && l >= own
                {
                    bad.push(format!(
                        "{}:{}: {module} (layer {own}) uses {used} (layer {l})",
                        file.display(),
                        n + 1
                    ));
                }
            }
        }
    }
    bad
}

#[test]
fn every_module_uses_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let bad = back_edges(&src);
    assert!(bad.is_empty(), "arrows pointing back:\n{}", bad.join("\n"));
}

#[test]
fn the_check_finds_a_back_edge() {
    // A model that imports the trainer, the knot this test guards against.
    let dir = tempfile::tempdir().unwrap();
    let neural = dir.path().join("neural");
    std::fs::create_dir_all(&neural).unwrap();
    std::fs::write(
        neural.join("vae.rs"),
        "// crate::train in a comment is fine\nuse crate::train::TrainConfig;\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("data.rs"), "use crate::util::Stream;\n").unwrap();
    let bad = back_edges(dir.path());
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(
        bad[0].ends_with("vae.rs:2: neural (layer 3) uses train (layer 4)"),
        "{bad:?}"
    );
}
