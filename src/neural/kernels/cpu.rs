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
    if column_major_is_cheaper((m, n, k), lhs, rhs) {
        return matmul_through_columns((m, n, k), dst, accumulate, lhs, rhs, parallelism);
    }
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

/// Whether computing the product column-major, then transposing it into `dst`, gathers
/// fewer values than gemm's own route.
///
/// gemm's microkernel writes a column-major destination, so for a row-major `dst` it
/// computes dstᵀ = rhsᵀ · lhsᵀ, and rhsᵀ becomes its packed left operand. Packing copies
/// contiguous runs when that operand is column-major (rhs row-major, `cs == 1`) but gathers
/// one value at a time otherwise. A dense layer's forward pass reads its (out, in) weight
/// transposed, so every step gathered the whole weight: at batch 64 that is more values
/// than the batch of activations, and took a third of an MLP GAN's step. Computed
/// column-major, the left operand is `lhs` itself (the activations, gathered if row-major)
/// and the weight is read in place; the transpose back costs about 2·m·n.
fn column_major_is_cheaper((m, n, k): (usize, usize, usize), lhs: Strided, rhs: Strided) -> bool {
    let gathered = |contiguous: bool, values: usize| if contiguous { 0 } else { values };
    let row_major_route = gathered(rhs.cs == 1, n * k);
    // The transpose back reads and writes each value out of order: counted twice.
    let column_major_route =
        gathered(lhs.rs == 1, m * k) + gathered(rhs.rs == 1, n * k) + 2 * m * n;
    column_major_route < row_major_route
}

/// `matmul` computed into a column-major scratch matrix (gemm's native layout), then
/// transposed onto the row-major `dst`, in tiles so that both sides stay in cache.
fn matmul_through_columns(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    accumulate: bool,
    lhs: Strided,
    rhs: Strided,
    parallelism: gemm::Parallelism,
) -> Result<()> {
    let mut columns = vec![0f32; m * n];
    // SAFETY: the caller checked that both operands fit their slices; `columns` holds the
    // m × n product with element (i, j) at i + j·m.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            columns.as_mut_ptr(),
            m as isize,
            1,
            false,
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
    const TILE: usize = 16;
    for i0 in (0..m).step_by(TILE) {
        for j0 in (0..n).step_by(TILE) {
            for i in i0..(i0 + TILE).min(m) {
                let row = &mut dst[i * n..(i + 1) * n];
                for j in j0..(j0 + TILE).min(n) {
                    let v = columns[i + j * m];
                    row[j] = if accumulate { row[j] + v } else { v };
                }
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: f32) -> Vec<f32> {
        (0..len).map(|i| ((i as f32 + seed) * 0.37).sin()).collect()
    }

    /// The product by the definition, in f64.
    fn naive((m, n, k): (usize, usize, usize), lhs: Strided, rhs: Strided) -> Vec<f64> {
        let mut out = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k)
                    .map(|kk| {
                        f64::from(lhs.data[i * lhs.rs + kk * lhs.cs])
                            * f64::from(rhs.data[kk * rhs.rs + j * rhs.cs])
                    })
                    .sum();
            }
        }
        out
    }

    /// Every layout of the operands, through whichever route `matmul` takes, and both
    /// routes forced, agree with the definition, with and without accumulation.
    #[test]
    fn both_routes_compute_the_product_for_every_operand_layout() {
        let (m, n, k) = (37, 70, 53);
        let a = values(m * k, 1.0);
        let b = values(k * n, 2.0);
        let start = values(m * n, 3.0);
        for lhs in [Strided::rows(&a, k), Strided::transposed(&a, m)] {
            for rhs in [Strided::rows(&b, n), Strided::transposed(&b, k)] {
                let exact = naive((m, n, k), lhs, rhs);
                for accumulate in [false, true] {
                    let expected: Vec<f64> = exact
                        .iter()
                        .zip(&start)
                        .map(|(p, &s)| if accumulate { p + f64::from(s) } else { *p })
                        .collect();
                    let through_columns = |dst: &mut [f32]| {
                        let parallel = gemm::Parallelism::None;
                        matmul_through_columns((m, n, k), dst, accumulate, lhs, rhs, parallel)
                    };
                    let mut chosen = start.clone();
                    matmul((m, n, k), &mut chosen, accumulate, lhs, rhs, 2).unwrap();
                    let mut columns = start.clone();
                    through_columns(&mut columns).unwrap();
                    for got in [&chosen, &columns] {
                        for (g, e) in got.iter().zip(&expected) {
                            assert!((f64::from(*g) - e).abs() < 1e-5, "{g} against {e}");
                        }
                    }
                }
            }
        }
    }

    /// A dense layer's forward pass at batch 64 (weights read transposed) goes column-major;
    /// a batch of 1,000 samples, and operands gemm packs by copying, keep gemm's route.
    #[test]
    fn the_column_major_route_is_taken_where_it_gathers_less() {
        let x = vec![0f32; 1000 * 784];
        let w = vec![0f32; 1024 * 784];
        let weight_t = Strided::transposed(&w, 784);
        assert!(column_major_is_cheaper(
            (64, 1024, 784),
            Strided::rows(&x, 784),
            weight_t
        ));
        assert!(!column_major_is_cheaper(
            (1000, 1024, 784),
            Strided::rows(&x, 784),
            weight_t
        ));
        assert!(!column_major_is_cheaper(
            (64, 1024, 784),
            Strided::rows(&x, 784),
            Strided::rows(&w, 1024)
        ));
    }
}
