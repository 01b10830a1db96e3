//! Numeric arrays in the files other tools write: NumPy's NPY (`np.save`) and IDX. They
//! carry samples between genmod and other generators, PyTorch's among them: `genmod
//! generate` writes them, `genmod eval --sample-file` reads them.
//!
//! NPY (format versions 1–3): the magic `\x93NUMPY`, two version bytes, the header's length
//! (u16 little-endian in version 1, u32 after), then a Python dict literal with `descr`,
//! `fortran_order` and `shape`, then the data. Only C-ordered little-endian (or byte-sized)
//! unsigned bytes, f32 and integers are read; anything else is refused with what was found.

use super::{DataError, Result, read_maybe_gzip};
use std::path::Path;

/// The largest array file read (ten thousand 64x64 RGB images in f32 are 0.5 GB).
pub const MAX_ARRAY_BYTES: u64 = 2 << 30;

/// The elements of an array, in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub enum Elements {
    U8(Vec<u8>),
    F32(Vec<f32>),
    /// Any integer type, widened (labels).
    Int(Vec<i64>),
}

impl Elements {
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many elements there are.
    pub fn len(&self) -> usize {
        match self {
            Elements::U8(v) => v.len(),
            Elements::F32(v) => v.len(),
            Elements::Int(v) => v.len(),
        }
    }

    /// The element type as NumPy spells it, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Elements::U8(_) => "uint8",
            Elements::F32(_) => "float32",
            Elements::Int(_) => "integer",
        }
    }
}

/// An array read from a file: its shape and its elements.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    pub dims: Vec<usize>,
    pub elements: Elements,
}

const NPY_MAGIC: &[u8] = b"\x93NUMPY";

/// Reads an NPY or IDX file (IDX possibly gzip-compressed); the format is told by the
/// content, not the name.
pub fn read(path: &Path) -> Result<Array> {
    let bytes = read_maybe_gzip(path, MAX_ARRAY_BYTES)?;
    if bytes.starts_with(NPY_MAGIC) {
        parse_npy(path, &bytes)
    } else if bytes.len() >= 4 && bytes[0] == 0 && bytes[1] == 0 {
        parse_idx(path, &bytes)
    } else {
        let head: Vec<String> = bytes.iter().take(6).map(|b| format!("{b:02x}")).collect();
        Err(DataError::invalid(
            path,
            format!(
                "neither NPY (starts with \\x93NUMPY) nor IDX (starts with two zero bytes); the file starts with {}",
                head.join(" ")
            ),
        ))
    }
}

fn parse_npy(path: &Path, bytes: &[u8]) -> Result<Array> {
    let (descr, dims, start) = npy_header(path, bytes)?;
    let data = &bytes[start..];
    let count: usize = dims.iter().product();
    let (size, elements) = npy_elements(path, &descr, data, count)?;
    check_count(path, &dims, elements.len(), data.len(), size)?;
    Ok(Array { dims, elements })
}

/// The element type, the shape and the offset of the data.
fn npy_header(path: &Path, bytes: &[u8]) -> Result<(String, Vec<usize>, usize)> {
    let truncated = |offset: usize, expected: &str| DataError::Truncated {
        path: path.into(),
        offset: offset as u64,
        expected: expected.into(),
    };
    let major = *bytes
        .get(6)
        .ok_or_else(|| truncated(6, "the NPY version"))?;
    let len_size = match major {
        1 => 2,
        2 | 3 => 4,
        v => {
            return Err(DataError::invalid(
                path,
                format!("NPY format version {v}; genmod reads versions 1 to 3"),
            ));
        }
    };
    let len_bytes = bytes
        .get(8..8 + len_size)
        .ok_or_else(|| truncated(8, "the NPY header length"))?;
    let header_len = len_bytes
        .iter()
        .rev()
        .fold(0usize, |acc, &b| (acc << 8) | b as usize);
    let start = 8 + len_size;
    let header = bytes
        .get(start..start + header_len)
        .ok_or_else(|| truncated(bytes.len(), "the NPY header the length field announces"))?;
    let header = std::str::from_utf8(header)
        .map_err(|_| DataError::invalid(path, "the NPY header is not text"))?;
    let field = |key: &str| {
        dict_value(header, key).ok_or_else(|| {
            DataError::invalid(path, format!("no '{key}' in the NPY header {header:?}"))
        })
    };
    let descr = field("descr")?.trim_matches(|c| c == '\'' || c == '"');
    if field("fortran_order")?.starts_with("True") {
        return Err(DataError::invalid(
            path,
            "Fortran-ordered NPY; save a C-ordered array (np.ascontiguousarray)",
        ));
    }
    let shape = field("shape")?;
    let dims = parse_shape(shape)
        .ok_or_else(|| DataError::invalid(path, format!("unreadable NPY shape {shape}")))?;
    Ok((descr.to_string(), dims, start + header_len))
}

/// The elements of `data` (at most `count`) as `descr` says, and the size of one.
fn npy_elements(path: &Path, descr: &str, data: &[u8], count: usize) -> Result<(usize, Elements)> {
    let size = match descr {
        "|u1" | "<u1" | "|i1" | "<i1" => 1,
        "<f4" => 4,
        "<i2" | "<u2" => 2,
        "<i4" | "<u4" => 4,
        "<i8" => 8,
        other => {
            return Err(DataError::invalid(
                path,
                format!(
                    "NPY element type {other:?}; genmod reads uint8 ('|u1'), float32 ('<f4') \
                     and, for labels, little-endian integers (convert with .astype(np.float32) \
                     or .astype(np.uint8))"
                ),
            ));
        }
    };
    let take = data.len().min(count.saturating_mul(size));
    let chunks = data[..take - take % size].chunks_exact(size);
    let elements = match descr {
        "|u1" | "<u1" => Elements::U8(data[..take].to_vec()),
        "<f4" => Elements::F32(
            chunks
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        _ => {
            let signed = descr.as_bytes()[1] == b'i';
            Elements::Int(chunks.map(|c| little_endian_int(c, signed)).collect())
        }
    };
    Ok((size, elements))
}

/// A little-endian integer of 1 to 8 bytes, sign-extended when `signed`.
fn little_endian_int(bytes: &[u8], signed: bool) -> i64 {
    let negative = signed && bytes[bytes.len() - 1] & 0x80 != 0;
    let mut v = [if negative { 0xFF } else { 0 }; 8];
    v[..bytes.len()].copy_from_slice(bytes);
    i64::from_le_bytes(v)
}

/// The text after `'key':` in a Python dict literal, up to the next top-level comma.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header
        .find(&format!("'{key}'"))
        .or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = header[at + key.len() + 2..].trim_start();
    let rest = rest.strip_prefix(':')?.trim_start();
    let mut depth = 0;
    for (i, c) in rest.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' | '}' if depth == 0 => return Some(rest[..i].trim()),
            _ => {}
        }
    }
    Some(rest.trim())
}

/// `(10000, 28, 28)`, `(10000,)` or `()` as dimensions.
fn parse_shape(s: &str) -> Option<Vec<usize>> {
    let inner = s.strip_prefix('(')?.strip_suffix(')')?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| t.trim_end_matches('L').parse().ok())
        .collect()
}

fn check_count(
    path: &Path,
    dims: &[usize],
    got: usize,
    data_bytes: usize,
    size: usize,
) -> Result<()> {
    let count = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    match count {
        Some(n) if n == got && data_bytes == n * size => Ok(()),
        Some(n) if data_bytes < n.saturating_mul(size) => Err(DataError::Truncated {
            path: path.into(),
            offset: data_bytes as u64,
            expected: format!("{n} elements of {size} bytes for shape {dims:?}"),
        }),
        _ => Err(DataError::invalid(
            path,
            format!(
                "{data_bytes} data bytes, but shape {dims:?} of {size}-byte elements needs {}",
                count.map_or("more than memory holds".to_string(), |n| (n * size)
                    .to_string())
            ),
        )),
    }
}

fn parse_idx(path: &Path, bytes: &[u8]) -> Result<Array> {
    let code = bytes[2];
    let size = match code {
        0x08 => 1,
        0x0D => 4,
        0x0C => 4,
        other => {
            return Err(DataError::invalid(
                path,
                format!(
                    "IDX element type {other:#04x} at offset 2; genmod reads unsigned bytes \
                     (0x08), f32 (0x0D) and, for labels, i32 (0x0C)"
                ),
            ));
        }
    };
    let (dims, header_len) = super::idx::dimensions(path, bytes)?;
    let data = &bytes[header_len..];
    let whole = &data[..data.len() - data.len() % size];
    let elements = match code {
        0x08 => Elements::U8(whole.to_vec()),
        0x0D => Elements::F32(
            whole
                .chunks_exact(4)
                .map(|c| f32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        _ => Elements::Int(
            whole
                .chunks_exact(4)
                .map(|c| i32::from_be_bytes([c[0], c[1], c[2], c[3]]) as i64)
                .collect(),
        ),
    };
    check_count(path, &dims, elements.len(), data.len(), size)?;
    Ok(Array { dims, elements })
}

/// The NPY file of `elements` with shape `dims` (version 1, C order, little-endian).
pub fn npy_bytes(dims: &[usize], elements: &Elements) -> Vec<u8> {
    let descr = match elements {
        Elements::U8(_) => "|u1",
        Elements::F32(_) => "<f4",
        Elements::Int(_) => "<i8",
    };
    let shape = match dims {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            dims.iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // The data starts on a 64-byte boundary; the header ends in a newline.
    let unpadded = NPY_MAGIC.len() + 4 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + elements.len() * 8);
    out.extend_from_slice(NPY_MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    match elements {
        Elements::U8(v) => out.extend_from_slice(v),
        Elements::F32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Elements::Int(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(dims: &[usize], elements: Elements) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        std::fs::write(&p, npy_bytes(dims, &elements)).unwrap();
        let back = read(&p).unwrap();
        assert_eq!(back.dims, dims);
        assert_eq!(back.elements, elements);
    }

    #[test]
    fn npy_written_here_reads_back() {
        roundtrip(
            &[2, 1, 2, 2],
            Elements::F32(vec![0.0, 0.5, 1.0, 0.25, 0.1, 0.2, 0.3, 0.4]),
        );
        roundtrip(&[3], Elements::U8(vec![0, 128, 255]));
        roundtrip(&[4], Elements::Int(vec![0, 9, -1, 1 << 40]));
    }

    #[test]
    fn npy_headers_as_numpy_writes_them_parse() {
        let h = "{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }";
        let mut bytes = NPY_MAGIC.to_vec();
        bytes.extend_from_slice(&[1, 0]);
        bytes.extend_from_slice(&(h.len() as u16).to_le_bytes());
        bytes.extend_from_slice(h.as_bytes());
        for v in [7i32, -2, 5] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.npy");
        std::fs::write(&p, &bytes).unwrap();
        assert_eq!(read(&p).unwrap().elements, Elements::Int(vec![7, -2, 5]));
        // One element short: truncated, with the file named.
        std::fs::write(&p, &bytes[..bytes.len() - 4]).unwrap();
        let err = read(&p).unwrap_err().to_string();
        assert!(err.contains("l.npy") && err.contains("3 elements"), "{err}");
    }

    #[test]
    fn unsupported_types_are_refused_with_what_was_found() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.npy");
        let mut bytes = npy_bytes(&[1], &Elements::F32(vec![0.5]));
        let at = bytes.windows(3).position(|w| w == b"<f4").unwrap();
        bytes[at..at + 3].copy_from_slice(b">f4");
        std::fs::write(&p, &bytes).unwrap();
        let err = read(&p).unwrap_err().to_string();
        assert!(err.contains("\">f4\"") && err.contains("float32"), "{err}");
        std::fs::write(&p, b"PK\x03\x04 not an array").unwrap();
        let err = read(&p).unwrap_err().to_string();
        assert!(
            err.contains("neither NPY") && err.contains("50 4b 03 04"),
            "{err}"
        );
    }

    #[test]
    fn idx_f32_and_bytes_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.idx");
        let mut bytes = vec![0, 0, 0x0D, 2, 0, 0, 0, 1, 0, 0, 0, 2];
        for v in [0.25f32, 1.0] {
            bytes.extend_from_slice(&v.to_be_bytes());
        }
        std::fs::write(&p, &bytes).unwrap();
        let a = read(&p).unwrap();
        assert_eq!(
            (a.dims, a.elements),
            (vec![1, 2], Elements::F32(vec![0.25, 1.0]))
        );
        super::super::idx::write(&p, &[2], &[3, 4], true).unwrap();
        assert_eq!(read(&p).unwrap().elements, Elements::U8(vec![3, 4]));
    }
}
