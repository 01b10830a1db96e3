//! CIFAR-10, binary version (Krizhevsky 2009): files of 3,073-byte records, one label byte
//! then 3,072 pixel bytes (1,024 red, 1,024 green, 1,024 blue, row-major 32x32).

use super::{DataError, Dataset, Result, Split};
use std::path::{Path, PathBuf};

/// Bytes in one record: a label and a 3x32x32 image.
pub const RECORD_BYTES: usize = 1 + 3 * 32 * 32;

/// The training files, in order.
pub const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];

/// The test file.
pub const TEST_FILE: &str = "test_batch.bin";

/// CIFAR-10's class names, by label.
pub fn class_names() -> Vec<String> {
    [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Parses the records of one batch file, appending pixels and labels.
pub fn parse_records(
    path: &Path,
    bytes: &[u8],
    pixels: &mut Vec<u8>,
    labels: &mut Vec<u32>,
) -> Result<usize> {
    if !bytes.len().is_multiple_of(RECORD_BYTES) {
        let whole = bytes.len() / RECORD_BYTES;
        return Err(DataError::Truncated {
            path: path.into(),
            offset: (whole * RECORD_BYTES) as u64,
            expected: format!(
                "whole {RECORD_BYTES}-byte records; record {whole} has only {} bytes",
                bytes.len() % RECORD_BYTES
            ),
        });
    }
    let n = bytes.len() / RECORD_BYTES;
    pixels.reserve(n * (RECORD_BYTES - 1));
    for (record, chunk) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
        let label = chunk[0];
        if label > 9 {
            return Err(DataError::LabelOutOfRange {
                path: path.into(),
                record,
                offset: (record * RECORD_BYTES) as u64,
                label: label as u32,
                max: 9,
            });
        }
        labels.push(label as u32);
        pixels.extend_from_slice(&chunk[1..]);
    }
    Ok(n)
}

fn read_files(dir: &Path, files: &[&str], name: &str) -> Result<Dataset> {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for f in files {
        let path = dir.join(f);
        if !path.is_file() {
            return Err(DataError::MissingFile {
                path,
                expected: format!(
                    "the CIFAR-10 binary files {} and {TEST_FILE}",
                    TRAIN_FILES.join(", ")
                ),
            });
        }
        // 10,000 records per file; anything much larger is not a CIFAR-10 batch.
        let bytes = super::read_maybe_gzip(&path, 64 * 10_000 * RECORD_BYTES as u64)?;
        parse_records(&path, &bytes, &mut pixels, &mut labels)?;
    }
    let n = labels.len();
    Dataset::new(
        name,
        pixels,
        [n, 3, 32, 32],
        Some(labels),
        Some(class_names()),
    )
    .map_err(|m| DataError::invalid(dir, m))
}

/// Resolves the folder holding the batch files: `dir` itself or `dir/cifar-10-batches-bin`.
pub fn resolve_dir(dir: &Path) -> PathBuf {
    let nested = dir.join("cifar-10-batches-bin");
    if !dir.join(TEST_FILE).is_file() && nested.join(TEST_FILE).is_file() {
        nested
    } else {
        dir.to_path_buf()
    }
}

/// Loads the 50,000 training and 10,000 test images from a folder.
pub fn load_dir(dir: &Path) -> Result<Split> {
    let dir = resolve_dir(dir);
    Ok(Split {
        train: read_files(&dir, &TRAIN_FILES, "cifar10 (train)")?,
        test: read_files(&dir, &[TEST_FILE], "cifar10 (test)")?,
    })
}
