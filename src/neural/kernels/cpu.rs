//! The f32 slices behind CPU storages, for genmod's custom ops (fused activations, GEMM
//! convolutions, batch norm, in-place Adam). Each op takes only contiguous f32 tensors; the
//! callers make their inputs contiguous and fall back to candle's ops for anything else.

use candle_core::{CpuStorage, Layout, Result};
use rayon::prelude::*;

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

/// `len` zeros with room for `spare` more values, so that an op can append its kernel and
/// bias gradients to its input gradient without moving it: a DCGAN layer's input gradient
/// is megabytes, and the copy into a larger buffer ran on one thread while the others
/// waited.
pub(super) fn zeros(len: usize, spare: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(len + spare);
    v.resize(len, 0.0);
    v
}

/// Sum of `f` over a slice in eight f32 lanes (the compiler keeps them in one vector
/// register; a single running sum is a chain of dependent additions), returned as f64.
pub(super) fn lane_sum(v: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut lanes = [0f32; 8];
    let mut chunks = v.chunks_exact(8);
    for c in &mut chunks {
        for (l, &x) in lanes.iter_mut().zip(c) {
            *l += f(x);
        }
    }
    let tail: f32 = chunks.remainder().iter().map(|&x| f(x)).sum();
    lanes.iter().map(|&l| l as f64).sum::<f64>() + tail as f64
}

/// Each channel's sum over an (images, channels, plane) buffer: a bias's gradient. One task
/// per channel, its planes added in image order in f64, so the sums are the same bits on
/// any number of threads.
pub(super) fn channel_sums(values: &[f32], channels: usize, plane: usize) -> Vec<f32> {
    let image = channels * plane;
    if image == 0 {
        return vec![0.0; channels];
    }
    (0..channels)
        .into_par_iter()
        .map(|ch| {
            let planes = values
                .chunks_exact(image)
                .map(|x| &x[ch * plane..][..plane]);
            planes.map(|p| lane_sum(p, |v| v)).sum::<f64>() as f32
        })
        .collect()
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
    read_left_operands_in_place();
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    if column_major_is_cheaper((m, n, k), lhs, rhs) {
        return matmul_through_columns((m, n, k), dst, accumulate, lhs, rhs, parallelism);
    }
    // SAFETY: fits() and the length check above keep every index inside its slice; dst is a
    // &mut and so aliases neither operand; row-major m x n fits in its m·n values.
    unsafe { gemm_into((m, n, k), dst, (1, n), accumulate, lhs, rhs, parallelism) };
    Ok(())
}

/// Products on one thread up to this many column blocks read a contiguous left operand
/// where it lies instead of packing a copy (gemm's default: 8).
const UNPACKED_LEFT_OPERAND_BLOCKS: usize = 256;

/// Raises gemm's single-thread threshold for packing the left operand, once per process.
///
/// gemm copies its left operand into a packed buffer whenever the product has more than 8
/// blocks of 6 columns, even when the operand's columns are already contiguous. The
/// Winograd convolutions' products have 64 columns, so every one of them (25 per group of
/// images and pass) copied its whole kernel bin to multiply it by 64 columns: 7% of a
/// single-thread DCGAN step, about a third of those products' own arithmetic. Reading the
/// operand in place does the same multiply-adds in the same order (the results are the
/// same bits); gemm still packs any operand whose columns are not contiguous. Timed on a
/// whole DCGAN step (batch 64, one thread, five interleaved runs): median 1,312 img/s at
/// 8, 1,375 at 32, 1,386 at 256; the MLP models' rows moved within their noise (±2%).
fn read_left_operands_in_place() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| gemm::set_lhs_packing_threshold_single_thread(UNPACKED_LEFT_OPERAND_BLOCKS));
}

/// gemm's product of two checked operands into `dst`, whose element (i, j) sits at
/// i·rs + j·cs for `(cs, rs)` = `dst_strides`, added onto it when `accumulate`.
///
/// # Safety
/// Both operands must fit their slices for (m, k) and (k, n) (`Strided::fits`), and `dst`
/// must hold every element the strides address.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_into(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    (dst_cs, dst_rs): (usize, usize),
    accumulate: bool,
    lhs: Strided,
    rhs: Strided,
    parallelism: gemm::Parallelism,
) {
    // SAFETY: the caller's contract.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_cs as isize,
            dst_rs as isize,
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
///
/// Timed on two cores (median of 30), x·Wᵀ through gemm's route against this one: 64 x
/// 1024 x 784, 417 against 240 µs; 256 x 784 x 1024, 2,239 against 1,224 (a weight row of
/// 1,024 values puts every gathered value in the same cache set); where this rule keeps
/// gemm's route the two are within about 5% (256 x 784 x 256: 286 against 272 µs), but for
/// the DCGAN's first layer, 64 x 6272 x 100, the transpose back loses (240 against 318).
fn column_major_is_cheaper((m, n, k): (usize, usize, usize), lhs: Strided, rhs: Strided) -> bool {
    let gathered = |contiguous: bool, values: usize| if contiguous { 0 } else { values };
    let row_major_route = gathered(rhs.cs == 1, n * k);
    // The transpose back reads and writes each value out of order: counted twice.
    let column_major_route =
        gathered(lhs.rs == 1, m * k) + gathered(rhs.rs == 1, n * k) + 2 * m * n;
    column_major_route < row_major_route
}

/// `matmul` computed into a column-major scratch matrix (gemm's native layout), then
/// transposed onto the row-major `dst` in 8 x 8 blocks.
fn matmul_through_columns(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    accumulate: bool,
    lhs: Strided,
    rhs: Strided,
    parallelism: gemm::Parallelism,
) -> Result<()> {
    // A buffer kept per thread: a fresh one would fault in its pages on every call. Taken
    // out while in use, so that a nested call (rayon may run another task here while gemm
    // waits) simply allocates its own.
    let mut columns = SCRATCH.with(|cell| cell.take());
    columns.clear();
    columns.resize(m * n, 0.0);
    // SAFETY: the caller checked that both operands fit their slices; `columns` holds the
    // m × n product with element (i, j) at i + j·m.
    unsafe {
        gemm_into(
            (m, n, k),
            &mut columns,
            (m, 1),
            false,
            lhs,
            rhs,
            parallelism,
        )
    };
    // Bands of eight destination rows, one task each when the product is large enough to
    // share; within a band, 8 x 8 blocks transposed in registers.
    let product = &columns;
    let band =
        |(b, rows): (usize, &mut [f32])| transpose_band(product, m, b * BAND, rows, n, accumulate);
    let dst = &mut dst[..m * n];
    if m * n >= PARALLEL_TRANSPOSE && !matches!(parallelism, gemm::Parallelism::None) {
        dst.par_chunks_mut(BAND * n).enumerate().for_each(band);
    } else {
        dst.chunks_mut(BAND * n).enumerate().for_each(band);
    }
    SCRATCH.with(|cell| cell.set(columns));
    Ok(())
}

/// Destination rows per band of the transpose back.
const BAND: usize = 8;

/// Rows i0.. of `rows` (a band of up to [`BAND`] rows of `n` values) set to, or
/// incremented by, the matching values of the column-major m-row `product`.
fn transpose_band(product: &[f32], m: usize, i0: usize, rows: &mut [f32], n: usize, add: bool) {
    let height = rows.len() / n;
    // Columns before `done` went through the vector blocks.
    #[cfg(target_arch = "x86_64")]
    let done = if height == BAND && std::arch::is_x86_feature_detected!("avx") {
        let blocks = n / 8;
        for b in 0..blocks {
            // SAFETY: AVX is present; the block's columns 8b..8b+8 < n and rows
            // i0..i0+8 <= m lie inside both slices (also asserted inside).
            unsafe { transpose_block_avx(product, m, i0, 8 * b, rows, n, add) };
        }
        8 * blocks
    } else {
        0
    };
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    for jj in done..n {
        let run = &product[jj * m + i0..jj * m + i0 + height];
        for (r, &v) in run.iter().enumerate() {
            let d = &mut rows[r * n + jj];
            *d = if add { *d + v } else { v };
        }
    }
}

/// One 8 x 8 block: columns j..j+8 of rows i0..i0+8, eight loads, the classic
/// unpack/shuffle/permute transpose, eight stores.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn transpose_block_avx(
    product: &[f32],
    m: usize,
    i0: usize,
    j: usize,
    rows: &mut [f32],
    n: usize,
    add: bool,
) {
    use std::arch::x86_64::*;
    assert!(i0 + 8 <= m && j + 8 <= n && rows.len() >= 8 * n && (j + 8) * m <= product.len());
    // SAFETY: the assertion keeps every 8-value load and store inside its slice.
    unsafe {
        let col = |c: usize| _mm256_loadu_ps(product.as_ptr().add((j + c) * m + i0));
        let (c0, c1, c2, c3) = (col(0), col(1), col(2), col(3));
        let (c4, c5, c6, c7) = (col(4), col(5), col(6), col(7));
        let (t0, t1) = (_mm256_unpacklo_ps(c0, c1), _mm256_unpackhi_ps(c0, c1));
        let (t2, t3) = (_mm256_unpacklo_ps(c2, c3), _mm256_unpackhi_ps(c2, c3));
        let (t4, t5) = (_mm256_unpacklo_ps(c4, c5), _mm256_unpackhi_ps(c4, c5));
        let (t6, t7) = (_mm256_unpacklo_ps(c6, c7), _mm256_unpackhi_ps(c6, c7));
        let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        let out = [
            _mm256_permute2f128_ps::<0x20>(s0, s4),
            _mm256_permute2f128_ps::<0x20>(s1, s5),
            _mm256_permute2f128_ps::<0x20>(s2, s6),
            _mm256_permute2f128_ps::<0x20>(s3, s7),
            _mm256_permute2f128_ps::<0x31>(s0, s4),
            _mm256_permute2f128_ps::<0x31>(s1, s5),
            _mm256_permute2f128_ps::<0x31>(s2, s6),
            _mm256_permute2f128_ps::<0x31>(s3, s7),
        ];
        for (r, v) in out.into_iter().enumerate() {
            let d = rows.as_mut_ptr().add(r * n + j);
            let v = if add {
                _mm256_add_ps(_mm256_loadu_ps(d), v)
            } else {
                v
            };
            _mm256_storeu_ps(d, v);
        }
    }
}

thread_local! {
    /// [`matmul_through_columns`]'s column-major product, kept between calls.
    static SCRATCH: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Values of a product above which its transpose back is shared between threads.
const PARALLEL_TRANSPOSE: usize = 64 * 1024;

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

    /// A bias gradient's channel sums match the f64 definition and are the same bits on one
    /// thread and on three.
    #[test]
    fn channel_sums_match_the_definition_on_any_number_of_threads() {
        let (images, channels, plane) = (5, 6, 49);
        let g = values(images * channels * plane, 0.5);
        let on = |threads| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| channel_sums(&g, channels, plane))
        };
        let sums = on(1);
        assert_eq!(sums, on(3));
        for (ch, &s) in sums.iter().enumerate() {
            let exact: f64 = (0..images)
                .flat_map(|i| &g[(i * channels + ch) * plane..][..plane])
                .map(|&v| v as f64)
                .sum();
            assert!(
                (s as f64 - exact).abs() < 1e-5,
                "channel {ch}: {s} vs {exact}"
            );
        }
        assert_eq!(channel_sums(&[], 3, 0), vec![0.0; 3]);
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
        // Ragged edges of the 8 x 8 transposed blocks; then a product large enough for the
        // transpose back to be shared between threads.
        const { assert!(37 * 70 < PARALLEL_TRANSPOSE && 67 * 1001 >= PARALLEL_TRANSPOSE) };
        for dims in [(37, 70, 53), (67, 1001, 13)] {
            routes_agree_with_the_definition(dims);
        }
    }

    fn routes_agree_with_the_definition((m, n, k): (usize, usize, usize)) {
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
                        let parallel = gemm::Parallelism::Rayon(2);
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
