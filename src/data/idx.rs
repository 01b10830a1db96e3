//! The IDX format of MNIST and Fashion-MNIST (LeCun et al.), plain or gzip-compressed.
//!
//! Layout: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions,
//! then each dimension as a big-endian u32, then the data in row-major order.

use super::{DataError, Result, decode_maybe_gzip, read_maybe_gzip};
use std::io::Write;
use std::path::Path;

/// An unsigned-byte IDX array: its dimensions and its data, `dims.iter().product()` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Largest decompressed IDX file genmod accepts (the full MNIST training images are 47 MB).
pub const MAX_IDX_BYTES: u64 = 1 << 30;

fn type_name(code: u8) -> &'static str {
    match code {
        0x08 => "unsigned byte",
        0x09 => "signed byte",
        0x0B => "i16",
        0x0C => "i32",
        0x0D => "f32",
        0x0E => "f64",
        _ => "unknown type",
    }
}

/// Reads an IDX file of unsigned bytes; gzip is detected from the content, not the name.
pub fn read(path: &Path) -> Result<IdxArray> {
    let bytes = read_maybe_gzip(path, MAX_IDX_BYTES)?;
    parse(path, &bytes)
}

/// Parses IDX bytes already in memory; `path` is only used to name the source in errors.
pub fn parse_bytes(path: &Path, raw: Vec<u8>) -> Result<IdxArray> {
    let bytes = decode_maybe_gzip(path, raw, MAX_IDX_BYTES)?;
    parse(path, &bytes)
}

fn parse(path: &Path, bytes: &[u8]) -> Result<IdxArray> {
    if bytes.len() < 4 {
        return Err(DataError::Truncated {
            path: path.into(),
            offset: bytes.len() as u64,
            expected: "a 4-byte IDX magic number".into(),
        });
    }
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if bytes[0] != 0 || bytes[1] != 0 || bytes[3] == 0 {
        return Err(DataError::BadMagic {
            path: path.into(),
            found: magic,
            expected: "0x000008NN (two zero bytes, type 0x08, NN dimensions)".into(),
        });
    }
    if bytes[2] != 0x08 {
        return Err(DataError::invalid(
            path,
            format!(
                "IDX element type {:#04x} ({}) at offset 2; genmod reads unsigned-byte (0x08) files",
                bytes[2],
                type_name(bytes[2])
            ),
        ));
    }
    let (dims, header_len) = dimensions(path, bytes)?;
    let total = dims.iter().fold(1u64, |t, &d| t.saturating_mul(d as u64));
    let available = (bytes.len() - header_len) as u64;
    if total > available {
        return Err(DataError::Truncated {
            path: path.into(),
            offset: bytes.len() as u64,
            expected: format!(
                "{total} data bytes for dimensions {dims:?} after the {header_len}-byte header, found {available}"
            ),
        });
    }
    if total < available {
        return Err(DataError::invalid(
            path,
            format!(
                "{} unexpected bytes after the data at offset {} (dimensions {dims:?} declare {total} bytes)",
                available - total,
                header_len as u64 + total
            ),
        ));
    }
    Ok(IdxArray {
        dims,
        data: bytes[header_len..].to_vec(),
    })
}

/// The dimensions an IDX header declares (byte 3 counts them, each a big-endian u32 from
/// offset 4) and the length of the header; the type code at byte 2 is the caller's to check.
pub(super) fn dimensions(path: &Path, bytes: &[u8]) -> Result<(Vec<usize>, usize)> {
    let ndims = bytes[3] as usize;
    let header_len = 4 + 4 * ndims;
    if bytes.len() < header_len {
        return Err(DataError::Truncated {
            path: path.into(),
            offset: bytes.len() as u64,
            expected: format!("{ndims} big-endian u32 dimensions ending at offset {header_len}"),
        });
    }
    let dims = bytes[4..header_len]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    Ok((dims, header_len))
}

/// Writes an unsigned-byte IDX file, gzip-compressed when `gzip` is set.
pub fn write(path: &Path, dims: &[usize], data: &[u8], gzip: bool) -> Result<()> {
    let total: usize = dims.iter().product();
    if total != data.len() {
        return Err(DataError::invalid(
            path,
            format!(
                "cannot write {} bytes as dimensions {dims:?} ({total} bytes)",
                data.len()
            ),
        ));
    }
    if dims.len() > 255 || dims.iter().any(|&d| d > u32::MAX as usize) {
        return Err(DataError::invalid(
            path,
            "IDX allows at most 255 dimensions of at most u32::MAX",
        ));
    }
    let mut bytes = Vec::with_capacity(4 + 4 * dims.len() + data.len());
    bytes.extend_from_slice(&[0, 0, 0x08, dims.len() as u8]);
    for &d in dims {
        bytes.extend_from_slice(&(d as u32).to_be_bytes());
    }
    bytes.extend_from_slice(data);
    let payload = if gzip {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&bytes).map_err(|e| DataError::io(path, e))?;
        enc.finish().map_err(|e| DataError::io(path, e))?
    } else {
        bytes
    };
    crate::util::atomic_write(path, &payload).map_err(|e| DataError::io(path, e))
}
