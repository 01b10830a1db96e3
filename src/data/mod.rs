//! Datasets every model trains on, behind one [`Dataset`] type.
//!
//! Readers never panic on bad bytes: every failure is a [`DataError`] that names the file,
//! the offset or record where it went wrong, and what was expected there.

pub mod arrays;
pub mod cifar10;
pub mod dataset;
pub mod download;
pub mod idx;
pub mod image_folder;
pub mod mnist;
pub mod play_tennis;
pub mod source;

pub use dataset::{Batch, Dataset, PixelScale, Split};
pub use source::DataSource;

use std::path::{Path, PathBuf};

/// Everything that can go wrong while reading, fetching or checking a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    // The cause is in the message and not linked as `source`, so that a report of the
    // chain does not print it twice.
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: wrong magic number {found:#010x} at offset 0, expected {expected}")]
    BadMagic {
        path: PathBuf,
        found: u32,
        expected: String,
    },
    #[error("{path}: truncated at offset {offset}: expected {expected}")]
    Truncated {
        path: PathBuf,
        offset: u64,
        expected: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path}: record {record} (offset {offset}) has label {label}, expected 0..={max}")]
    LabelOutOfRange {
        path: PathBuf,
        record: usize,
        offset: u64,
        label: u32,
        max: u32,
    },
    #[error("{path}: missing file; expected one of: {expected}")]
    MissingFile { path: PathBuf, expected: String },
    #[error(
        "{path}: SHA-256 mismatch, expected {expected}, got {actual}; the file was not used and has been removed"
    )]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("download of {url} failed: {message}")]
    Download { url: String, message: String },
    #[error("{0}")]
    Other(String),
}

impl DataError {
    pub(crate) fn io(path: &Path, cause: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            cause,
        }
    }

    pub(crate) fn invalid(path: &Path, message: impl Into<String>) -> Self {
        DataError::Invalid {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}

/// Result type of the data layer.
pub type Result<T> = std::result::Result<T, DataError>;

/// Reads a whole file, transparently gunzipping it when it starts with the gzip magic.
///
/// `limit` bounds the decompressed size, so that a small hostile `.gz` cannot exhaust memory;
/// exceeding it is an error, never a silent truncation.
pub(crate) fn read_maybe_gzip(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    decode_maybe_gzip(path, raw, limit)
}

pub(crate) fn decode_maybe_gzip(path: &Path, raw: Vec<u8>, limit: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    if raw.len() >= 2 && raw[0] == 0x1f && raw[1] == 0x8b {
        let mut out = Vec::new();
        let mut decoder = flate2::read::MultiGzDecoder::new(&raw[..]).take(limit + 1);
        decoder.read_to_end(&mut out).map_err(|e| {
            DataError::invalid(
                path,
                format!(
                    "gzip stream is corrupt or truncated after {} decompressed bytes: {e}",
                    out.len()
                ),
            )
        })?;
        if out.len() as u64 > limit {
            return Err(DataError::invalid(
                path,
                format!(
                    "decompresses to more than {limit} bytes, larger than any dataset file genmod reads"
                ),
            ));
        }
        Ok(out)
    } else {
        if raw.len() as u64 > limit {
            return Err(DataError::invalid(
                path,
                format!("{} bytes, more than the {limit} bytes allowed", raw.len()),
            ));
        }
        Ok(raw)
    }
}
