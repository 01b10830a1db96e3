//! The f32 slices behind CPU storages, for genmod's custom ops (fused activations, GEMM
//! convolutions, batch norm, in-place Adam). Each op takes only contiguous f32 tensors; the
//! callers make their inputs contiguous and fall back to candle's ops for anything else.

use candle_core::{CpuStorage, Layout, Result};

/// The contiguous f32 values a layout views, or an error naming `op`.
pub fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
        _ => candle_core::bail!("{op}: expected a contiguous f32 tensor"),
    }
}

/// The same, writable, for in-place ops.
pub fn f32_slice_mut<'a>(s: &'a mut CpuStorage, l: &Layout, op: &str) -> Result<&'a mut [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&mut v[a..b]),
        _ => candle_core::bail!("{op}: expected a contiguous f32 tensor"),
    }
}
