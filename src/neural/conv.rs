//! Convolutions as one matrix product each, for the CPU.
//!
//! Profiling the DCGAN (`perf record` on `genmod train dcgan`) put about half of a step in
//! candle's direct convolution loops: its transposed convolution is a per-pixel dot-product
//! loop, and its convolution backward computes the kernel gradient as a dilated convolution
//! whose "kernel" is the whole output gradient. Here both layers are written the way BLAS
//! frameworks do it: unfold the image into patches (im2col), multiply by the kernel as a
//! matrix, and fold the patches back (col2im), which is im2col's adjoint. Only the unfold and
//! fold are custom ops, each the other's backward; every product is a candle `matmul`, so
//! candle's autograd derives the input and kernel gradients as plain GEMMs too.
//!
//! Patches are laid out one row per output position (n, y, x) and one column per
//! (channel, ky, kx), so a whole batch is one GEMM. Other devices and dtypes use candle's own
//! layers; the tests check both give the same values and gradients.

use super::cpu::f32_slice;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use candle_nn::{Conv2d, ConvTranspose2d, Module};
use rayon::prelude::*;

/// A square-kernel sliding window: image of `channels` x `height` x `width`, kernel side `k`,
/// `stride`, zero `padding`; the grid of window positions is `grid_h` x `grid_w`.
#[derive(Debug, Clone, Copy)]
struct Window {
    batch: usize,
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
        (batch, channels, height, width): (usize, usize, usize, usize),
        k: usize,
        stride: usize,
        padding: usize,
    ) -> Result<Self> {
        let span = |side: usize| (side + 2 * padding).checked_sub(k).map(|d| d / stride + 1);
        match (span(height), span(width)) {
            (Some(grid_h), Some(grid_w)) if stride > 0 => Ok(Self {
                batch,
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

    fn rows(&self) -> usize {
        self.batch * self.grid_h * self.grid_w
    }

    fn cols(&self) -> usize {
        self.channels * self.k * self.k
    }

    /// Calls `f(image index within the item, patch column)` for every in-bounds tap of the
    /// window at grid position (gy, gx).
    #[inline]
    fn taps(&self, gy: usize, gx: usize, mut f: impl FnMut(usize, usize)) {
        let (k, s, p) = (self.k, self.stride, self.padding);
        for c in 0..self.channels {
            for ky in 0..k {
                let y = (gy * s + ky) as isize - p as isize;
                if y < 0 || y >= self.height as isize {
                    continue;
                }
                for kx in 0..k {
                    let x = (gx * s + kx) as isize - p as isize;
                    if x < 0 || x >= self.width as isize {
                        continue;
                    }
                    let img = (c * self.height + y as usize) * self.width + x as usize;
                    f(img, (c * k + ky) * k + kx);
                }
            }
        }
    }

    /// Image (N, C, H, W) → patches (N·GH·GW, C·k·k).
    fn unfold(&self, image: &[f32]) -> Vec<f32> {
        let (cols, per_item) = (self.cols(), self.channels * self.height * self.width);
        let per_row_block = self.grid_h * self.grid_w * cols;
        let mut out = vec![0f32; self.rows() * cols];
        out.par_chunks_mut(per_row_block)
            .zip(image.par_chunks(per_item))
            .for_each(|(dst, src)| {
                for gy in 0..self.grid_h {
                    for gx in 0..self.grid_w {
                        let row = &mut dst[(gy * self.grid_w + gx) * cols..][..cols];
                        self.taps(gy, gx, |img, col| row[col] = src[img]);
                    }
                }
            });
        out
    }

    /// Patches (N·GH·GW, C·k·k) → image (N, C, H, W), overlapping taps summed.
    fn fold(&self, patches: &[f32]) -> Vec<f32> {
        let (cols, per_item) = (self.cols(), self.channels * self.height * self.width);
        let per_row_block = self.grid_h * self.grid_w * cols;
        let mut out = vec![0f32; self.batch * per_item];
        out.par_chunks_mut(per_item)
            .zip(patches.par_chunks(per_row_block))
            .for_each(|(dst, src)| {
                for gy in 0..self.grid_h {
                    for gx in 0..self.grid_w {
                        let row = &src[(gy * self.grid_w + gx) * cols..][..cols];
                        self.taps(gy, gx, |img, col| dst[img] += row[col]);
                    }
                }
            });
        out
    }
}

/// Image → patches; backward folds the gradient.
struct Unfold(Window);
/// Patches → image; backward unfolds the gradient.
struct Fold(Window);

impl CustomOp1 for Unfold {
    fn name(&self) -> &'static str {
        "genmod-im2col"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let w = self.0;
        let out = w.unfold(f32_slice(s, l, "convolution")?);
        Ok((CpuStorage::F32(out), Shape::from((w.rows(), w.cols()))))
    }
    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&Fold(self.0))?))
    }
}

impl CustomOp1 for Fold {
    fn name(&self) -> &'static str {
        "genmod-col2im"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let w = self.0;
        let out = w.fold(f32_slice(s, l, "convolution")?);
        Ok((
            CpuStorage::F32(out),
            Shape::from((w.batch, w.channels, w.height, w.width)),
        ))
    }
    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&Unfold(self.0))?))
    }
}

fn fast_path(x: &Tensor, w: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32 && w.dtype() == DType::F32
}

/// `layer.forward(x)` for a square-kernel convolution with the given stride and padding
/// (no dilation, no groups), as im2col and one GEMM on the CPU.
pub fn conv2d(layer: &Conv2d, x: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    let w = layer.weight();
    if !fast_path(x, w) {
        return layer.forward(x);
    }
    let (c_out, c_in, k, _) = w.dims4()?;
    let win = Window::new(x.dims4()?, k, stride, padding)?;
    if win.channels != c_in {
        candle_core::bail!(
            "conv2d: {} input channels, kernel wants {c_in}",
            win.channels
        );
    }
    let patches = x.contiguous()?.apply_op1(Unfold(win))?;
    let out = patches.matmul(&w.reshape((c_out, c_in * k * k))?.t()?)?; // (N·GH·GW, Cout)
    let out = out
        .reshape((win.batch, win.grid_h * win.grid_w, c_out))?
        .transpose(1, 2)?
        .reshape((win.batch, c_out, win.grid_h, win.grid_w))?;
    match layer.bias() {
        Some(b) => add_channel_bias(&out, b),
        None => Ok(out),
    }
}

/// `layer.forward(x)` for a square-kernel transposed convolution with the given stride and
/// padding (no output padding, no dilation), as one GEMM and col2im on the CPU.
pub fn conv_transpose2d(
    layer: &ConvTranspose2d,
    x: &Tensor,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    let w = layer.weight();
    if !fast_path(x, w) {
        return layer.forward(x);
    }
    let (c_in, c_out, k, _) = w.dims4()?;
    let (n, c, h, wd) = x.dims4()?;
    if c != c_in {
        candle_core::bail!("conv_transpose2d: {c} input channels, kernel wants {c_in}");
    }
    let (out_h, out_w) = (
        (h - 1) * stride + k - 2 * padding,
        (wd - 1) * stride + k - 2 * padding,
    );
    let win = Window::new((n, c_out, out_h, out_w), k, stride, padding)?;
    // One row per input pixel: its contribution to every tap of its output window.
    let rows = x.permute((0, 2, 3, 1))?.reshape((n * h * wd, c_in))?;
    let patches = rows.matmul(&w.reshape((c_in, c_out * k * k))?)?;
    let out = patches.apply_op1(Fold(win))?;
    match layer.bias() {
        Some(b) => add_channel_bias(&out, b),
        None => Ok(out),
    }
}

/// x (N, C, H, W) + b[c]. candle's broadcast add is right, but its backward sums the
/// gradient over (N, H, W) with a strided reduction that cost a tenth of a DCGAN step; here
/// the bias gradient is one contiguous pass per channel.
fn add_channel_bias(x: &Tensor, b: &Tensor) -> Result<Tensor> {
    if b.dtype() != DType::F32 || b.rank() != 1 {
        let c = b.elem_count();
        return x.broadcast_add(&b.reshape((1, c, 1, 1))?);
    }
    x.contiguous()?.apply_op2(&b.contiguous()?, ChannelBias)
}

struct ChannelBias;

/// The (batch, channels, plane size) of a 4-D layout.
fn planes(l: &Layout) -> Result<(usize, usize, usize)> {
    match l.dims() {
        [n, c, h, w] => Ok((*n, *c, h * w)),
        d => candle_core::bail!("channel bias: expected N x C x H x W, got {d:?}"),
    }
}

impl candle_core::CustomOp2 for ChannelBias {
    fn name(&self) -> &'static str {
        "genmod-channel-bias"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, b) = (
            f32_slice(s1, l1, "convolution")?,
            f32_slice(s2, l2, "convolution")?,
        );
        let (_, c, plane) = planes(l1)?;
        if b.len() != c {
            candle_core::bail!("channel bias: {} values for {c} channels", b.len());
        }
        let mut y = x.to_vec();
        for (i, chunk) in y.chunks_mut(plane).enumerate() {
            let v = b[i % c];
            chunk.iter_mut().for_each(|y| *y += v);
        }
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }
    fn bwd(
        &self,
        _x: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let db = grad.contiguous()?.apply_op1_no_bwd(&ChannelSums)?;
        Ok((Some(grad.clone()), Some(db)))
    }
}

/// g (N, C, H, W) → Σ over N, H, W for each channel.
struct ChannelSums;

impl CustomOp1 for ChannelSums {
    fn name(&self) -> &'static str {
        "genmod-channel-sums"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = f32_slice(s, l, "convolution")?;
        let (_, c, plane) = planes(l)?;
        let mut sums = vec![0f64; c];
        for (i, chunk) in g.chunks(plane).enumerate() {
            sums[i % c] += chunk.iter().map(|&v| v as f64).sum::<f64>();
        }
        Ok((
            CpuStorage::F32(sums.into_iter().map(|v| v as f32).collect()),
            Shape::from(c),
        ))
    }
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

    /// Same output and same gradients (input, weight, bias) as candle's layer.
    fn check(make: &dyn Fn(VarBuilder) -> Layer, shape: (usize, usize, usize, usize)) {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let f = make(vb);
        let x = input(shape);
        let mut results = Vec::new();
        for fast in [true, false] {
            let y = f(x.as_tensor(), fast).unwrap();
            let weights = Tensor::arange(0f32, y.elem_count() as f32, &Device::Cpu)
                .unwrap()
                .reshape(y.shape())
                .unwrap()
                .sin()
                .unwrap();
            let grads = (&y * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
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
        ] {
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
                            conv2d(&layer, x, s, p)
                        } else {
                            layer.forward(x)
                        }
                    })
                },
                shape,
            );
        }
    }

    #[test]
    fn conv_transpose2d_matches_candle_in_value_and_every_gradient() {
        for (k, s, p, shape) in [(4, 2, 1, (3, 4, 7, 7)), (3, 1, 1, (2, 3, 5, 4))] {
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
                            conv_transpose2d(&layer, x, s, p)
                        } else {
                            layer.forward(x)
                        }
                    })
                },
                shape,
            );
        }
    }

    #[test]
    fn a_window_larger_than_the_padded_image_is_an_error() {
        assert!(Window::new((1, 1, 2, 2), 5, 1, 1).is_err());
        assert!(Window::new((1, 1, 2, 2), 4, 1, 1).is_ok());
    }
}
