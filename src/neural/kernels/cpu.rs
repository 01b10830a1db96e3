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

/// A read-only matrix inside a slice: element (i, j) sits at `i·rs + j·cs`.
#[derive(Debug, Clone, Copy)]
pub struct Strided<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Strided<'a> {
    /// A row-major matrix with `cols` columns.
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose of a row-major matrix with `cols` columns.
    pub fn transposed(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            rs: 1,
            cs: cols,
        }
    }

    /// Whether an (r, c) matrix with these strides stays inside the slice.
    fn fits(&self, r: usize, c: usize) -> bool {
        r == 0 || c == 0 || (r - 1) * self.rs + (c - 1) * self.cs < self.data.len()
    }
}

/// dst (m × n, row-major) = lhs (m × k) · rhs (k × n), or dst += lhs · rhs when `accumulate`,
/// with the gemm crate (the kernels candle's own matmul uses) on `threads` threads. The
/// extents are checked against the slices, so a wrong shape is an error, never a stray read.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    accumulate: bool,
    lhs: Strided,
    rhs: Strided,
    threads: usize,
) -> Result<()> {
    if dst.len() < m * n || !lhs.fits(m, k) || !rhs.fits(k, n) {
        candle_core::bail!(
            "matrix product {m}x{k} · {k}x{n}: operands of {}, {} and {} values do not fit",
            lhs.data.len(),
            rhs.data.len(),
            dst.len()
        );
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return Ok(());
    }
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: fits() and the length check above keep every index inside its slice; dst is a
    // &mut and so aliases neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
    Ok(())
}

/// A gradient buffer cut into each parallel task's run of `run` values, or `tasks` empty
/// runs where the gradient is not wanted (the buffer is empty).
pub fn task_runs(buf: &mut [f32], run: usize, tasks: usize) -> Vec<&mut [f32]> {
    if buf.is_empty() {
        (0..tasks).map(|_| <&mut [f32]>::default()).collect()
    } else {
        buf.chunks_mut(run).collect()
    }
}
