//! `genmod data fetch`: downloads MNIST, Fashion-MNIST and CIFAR-10 into a cache folder.
//!
//! Every file is checked against a SHA-256 published for it before it is used. A download
//! goes to `NAME.part` and is renamed only once its checksum matches, so no half-written
//! file can pass for a good one; an interrupted `.part` is resumed with an HTTP range request
//! when the server allows it. Only names from the manifest are ever written, inside the
//! cache folder, whatever the server or an archive says.

use super::{DataError, Result};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One file of a dataset as published, with its checksum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    pub name: String,
    pub sha256: String,
}

/// Where a dataset is published and how to unpack it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The dataset's name on the command line, and its folder in the cache.
    pub name: String,
    /// Base URLs tried in order; each file is `base + name`.
    pub mirrors: Vec<String>,
    pub files: Vec<RemoteFile>,
    /// For archives: the members to extract (by base name), flat into the dataset folder.
    pub extract: Vec<String>,
}

/// Names `genmod data fetch` accepts.
pub const DATASETS: [&str; 3] = ["mnist", "fashion-mnist", "cifar10"];

fn file(name: &str, sha256: &str) -> RemoteFile {
    RemoteFile {
        name: name.into(),
        sha256: sha256.into(),
    }
}

/// The published manifest of a dataset, by name.
pub fn manifest(name: &str) -> Option<Manifest> {
    let m = match name {
        "mnist" => Manifest {
            name: "mnist".into(),
            mirrors: vec![
                "https://ossci-datasets.s3.amazonaws.com/mnist/".into(),
                "https://storage.googleapis.com/cvdf-datasets/mnist/".into(),
            ],
            files: vec![
                file(
                    "train-images-idx3-ubyte.gz",
                    "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                ),
                file(
                    "train-labels-idx1-ubyte.gz",
                    "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                ),
                file(
                    "t10k-images-idx3-ubyte.gz",
                    "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                ),
                file(
                    "t10k-labels-idx1-ubyte.gz",
                    "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                ),
            ],
            extract: vec![],
        },
        "fashion-mnist" => Manifest {
            name: "fashion-mnist".into(),
            mirrors: vec![
                "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/".into(),
                "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"
                    .into(),
            ],
            files: vec![
                file(
                    "train-images-idx3-ubyte.gz",
                    "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                ),
                file(
                    "train-labels-idx1-ubyte.gz",
                    "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                ),
                file(
                    "t10k-images-idx3-ubyte.gz",
                    "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                ),
                file(
                    "t10k-labels-idx1-ubyte.gz",
                    "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                ),
            ],
            extract: vec![],
        },
        "cifar10" => Manifest {
            name: "cifar10".into(),
            mirrors: vec!["https://www.cs.toronto.edu/~kriz/".into()],
            files: vec![file(
                "cifar-10-binary.tar.gz",
                "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
            )],
            extract: super::cifar10::TRAIN_FILES
                .iter()
                .chain(std::iter::once(&super::cifar10::TEST_FILE))
                .chain(std::iter::once(&"batches.meta.txt"))
                .map(|s| s.to_string())
                .collect(),
        },
        _ => return None,
    };
    Some(m)
}

/// The default cache folder: `$GENMOD_CACHE`, else `$XDG_CACHE_HOME/genmod`, else
/// `~/.cache/genmod`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("GENMOD_CACHE") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(p).join("genmod");
    }
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache").join("genmod"))
        .unwrap_or_else(|| PathBuf::from(".genmod-cache"))
}

/// Progress of a download: file name, bytes so far, total bytes when the server says.
pub type Progress<'a> = &'a mut dyn FnMut(&str, u64, Option<u64>);

/// SHA-256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Downloads (or finds already verified) every file of `manifest` into `cache/NAME/`,
/// unpacks archives, and returns that folder. `mirrors`, when given, replaces the
/// manifest's mirrors (for a local copy or a test server).
pub fn fetch(
    manifest: &Manifest,
    cache: &Path,
    mirrors: Option<&[String]>,
    progress: Progress<'_>,
) -> Result<PathBuf> {
    let dir = cache.join(&manifest.name);
    fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
    let mirrors = mirrors.unwrap_or(&manifest.mirrors);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(20)))
        .timeout_recv_body(Some(Duration::from_secs(60)))
        .http_status_as_error(false)
        .build()
        .into();
    for f in &manifest.files {
        let target = dir.join(&f.name);
        if target.is_file() {
            if sha256_file(&target)? == f.sha256 {
                continue;
            }
            // A final file that no longer matches is not trusted: fetch it again.
            fs::remove_file(&target).map_err(|e| DataError::io(&target, e))?;
        }
        let mut errors = Vec::new();
        let mut done = false;
        for base in mirrors {
            let url = format!("{base}{}", f.name);
            match download_one(&agent, &url, &target, &f.sha256, progress) {
                Ok(()) => {
                    done = true;
                    break;
                }
                Err(e @ DataError::Checksum { .. }) => return Err(e),
                Err(e) => errors.push(e.to_string()),
            }
        }
        if !done {
            // Every file still missing, so that one trip by hand is enough.
            let missing: Vec<&str> = manifest
                .files
                .iter()
                .filter(|g| !dir.join(&g.name).is_file())
                .map(|g| g.name.as_str())
                .collect();
            return Err(DataError::Download {
                url: f.name.clone(),
                message: format!(
                    "every mirror failed ({}). Download {} by hand from one of {} into {}, then fetch again",
                    errors.join("; "),
                    missing.join(", "),
                    mirrors.join(", "),
                    dir.display()
                ),
            });
        }
    }
    if !manifest.extract.is_empty() {
        for f in &manifest.files {
            extract_members(&dir.join(&f.name), &dir, &manifest.extract)?;
        }
    }
    Ok(dir)
}

fn download_one(
    agent: &ureq::Agent,
    url: &str,
    target: &Path,
    sha256: &str,
    progress: Progress<'_>,
) -> Result<()> {
    let part = target.with_file_name(format!(
        "{}.part",
        target.file_name().unwrap_or_default().to_string_lossy()
    ));
    let have = fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    let mut req = agent.get(url);
    if have > 0 {
        req = req.header("Range", &format!("bytes={have}-"));
    }
    let err = |message: String| DataError::Download {
        url: url.into(),
        message,
    };
    let mut resp = req.call().map_err(|e| err(e.to_string()))?;
    let status = resp.status().as_u16();
    let (mut out, mut written) = match status {
        206 if have > 0 => {
            let f = OpenOptions::new()
                .append(true)
                .open(&part)
                .map_err(|e| DataError::io(&part, e))?;
            (f, have)
        }
        200 => (File::create(&part).map_err(|e| DataError::io(&part, e))?, 0),
        416 => {
            // Our partial file is longer than the resource: start over next time.
            let _ = fs::remove_file(&part);
            return Err(err(
                "server refused the resume range; the partial file was removed, run again".into(),
            ));
        }
        s => return Err(err(format!("HTTP status {s}"))),
    };
    let total = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(|len| len + written);
    let name = target
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let mut reader = resp.body_mut().as_reader();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf).map_err(|e| {
            err(format!(
                "connection lost after {written} bytes ({e}); run again to resume"
            ))
        })?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])
            .map_err(|e| DataError::io(&part, e))?;
        written += n as u64;
        progress(&name, written, total);
    }
    out.sync_all().map_err(|e| DataError::io(&part, e))?;
    drop(out);
    if let Some(t) = total
        && written < t
    {
        return Err(err(format!(
            "connection closed after {written} of {t} bytes; run again to resume"
        )));
    }
    let actual = sha256_file(&part)?;
    if actual != sha256 {
        let _ = fs::remove_file(&part);
        return Err(DataError::Checksum {
            path: target.to_path_buf(),
            expected: sha256.into(),
            actual,
        });
    }
    fs::rename(&part, target).map_err(|e| DataError::io(target, e))?;
    Ok(())
}

/// Extracts the members of a `.tar.gz` whose base names are in `wanted`, flat into `dir`.
/// Paths inside the archive are never used as paths: only the base name, matched against
/// `wanted`, so nothing can land outside `dir`.
pub fn extract_members(archive: &Path, dir: &Path, wanted: &[String]) -> Result<()> {
    let f = File::open(archive).map_err(|e| DataError::io(archive, e))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let entries = tar.entries().map_err(|e| DataError::io(archive, e))?;
    let mut found = Vec::new();
    for entry in entries {
        let mut entry = entry.map_err(|e| DataError::io(archive, e))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().map_err(|e| DataError::io(archive, e))?;
        let Some(base) = path.file_name().map(|b| b.to_string_lossy().into_owned()) else {
            continue;
        };
        if !wanted.contains(&base) || found.contains(&base) {
            continue;
        }
        let mut data = Vec::new();
        entry
            .read_to_end(&mut data)
            .map_err(|e| DataError::io(archive, e))?;
        crate::util::atomic_write(&dir.join(&base), &data)
            .map_err(|e| DataError::io(&dir.join(&base), e))?;
        found.push(base);
    }
    let missing: Vec<&String> = wanted.iter().filter(|w| !found.contains(w)).collect();
    if !missing.is_empty() {
        return Err(DataError::invalid(
            archive,
            format!("archive lacks the members {missing:?}"),
        ));
    }
    Ok(())
}
