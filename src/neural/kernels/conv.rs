//! Convolutions as matrix products, one fused op per layer, for the CPU.
//!
//! Profiling the DCGAN (`perf record` on `genmod train dcgan`) first put about half of a
//! step in candle's direct convolution loops: its transposed convolution is a per-pixel
//! dot-product loop, and its convolution backward computes the kernel gradient as a dilated
//! convolution whose "kernel" is the whole output gradient. Both layers are written here the
//! way BLAS frameworks do it (Chellapilla et al. 2006): unfold an image into patches
//! (im2col), multiply by the kernel as a matrix, and fold patches back (col2im, im2col's
//! adjoint).
//!
//! Each layer is one op over (input, kernel, bias) whose backward pass computes, in one
//! sweep, only the gradients someone reads (no input gradient for a batch of images or a
//! detached fake, no kernel gradient for a frozen discriminator). The work goes image by
//! image, one run of images per thread: an image's patch matrix (at most a few hundred KiB)
//! stays in cache between the unfold and its GEMMs instead of a whole batch's patches
//! (tens of MiB) going through memory several times, and the kernel gradient is summed in a
//! buffer per thread. Other devices and dtypes use candle's own layers; the tests check
//! both give the same values and gradients.
//!
//! Patches of one image are laid out one row per window position (y, x) and one column per
//! (channel, ky, kx).
//!
//! Layers with a 4x4 kernel, stride 2, padding 1 and channels in eights (the DCGAN's large
//! ones) go to `winograd.rs` instead, which needs about half the multiplications;
//! the ops, their gradients and the packing of the backward pass's output stay the same.

use super::cpu::{Strided, channel_sums, f32_slice, matmul, task_runs, zeros};
use super::linear::Activation;
use super::winograd::{Plan, Wanted};
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use candle_nn::{Conv2d, ConvTranspose2d, Module};
use rayon::prelude::*;

/// A square-kernel sliding window over one image of `channels` x `height` x `width`: kernel
/// side `k`, `stride`, zero `padding`; the grid of window positions is `grid_h` x `grid_w`.
#[derive(Debug, Clone, Copy)]
struct Window {
    channels: usize,
    height: usize,
    width: usize,
    k: usize,
    stride: usize,
    padding: usize,
    grid_h: usize,
    grid_w: usize,
}

impl Window {
    fn new(
        (channels, height, width): (usize, usize, usize),
        k: usize,
        stride: usize,
        padding: usize,
    ) -> Result<Self> {
        let span = |side: usize| (side + 2 * padding).checked_sub(k).map(|d| d / stride + 1);
        match (span(height), span(width)) {
            (Some(grid_h), Some(grid_w)) if stride > 0 => Ok(Self {
                channels,
                height,
                width,
                k,
                stride,
                padding,
                grid_h,
                grid_w,
            }),
            _ => candle_core::bail!("a {k}x{k} window does not fit a {height}x{width} image"),
        }
    }

    /// Window positions per image: rows of the patch matrix.
    fn rows(&self) -> usize {
        self.grid_h * self.grid_w
    }

    /// Taps per window: columns of the patch matrix.
    fn cols(&self) -> usize {
        self.channels * self.k * self.k
    }

    /// Values in one image.
    fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// For the window at grid position (gy, gx): calls `f(patch column, image index, n)`
    /// for each (channel, kernel row) whose row lies inside the image, where the `n` taps
    /// starting at that column read the `n` pixels starting at that image index; taps
    /// outside the image are skipped (they read zero padding).
    #[inline]
    fn runs(&self, gy: usize, gx: usize, mut f: impl FnMut(usize, usize, usize)) {
        let (k, s, p) = (self.k, self.stride, self.padding as isize);
        let x0 = (gx * s) as isize - p;
        let kx_lo = (-x0).clamp(0, k as isize) as usize;
        let kx_hi = (self.width as isize - x0).clamp(kx_lo as isize, k as isize) as usize;
        if kx_lo == kx_hi {
            return;
        }
        for ky in 0..k {
            let y = (gy * s + ky) as isize - p;
            if y < 0 || y >= self.height as isize {
                continue;
            }
            let start = y as usize * self.width + (x0 + kx_lo as isize) as usize;
            for c in 0..self.channels {
                f(
                    (c * k + ky) * k + kx_lo,
                    c * self.height * self.width + start,
                    kx_hi - kx_lo,
                );
            }
        }
    }

    /// One image (C, H, W) → its patches (GH·GW, C·k·k); taps in the padding are zero.
    fn unfold(&self, image: &[f32], patches: &mut [f32]) {
        let cols = self.cols();
        for gy in 0..self.grid_h {
            for gx in 0..self.grid_w {
                let row = &mut patches[(gy * self.grid_w + gx) * cols..][..cols];
                if self.padding > 0 {
                    row.fill(0.0);
                }
                self.runs(gy, gx, |col, img, n| {
                    // Runs are a kernel row wide: a fixed-size copy for the usual 4 avoids
                    // a memmove call per run.
                    if n == 4 {
                        row[col..col + 4].copy_from_slice(&image[img..img + 4]);
                    } else {
                        for (d, &v) in row[col..col + n].iter_mut().zip(&image[img..img + n]) {
                            *d = v;
                        }
                    }
                });
            }
        }
    }

    /// Patches (GH·GW, C·k·k) → one image (C, H, W), overlapping taps added to what `image`
    /// already holds.
    fn fold_into(&self, patches: &[f32], image: &mut [f32]) {
        let cols = self.cols();
        for gy in 0..self.grid_h {
            for gx in 0..self.grid_w {
                let row = &patches[(gy * self.grid_w + gx) * cols..][..cols];
                self.runs(gy, gx, |col, img, n| {
                    if n == 4 {
                        let (dst, src) = (&mut image[img..img + 4], &row[col..col + 4]);
                        for j in 0..4 {
                            dst[j] += src[j];
                        }
                    } else {
                        image[img..img + n]
                            .iter_mut()
                            .zip(&row[col..col + n])
                            .for_each(|(d, v)| *d += v);
                    }
                });
            }
        }
    }
}

/// Which way a layer maps between image and window grid.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Direction {
    /// Convolution: the window slides over the input; each position gives an output pixel.
    Down,
    /// Transposed convolution: the window slides over the output; each input pixel spreads
    /// over one window.
    Up,
}

/// One convolution layer over a batch; `window` slides over the input (`Down`) or over the
/// output (`Up`).
#[derive(Debug, Clone, Copy)]
struct ConvLayer {
    direction: Direction,
    window: Window,
    batch: usize,
    c_in: usize,
    c_out: usize,
    /// Applied to the output in place (D's first LeakyReLU, G's closing tanh).
    act: Activation,
}

impl ConvLayer {
    /// Values per image on the input side.
    fn in_len(&self) -> usize {
        match self.direction {
            Direction::Down => self.window.image_len(),
            Direction::Up => self.c_in * self.window.rows(),
        }
    }

    /// Values per image on the output side.
    fn out_len(&self) -> usize {
        match self.direction {
            Direction::Down => self.c_out * self.window.rows(),
            Direction::Up => self.window.image_len(),
        }
    }

    /// Values per output channel plane.
    fn out_plane(&self) -> usize {
        self.out_len() / self.c_out
    }

    fn output_shape(&self) -> Shape {
        let w = &self.window;
        match self.direction {
            Direction::Down => Shape::from((self.batch, self.c_out, w.grid_h, w.grid_w)),
            Direction::Up => Shape::from((self.batch, self.c_out, w.height, w.width)),
        }
    }

    /// Images per thread: one contiguous run each.
    fn images_per_task(&self) -> usize {
        self.batch
            .div_ceil(rayon::current_num_threads().max(1))
            .max(1)
    }

    fn check_lengths(&self, x: &[f32], w: &[f32], what: &str) -> Result<()> {
        let kernel = self.c_in * self.c_out * self.window.k * self.window.k;
        if x.len() != self.batch * self.in_len() || w.len() != kernel {
            candle_core::bail!(
                "{what}: {} input values and {} kernel values, expected {} and {kernel}",
                x.len(),
                w.len(),
                self.batch * self.in_len()
            );
        }
        Ok(())
    }

    /// The Winograd plan for this layer where one applies (4x4 kernels, stride 2, padding
    /// 1, channels in eights): the image side is the window's, the grid the other.
    fn winograd(&self) -> Option<Plan> {
        let w = &self.window;
        let grid_channels = match self.direction {
            Direction::Down => self.c_out,
            Direction::Up => self.c_in,
        };
        Plan::new(
            self.batch,
            (w.channels, w.height, w.width),
            grid_channels,
            (w.k, w.stride, w.padding),
        )
    }

    /// The layer's output for a batch, bias included.
    fn forward(&self, x: &[f32], w: &[f32], b: &[f32]) -> Result<Vec<f32>> {
        self.check_lengths(x, w, "convolution")?;
        if b.len() != self.c_out {
            candle_core::bail!(
                "convolution: {} bias values for {} channels",
                b.len(),
                self.c_out
            );
        }
        if let Some(plan) = self.winograd() {
            return match self.direction {
                Direction::Down => plan.down(x, w, b, self.act),
                Direction::Up => plan.up(x, w, b, self.act),
            };
        }
        let (rows, cols) = (self.window.rows(), self.window.cols());
        let (in_len, out_len) = (self.in_len(), self.out_len());
        let (c_in, c_out) = (self.c_in, self.c_out);
        let per = self.images_per_task();
        // The kernel as the right operand, (taps, C_out) row-major: gemm reads a transposed
        // right operand 10-35% slower for these shapes, and the copy is a few hundred KiB.
        let w_t = match self.direction {
            Direction::Down => transpose(w, c_out, cols),
            Direction::Up => Vec::new(),
        };
        let kernel = Kernel { w, w_t: &w_t, b };
        let mut y = vec![0f32; self.batch * out_len];
        y.par_chunks_mut(per * out_len)
            .zip(x.par_chunks(per * in_len))
            .try_for_each(|(ys, xs)| {
                with_scratch(
                    GROUP * rows * cols,
                    GROUP * rows * c_in.max(c_out),
                    |patches, small| {
                        ys.chunks_mut(GROUP * out_len)
                            .zip(xs.chunks(GROUP * in_len))
                            .try_for_each(|(yg, xg)| {
                                self.forward_group(xg, yg, &kernel, (patches, small))
                            })
                    },
                )
            })?;
        Ok(y)
    }

    /// The forward pass for one group of images `xg` into their outputs `yg`, in this
    /// thread's scratch buffers (patches, small).
    fn forward_group(
        &self,
        xg: &[f32],
        yg: &mut [f32],
        kernel: &Kernel,
        (patches, small): (&mut [f32], &mut [f32]),
    ) -> Result<()> {
        let (win, rows, cols) = (self.window, self.window.rows(), self.window.cols());
        let (in_len, out_len, plane) = (self.in_len(), self.out_len(), self.out_plane());
        let count = xg.len() / in_len;
        let patches = &mut patches[..count * rows * cols];
        match self.direction {
            // yᵀ (images·positions, C_out) = patches · Wᵀ, then back to planes.
            Direction::Down => {
                for (xi, pi) in xg.chunks(in_len).zip(patches.chunks_mut(rows * cols)) {
                    win.unfold(xi, pi);
                }
                let small = &mut small[..count * rows * self.c_out];
                matmul(
                    (count * rows, self.c_out, cols),
                    small,
                    false,
                    Strided::rows(patches, cols),
                    Strided::rows(kernel.w_t, self.c_out),
                    1,
                )?;
                to_planes(small, self.c_out, rows, yg, Some(kernel.b));
                self.act.apply_in_place(yg);
            }
            // patches (images·positions, taps) = xᵀ · W, each window's taps then landing on
            // the output, which starts as the bias.
            Direction::Up => {
                let small = &mut small[..count * rows * self.c_in];
                side_by_side(xg, self.c_in, rows, small);
                matmul(
                    (count * rows, cols, self.c_in),
                    patches,
                    false,
                    Strided::transposed(small, count * rows),
                    Strided::rows(kernel.w, cols),
                    1,
                )?;
                for (yi, pi) in yg.chunks_mut(out_len).zip(patches.chunks(rows * cols)) {
                    for (p, &bias) in yi.chunks_mut(plane).zip(kernel.b) {
                        p.fill(bias);
                    }
                    win.fold_into(pi, yi);
                    self.act.apply_in_place(yi);
                }
            }
        }
        Ok(())
    }

    /// Gradients of the input, kernel and bias from the output gradient `g`, each computed
    /// only if asked for; packed in that order into one buffer.
    fn backward(&self, x: &[f32], w: &[f32], g: &[f32], need: Needs) -> Result<Vec<f32>> {
        self.check_lengths(x, w, "convolution gradient")?;
        if g.len() != self.batch * self.out_len() {
            candle_core::bail!(
                "convolution gradient: {} values for an output of {}",
                g.len(),
                self.batch * self.out_len()
            );
        }
        if let Some(plan) = self.winograd() {
            return self.backward_winograd(&plan, x, w, g, need);
        }
        let (rows, cols) = (self.window.rows(), self.window.cols());
        let (in_len, out_len) = (self.in_len(), self.out_len());
        let (c_in, c_out) = (self.c_in, self.c_out);
        let per = self.images_per_task();
        let tasks = self.batch.div_ceil(per);
        // (taps, C_in) row-major for the input gradient of a transposed convolution, as in
        // the forward pass.
        let w_t = match self.direction {
            Direction::Up if need.input => transpose(w, c_in, cols),
            _ => Vec::new(),
        };
        let kernel = Kernel {
            w,
            w_t: &w_t,
            b: &[],
        };
        // Room for the kernel and bias gradients packed behind the input's, so that
        // appending them does not move the input gradient (megabytes) to a larger buffer.
        let mut gx = zeros(if need.input { x.len() } else { 0 }, w.len() + c_out);
        let partials = task_runs(&mut gx, per * in_len, tasks)
            .into_par_iter()
            .enumerate()
            .map(|(t, gx_run)| -> Result<Vec<f32>> {
                let first = t * per;
                let count = per.min(self.batch - first);
                let xs = &x[first * in_len..][..count * in_len];
                let gs = &g[first * out_len..][..count * out_len];
                let mut gw = vec![0f32; if need.kernel { w.len() } else { 0 }];
                with_scratch(
                    GROUP * rows * cols,
                    GROUP * rows * c_in.max(c_out),
                    |patches, small| {
                        for (k, start) in (0..count).step_by(GROUP).enumerate() {
                            let n = GROUP.min(count - start);
                            let grads = GroupGrads {
                                input: need
                                    .input
                                    .then(|| &mut gx_run[k * GROUP * in_len..][..n * in_len]),
                                kernel: need.kernel.then_some(gw.as_mut_slice()),
                            };
                            self.backward_group(
                                &xs[start * in_len..][..n * in_len],
                                &gs[start * out_len..][..n * out_len],
                                &kernel,
                                grads,
                                (&mut *patches, &mut *small),
                            )?;
                        }
                        Ok::<(), candle_core::Error>(())
                    },
                )?;
                Ok(gw)
            })
            .collect::<Result<Vec<_>>>()?;
        let mut out = gx;
        if need.kernel {
            let start = out.len();
            out.resize(start + w.len(), 0.0);
            for gw in &partials {
                out[start..].iter_mut().zip(gw).for_each(|(o, v)| *o += v);
            }
        }
        if need.bias {
            out.extend(channel_sums(g, c_out, self.out_plane()));
        }
        Ok(out)
    }

    /// [`ConvLayer::backward`] by the Winograd plan, packed the same way.
    fn backward_winograd(
        &self,
        plan: &Plan,
        x: &[f32],
        w: &[f32],
        g: &[f32],
        need: Needs,
    ) -> Result<Vec<f32>> {
        let down = self.direction == Direction::Down;
        let (image, grid) = if down { (x, g) } else { (g, x) };
        let wanted = Wanted {
            image: need.input && down,
            grid: need.input && !down,
            kernel: need.kernel,
        };
        let spare = if need.kernel { w.len() } else { 0 } + self.c_out;
        let (g_image, g_grid, g_kernel) = plan.backward(image, grid, w, wanted, spare)?;
        let mut out = if down { g_image } else { g_grid };
        out.extend(g_kernel);
        if need.bias {
            out.extend(channel_sums(g, self.c_out, self.out_plane()));
        }
        Ok(out)
    }

    /// The backward pass for one group of images `xg` with output gradients `gg`, adding
    /// to the kernel gradient and writing the input gradient, each only if given.
    fn backward_group(
        &self,
        xg: &[f32],
        gg: &[f32],
        kernel: &Kernel,
        grads: GroupGrads,
        (patches, small): (&mut [f32], &mut [f32]),
    ) -> Result<()> {
        let (win, rows, cols) = (self.window, self.window.rows(), self.window.cols());
        let (in_len, out_len) = (self.in_len(), self.out_len());
        let (c_in, c_out) = (self.c_in, self.c_out);
        let n = xg.len() / in_len;
        let patches = &mut patches[..n * rows * cols];
        match self.direction {
            Direction::Down => {
                // g (C_out, images·positions)
                let gt = &mut small[..n * rows * c_out];
                side_by_side(gg, c_out, rows, gt);
                // gW (C_out, taps) += g · patches
                if let Some(gw) = grads.kernel {
                    for (xi, pi) in xg.chunks(in_len).zip(patches.chunks_mut(rows * cols)) {
                        win.unfold(xi, pi);
                    }
                    matmul(
                        (c_out, cols, n * rows),
                        gw,
                        true,
                        Strided::rows(gt, n * rows),
                        Strided::rows(patches, cols),
                        1,
                    )?;
                }
                // patch gradient = gᵀ · W, folded back onto each input
                if let Some(gx) = grads.input {
                    matmul(
                        (n * rows, cols, c_out),
                        patches,
                        false,
                        Strided::transposed(gt, n * rows),
                        Strided::rows(kernel.w, cols),
                        1,
                    )?;
                    for (gxi, pi) in gx.chunks_mut(in_len).zip(patches.chunks(rows * cols)) {
                        win.fold_into(pi, gxi);
                    }
                }
            }
            Direction::Up => {
                // The output gradient seen through each input pixel's window.
                for (gi, pi) in gg.chunks(out_len).zip(patches.chunks_mut(rows * cols)) {
                    win.unfold(gi, pi);
                }
                let small = &mut small[..n * rows * c_in];
                // gxᵀ (images·positions, C_in) = patch gradient · Wᵀ
                if let Some(gx) = grads.input {
                    matmul(
                        (n * rows, c_in, cols),
                        small,
                        false,
                        Strided::rows(patches, cols),
                        Strided::rows(kernel.w_t, c_in),
                        1,
                    )?;
                    to_planes(small, c_in, rows, gx, None);
                }
                // gW (C_in, taps) += x · patch gradient
                if let Some(gw) = grads.kernel {
                    side_by_side(xg, c_in, rows, small);
                    matmul(
                        (c_in, cols, n * rows),
                        gw,
                        true,
                        Strided::rows(small, n * rows),
                        Strided::rows(patches, cols),
                        1,
                    )?;
                }
            }
        }
        Ok(())
    }
}

/// A layer's kernel as the products read it: as stored (`w`), transposed to (taps,
/// channels) row-major where a pass multiplies by Wᵀ (`w_t`, empty otherwise), and the bias.
struct Kernel<'a> {
    w: &'a [f32],
    w_t: &'a [f32],
    b: &'a [f32],
}

/// Where one group's gradients go: its slice of the input gradient and the thread's kernel
/// gradient sum, each present only if asked for.
struct GroupGrads<'a> {
    input: Option<&'a mut [f32]>,
    kernel: Option<&'a mut [f32]>,
}

/// Images per GEMM. Stacking a few images' patch matrices makes one product of a few
/// hundred rows instead of several of 49: the kernel matrix is packed once per group rather
/// than once per image, and the ragged last block of rows is shared (DCGAN step: packing
/// was 10% and the one-row edge kernel 5%). Four images' patches of the 28x28 DCGAN
/// (about 800 KiB) stay near the core.
const GROUP: usize = 4;

thread_local! {
    /// Each thread's patch and small buffers, kept between layers and steps: fresh ones cost
    /// a zeroing pass and, for the larger layers, page faults on every call.
    static SCRATCH: std::cell::RefCell<(Vec<f32>, Vec<f32>)> = const {
        std::cell::RefCell::new((Vec::new(), Vec::new()))
    };
}

/// Runs `f` with this thread's scratch buffers of `a` and `b` values. Their contents are
/// whatever the last layer left: every use writes a buffer before reading it. `f` must not
/// re-enter (it runs single-threaded GEMMs only).
fn with_scratch<R>(a: usize, b: usize, f: impl FnOnce(&mut [f32], &mut [f32]) -> R) -> R {
    SCRATCH.with(|cell| {
        let mut guard = cell.borrow_mut();
        let (pa, pb) = &mut *guard;
        if pa.len() < a {
            pa.resize(a, 0.0);
        }
        if pb.len() < b {
            pb.resize(b, 0.0);
        }
        f(&mut pa[..a], &mut pb[..b])
    })
}

/// A (rows, cols) row-major matrix → its (cols, rows) transpose, row-major: one "image" of
/// `rows` positions and `cols` channels turned into planes.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; rows * cols];
    to_planes(m, cols, rows, &mut t, None);
    t
}

/// Images of (channels, positions) each → one (channels, images·positions) matrix: each
/// image's planes side by side, in copies of whole planes. gemm reads it as either operand,
/// transposed or not, at the same speed for these shapes, so whole-plane copies replace a
/// transpose of each image (a scalar scatter).
fn side_by_side(planes: &[f32], channels: usize, positions: usize, matrix: &mut [f32]) {
    let images = planes.len() / (channels * positions);
    for (i, image) in planes.chunks(channels * positions).enumerate() {
        for (c, plane) in image.chunks(positions).enumerate() {
            matrix[(c * images + i) * positions..][..positions].copy_from_slice(plane);
        }
    }
}

/// Rows (image·positions, channels) → images of (channels, positions), plus `bias[c]` when
/// given.
fn to_planes(
    rows: &[f32],
    channels: usize,
    positions: usize,
    planes: &mut [f32],
    bias: Option<&[f32]>,
) {
    for (src, dst) in rows
        .chunks(channels * positions)
        .zip(planes.chunks_mut(channels * positions))
    {
        for (c, plane) in dst.chunks_mut(positions).enumerate() {
            let b = bias.map_or(0.0, |b| b[c]);
            for (r, v) in plane.iter_mut().enumerate() {
                *v = src[r * channels + c] + b;
            }
        }
    }
}

/// Which gradients a backward pass computes.
#[derive(Debug, Clone, Copy)]
struct Needs {
    input: bool,
    kernel: bool,
    bias: bool,
}

/// (input, kernel, bias) → output.
struct Forward(ConvLayer);

/// (input, kernel, output gradient) → packed gradients, see [`ConvLayer::backward`].
struct Backward(ConvLayer, Needs);

impl CustomOp3 for Forward {
    fn name(&self) -> &'static str {
        "genmod-convolution"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let y = self.0.forward(
            f32_slice(xs, xl, "convolution")?,
            f32_slice(ws, wl, "convolution")?,
            f32_slice(bs, bl, "convolution")?,
        )?;
        Ok((CpuStorage::F32(y), self.0.output_shape()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let need = Needs {
            input: x.track_op(),
            kernel: w.track_op(),
            bias: b.track_op(),
        };
        if !(need.input || need.kernel || need.bias) {
            return Ok((None, None, None));
        }
        let grad = grad.contiguous()?;
        // Through the activation first; its derivative is read from the output.
        let grad = self.0.act.backward(y, &grad)?;
        let packed = x.apply_op3_no_bwd(w, &grad, &Backward(self.0, need))?;
        let mut at = 0;
        let mut take = |wanted: bool, like: &Tensor| -> Result<Option<Tensor>> {
            if !wanted {
                return Ok(None);
            }
            let n = like.elem_count();
            let t = packed.narrow(0, at, n)?.reshape(like.shape())?;
            at += n;
            Ok(Some(t))
        };
        Ok((
            take(need.input, x)?,
            take(need.kernel, w)?,
            take(need.bias, b)?,
        ))
    }
}

impl CustomOp3 for Backward {
    fn name(&self) -> &'static str {
        "genmod-convolution-backward"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let out = self.0.backward(
            f32_slice(xs, xl, "convolution gradient")?,
            f32_slice(ws, wl, "convolution gradient")?,
            f32_slice(gs, gl, "convolution gradient")?,
            self.1,
        )?;
        let n = out.len();
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }
}

/// The input's channels match the kernel's, and neither side of the kernel is empty (the
/// per-channel loops divide by the channel counts).
fn check_channels(op: &str, c: usize, c_in: usize, c_out: usize) -> Result<()> {
    if c != c_in {
        candle_core::bail!("{op}: {c} input channels, kernel wants {c_in}");
    }
    if c_in == 0 || c_out == 0 {
        candle_core::bail!("{op}: a kernel of {c_in} input and {c_out} output channels");
    }
    Ok(())
}

fn fast_path(x: &Tensor, w: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32 && w.dtype() == DType::F32
}

/// The kernel and bias a layer runs with: detached when `frozen`, so no gradient is
/// computed for them (a discriminator seen by the generator's step).
fn parameters(
    w: &Tensor,
    b: Option<&Tensor>,
    c_out: usize,
    frozen: bool,
) -> Result<(Tensor, Tensor)> {
    let b = match b {
        Some(b) => b.contiguous()?,
        // A zero bias keeps one op with three arguments; its gradient is simply unused.
        None => Tensor::zeros(c_out, DType::F32, w.device())?,
    };
    let w = w.contiguous()?;
    Ok(if frozen {
        (w.detach(), b.detach())
    } else {
        (w, b)
    })
}

/// `act(layer.forward(x))` for a square-kernel convolution with the given stride and
/// padding (no dilation, no groups), as one fused op on the CPU. With `frozen` the kernel
/// and bias get no gradient.
pub fn conv2d(
    layer: &Conv2d,
    x: &Tensor,
    stride: usize,
    padding: usize,
    frozen: bool,
    act: Activation,
) -> Result<Tensor> {
    let w = layer.weight();
    if !fast_path(x, w) {
        let y = match frozen {
            false => layer.forward(x)?,
            true => Conv2d::new(
                w.detach(),
                layer.bias().map(Tensor::detach),
                *layer.config(),
            )
            .forward(x)?,
        };
        return act.apply(&y);
    }
    let (c_out, c_in, k, _) = w.dims4()?;
    let (n, c, h, wd) = x.dims4()?;
    check_channels("conv2d", c, c_in, c_out)?;
    let layer_shape = ConvLayer {
        direction: Direction::Down,
        window: Window::new((c, h, wd), k, stride, padding)?,
        batch: n,
        c_in,
        c_out,
        act,
    };
    let (w, b) = parameters(w, layer.bias(), c_out, frozen)?;
    x.contiguous()?.apply_op3(&w, &b, Forward(layer_shape))
}

/// `act(layer.forward(x))` for a square-kernel transposed convolution with the given stride
/// and padding (no output padding, no dilation), as one fused op on the CPU.
pub fn conv_transpose2d(
    layer: &ConvTranspose2d,
    x: &Tensor,
    stride: usize,
    padding: usize,
    act: Activation,
) -> Result<Tensor> {
    let w = layer.weight();
    if !fast_path(x, w) {
        return act.apply(&layer.forward(x)?);
    }
    let (c_in, c_out, k, _) = w.dims4()?;
    let (n, c, h, wd) = x.dims4()?;
    check_channels("conv_transpose2d", c, c_in, c_out)?;
    let side = |s: usize| {
        s.checked_sub(1)
            .and_then(|s| (s * stride + k).checked_sub(2 * padding))
    };
    let (Some(out_h), Some(out_w)) = (side(h), side(wd)) else {
        candle_core::bail!(
            "conv_transpose2d: an empty input or padding {padding} too large for the {k}x{k} kernel"
        );
    };
    let window = Window::new((c_out, out_h, out_w), k, stride, padding)?;
    if (window.grid_h, window.grid_w) != (h, wd) {
        candle_core::bail!(
            "conv_transpose2d: a {h}x{wd} input does not tile a {out_h}x{out_w} output"
        );
    }
    let layer_shape = ConvLayer {
        direction: Direction::Up,
        window,
        batch: n,
        c_in,
        c_out,
        act,
    };
    let (w, b) = parameters(w, layer.bias(), c_out, false)?;
    x.contiguous()?.apply_op3(&w, &b, Forward(layer_shape))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use candle_nn::{Conv2dConfig, ConvTranspose2dConfig, VarBuilder, VarMap};

    fn close(a: &Tensor, b: &Tensor, what: &str) {
        let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(a.len(), b.len(), "{what}: sizes");
        let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!((x - y).abs() <= 1e-4 * scale, "{what}[{i}]: {x} vs {y}");
        }
    }

    fn input(shape: (usize, usize, usize, usize)) -> Var {
        let n = shape.0 * shape.1 * shape.2 * shape.3;
        let v: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
            .collect();
        Var::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    /// A layer under test: (input, use the fast path?) → output.
    type Layer = Box<dyn Fn(&Tensor, bool) -> Result<Tensor>>;

    /// Replaces candle's initial weights, which it draws unseeded, by fixed ones of the same
    /// scale. With random weights a run now and then put a pre-activation within rounding
    /// of zero, where the two paths may pick different sides of LeakyReLU's kink and the
    /// input gradients then differ by far more than rounding (seen once in about thirty
    /// runs); fixed weights make every run compare the same numbers.
    fn fixed_weights(varmap: &VarMap) {
        let data = varmap.data().lock().unwrap();
        let mut names: Vec<_> = data.keys().cloned().collect();
        names.sort();
        for (k, name) in names.iter().enumerate() {
            let var = &data[name];
            let dims = var.dims().to_vec();
            let fan: usize = dims[1..].iter().product::<usize>().max(1);
            let bound = 1.0 / (fan as f32).sqrt();
            let n: usize = dims.iter().product();
            let v: Vec<f32> = (0..n)
                .map(|i| bound * ((((i + 13 * k) * 7919 % 1009) as f32 / 504.5) - 1.0))
                .collect();
            var.set(&Tensor::from_vec(v, dims, &Device::Cpu).unwrap())
                .unwrap();
        }
    }

    /// Same output and same gradients (input, weight, bias) as candle's layer.
    fn check(make: &dyn Fn(VarBuilder) -> Layer, shape: (usize, usize, usize, usize)) {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let f = make(vb);
        fixed_weights(&varmap);
        let x = input(shape);
        let mut results = Vec::new();
        for fast in [true, false] {
            let y = f(x.as_tensor(), fast).unwrap();
            let grads = objective(&y).backward().unwrap();
            let mut got = vec![y.clone(), grads.get(x.as_tensor()).unwrap().clone()];
            let data = varmap.data().lock().unwrap();
            let mut names: Vec<_> = data.keys().cloned().collect();
            names.sort();
            for name in names {
                got.push(grads.get(data[&name].as_tensor()).unwrap().clone());
            }
            results.push(got);
        }
        for (i, (a, b)) in results[0].iter().zip(&results[1]).enumerate() {
            close(a, b, &format!("output/gradient {i}"));
        }
    }

    #[test]
    fn conv2d_matches_candle_in_value_and_every_gradient() {
        for (k, s, p, shape) in [
            (4, 2, 1, (3, 2, 8, 8)),
            (3, 1, 1, (2, 3, 5, 6)),
            (4, 2, 1, (2, 1, 28, 28)),
            // Several groups of images per thread, the last one short.
            (4, 2, 1, (11, 2, 6, 6)),
        ] {
            for act in [Activation::Identity, Activation::LeakyRelu(0.2)] {
                check(
                    &|vb| {
                        let cfg = Conv2dConfig {
                            padding: p,
                            stride: s,
                            ..Default::default()
                        };
                        let layer = candle_nn::conv2d(shape.1, 5, k, cfg, vb).unwrap();
                        Box::new(move |x, fast| {
                            if fast {
                                conv2d(&layer, x, s, p, false, act)
                            } else {
                                act.apply(&layer.forward(x)?)
                            }
                        })
                    },
                    shape,
                );
            }
        }
    }

    #[test]
    fn conv_transpose2d_matches_candle_in_value_and_every_gradient() {
        for (k, s, p, shape) in [
            (4, 2, 1, (3, 4, 7, 7)),
            (3, 1, 1, (2, 3, 5, 4)),
            (4, 2, 1, (11, 3, 3, 3)),
        ] {
            for act in [Activation::Identity, Activation::Tanh] {
                check(
                    &|vb| {
                        let cfg = ConvTranspose2dConfig {
                            padding: p,
                            stride: s,
                            ..Default::default()
                        };
                        let layer = candle_nn::conv_transpose2d(shape.1, 2, k, cfg, vb).unwrap();
                        Box::new(move |x, fast| {
                            if fast {
                                conv_transpose2d(&layer, x, s, p, act)
                            } else {
                                act.apply(&layer.forward(x)?)
                            }
                        })
                    },
                    shape,
                );
            }
        }
    }

    /// Layers that take the Winograd path (4x4, stride 2, padding 1, channels in eights):
    /// the DCGAN's middle layers at a small batch, a grid that leaves part of the last
    /// blocks unused (10x10 → 5x5), a non-square image, and more images than one group of
    /// 64 (one tile each) per thread, the last group short.
    #[test]
    fn winograd_layers_match_candle_in_value_and_every_gradient() {
        for (shape, grid_channels, act) in [
            ((2, 64, 14, 14), 128, Activation::LeakyRelu(0.2)),
            ((3, 16, 10, 10), 24, Activation::Identity),
            ((2, 16, 8, 12), 16, Activation::Identity),
            ((150, 16, 6, 6), 16, Activation::Identity),
        ] {
            assert!(
                Plan::new(
                    shape.0,
                    (shape.1, shape.2, shape.3),
                    grid_channels,
                    (4, 2, 1)
                )
                .is_some(),
                "{shape:?} should take the Winograd path"
            );
            let cfg = Conv2dConfig {
                padding: 1,
                stride: 2,
                ..Default::default()
            };
            check(
                &|vb| {
                    let layer = candle_nn::conv2d(shape.1, grid_channels, 4, cfg, vb).unwrap();
                    Box::new(move |x, fast| {
                        if fast {
                            conv2d(&layer, x, 2, 1, false, act)
                        } else {
                            act.apply(&layer.forward(x)?)
                        }
                    })
                },
                shape,
            );
            let grid = (shape.0, grid_channels, shape.2 / 2, shape.3 / 2);
            let cfg = ConvTranspose2dConfig {
                padding: 1,
                stride: 2,
                ..Default::default()
            };
            check(
                &|vb| {
                    let layer =
                        candle_nn::conv_transpose2d(grid_channels, shape.1, 4, cfg, vb).unwrap();
                    Box::new(move |x, fast| {
                        if fast {
                            conv_transpose2d(&layer, x, 2, 1, act)
                        } else {
                            act.apply(&layer.forward(x)?)
                        }
                    })
                },
                grid,
            );
        }
    }

    /// The weighted sum of a layer's output whose gradient the tests compare.
    fn objective(y: &Tensor) -> Tensor {
        let weights = Tensor::arange(0f32, y.elem_count() as f32, &Device::Cpu)
            .unwrap()
            .reshape(y.shape())
            .unwrap()
            .cos()
            .unwrap();
        (y * &weights).unwrap().sum_all().unwrap()
    }

    #[test]
    fn a_frozen_convolution_passes_the_input_gradient_and_leaves_the_kernel_alone() {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let cfg = Conv2dConfig {
            padding: 1,
            stride: 2,
            ..Default::default()
        };
        let layer = candle_nn::conv2d(3, 4, 4, cfg, vb).unwrap();
        let x = input((3, 3, 8, 8));
        let plain = conv2d(&layer, x.as_tensor(), 2, 1, false, Activation::Identity).unwrap();
        let frozen = conv2d(&layer, x.as_tensor(), 2, 1, true, Activation::Identity).unwrap();
        close(&frozen, &plain, "output");
        let g_plain = objective(&plain).backward().unwrap();
        let g_frozen = objective(&frozen).backward().unwrap();
        close(
            g_frozen.get(x.as_tensor()).unwrap(),
            g_plain.get(x.as_tensor()).unwrap(),
            "input gradient",
        );
        assert!(g_plain.get(layer.weight()).is_some());
        assert!(g_frozen.get(layer.weight()).is_none(), "kernel gradient");
        assert!(
            g_frozen.get(layer.bias().unwrap()).is_none(),
            "bias gradient"
        );
    }

    #[test]
    fn an_untracked_input_still_gives_candles_kernel_and_bias_gradients() {
        // A batch of images records no graph: only the kernel and bias gradients are made.
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let down = candle_nn::conv2d(
            1,
            6,
            4,
            Conv2dConfig {
                padding: 1,
                stride: 2,
                ..Default::default()
            },
            vb.pp("down"),
        )
        .unwrap();
        let up = candle_nn::conv_transpose2d(
            6,
            2,
            4,
            ConvTranspose2dConfig {
                padding: 1,
                stride: 2,
                ..Default::default()
            },
            vb.pp("up"),
        )
        .unwrap();
        let x = input((5, 1, 12, 12)).as_tensor().detach();
        let ours = conv_transpose2d(
            &up,
            &conv2d(&down, &x, 2, 1, false, Activation::Identity).unwrap(),
            2,
            1,
            Activation::Identity,
        )
        .unwrap();
        let theirs = up.forward(&down.forward(&x).unwrap()).unwrap();
        close(&ours, &theirs, "output");
        let (g1, g2) = (
            objective(&ours).backward().unwrap(),
            objective(&theirs).backward().unwrap(),
        );
        assert!(g1.get(&x).is_none(), "no gradient for the images");
        for t in [
            down.weight(),
            down.bias().unwrap(),
            up.weight(),
            up.bias().unwrap(),
        ] {
            close(g1.get(t).unwrap(), g2.get(t).unwrap(), "parameter gradient");
        }
    }

    #[test]
    fn mismatched_channels_and_empty_inputs_are_errors() {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let down = candle_nn::conv2d(2, 3, 4, Default::default(), vb.pp("d")).unwrap();
        let up = candle_nn::conv_transpose2d(2, 3, 4, Default::default(), vb.pp("u")).unwrap();
        let three = input((1, 3, 8, 8));
        let err = conv2d(&down, three.as_tensor(), 1, 0, false, Activation::Identity).unwrap_err();
        assert!(err.to_string().contains("3 input channels"), "{err}");
        let err = conv_transpose2d(&up, three.as_tensor(), 1, 0, Activation::Identity).unwrap_err();
        assert!(err.to_string().contains("3 input channels"), "{err}");
        let empty = Tensor::zeros((1, 2, 0, 0), DType::F32, &Device::Cpu).unwrap();
        assert!(conv_transpose2d(&up, &empty, 2, 1, Activation::Identity).is_err());
        // A kernel with no output channels is an error, not a division by zero.
        let none = Conv2d::new(
            Tensor::zeros((0, 3, 4, 4), DType::F32, &Device::Cpu).unwrap(),
            None,
            Default::default(),
        );
        let err = conv2d(&none, three.as_tensor(), 1, 0, false, Activation::Identity).unwrap_err();
        assert!(err.to_string().contains("0 output channels"), "{err}");
    }

    #[test]
    fn a_window_larger_than_the_padded_image_is_an_error() {
        assert!(Window::new((1, 2, 2), 5, 1, 1).is_err());
        assert!(Window::new((1, 2, 2), 4, 1, 1).is_ok());
    }
}
