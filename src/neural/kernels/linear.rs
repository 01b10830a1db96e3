//! Fully connected layers as one fused op on the CPU: y = act(x·Wᵀ + b).
//!
//! candle records a dense layer as four backward nodes (transpose, matmul, broadcast add,
//! activation). Its backward pass then allocates and zeroes a gradient buffer per node, adds
//! the weight gradient through a strided transpose, and sums the bias gradient with a strided
//! reduction: on the small MLPs of the report that bookkeeping costs as much as the GEMMs.
//! Here the forward pass is one GEMM (gemm crate) accumulating onto the bias, with the
//! activation applied in place, and the backward pass is the three textbook products:
//! gx = g·W, gW = gᵀ·x, gb = Σ_rows g, with g = upstream ⊙ act′. The derivative of ReLU and
//! LeakyReLU is read from the output's sign, so no pre-activation is kept.
//!
//! Anything off the fast path (another device or dtype, a batched input) uses candle's own
//! ops, so results agree to rounding wherever the layer runs.

use super::cpu::{Strided, f32_slice, matmul};
use candle_core::Tensor;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape};
use candle_nn::Linear;
use rayon::prelude::*;
use wide::f32x8;

/// The activation that follows a dense layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    Identity,
    Relu,
    /// max(x, 0) + slope · min(x, 0), slope > 0.
    LeakyRelu(f32),
    /// tanh x, the generators' output layer.
    Tanh,
    /// 1/(1 + e^−x): a Bernoulli decoder's means, for sampling (training reads the logits).
    Sigmoid,
}

impl Activation {
    #[inline]
    pub(super) fn value(self, x: f32) -> f32 {
        match self {
            Activation::Identity => x,
            Activation::Relu => x.max(0.0),
            Activation::LeakyRelu(s) => leaky(x, s),
            Activation::Tanh => x.tanh(),
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        }
    }

    /// Applies the activation to every value in place.
    pub(super) fn apply_in_place(self, ys: &mut [f32]) {
        match self {
            Activation::Identity => {}
            // tanh x = 1 − 2/(e^{2x} + 1), eight lanes at a time because libm's tanh is scalar
            // and the generator's output layer calls it for every pixel; saturates to ±1
            // without overflow, absolute error ~1e-7.
            Activation::Tanh => {
                let mut chunks = ys.chunks_exact_mut(8);
                for c in &mut chunks {
                    let v = f32x8::from(<[f32; 8]>::try_from(&*c).expect("chunk of 8"));
                    let t = f32x8::ONE - f32x8::splat(2.0) / ((v + v).exp() + f32x8::ONE);
                    c.copy_from_slice(&t.to_array());
                }
                chunks
                    .into_remainder()
                    .iter_mut()
                    .for_each(|v| *v = v.tanh());
            }
            // 1/(1 + e^−x), eight lanes at a time; e^−x overflowing to +inf gives 0.
            Activation::Sigmoid => {
                let mut chunks = ys.chunks_exact_mut(8);
                for c in &mut chunks {
                    let v = f32x8::from(<[f32; 8]>::try_from(&*c).expect("chunk of 8"));
                    let t = f32x8::ONE / (f32x8::ONE + (-v).exp());
                    c.copy_from_slice(&t.to_array());
                }
                let rest = chunks.into_remainder();
                rest.iter_mut()
                    .for_each(|v| *v = Activation::Sigmoid.value(*v));
            }
            Activation::Relu => ys.iter_mut().for_each(|v| *v = v.max(0.0)),
            Activation::LeakyRelu(s) => ys.iter_mut().for_each(|v| *v = leaky(*v, s)),
        }
    }

    /// ys = f(xs · scale + shift), batch norm's output. The piecewise-linear activations
    /// get a loop each, so that the compiler vectorises it rather than matching per value.
    pub(super) fn affine_into(self, ys: &mut [f32], xs: &[f32], scale: f32, shift: f32) {
        #[inline(always)]
        fn run(ys: &mut [f32], xs: &[f32], f: impl Fn(f32) -> f32) {
            ys.iter_mut().zip(xs).for_each(|(y, &x)| *y = f(x));
        }
        match self {
            Activation::Relu => run(ys, xs, |x| (x * scale + shift).max(0.0)),
            Activation::LeakyRelu(s) => run(ys, xs, |x| leaky(x * scale + shift, s)),
            act => {
                run(ys, xs, |x| x * scale + shift);
                act.apply_in_place(ys);
            }
        }
    }

    /// out = grad · f′, f′ read from the output `y` (y > 0 exactly when x > 0, tanh′ = 1 − y²,
    /// σ′ = y(1 − y)). One loop per activation, so that each compiles to vector code; a match
    /// on the activation per value would keep the loop scalar.
    fn gradient_into(self, out: &mut [f32], y: &[f32], grad: &[f32]) {
        #[inline(always)]
        fn run(out: &mut [f32], y: &[f32], grad: &[f32], f: impl Fn(f32, f32) -> f32) {
            out.iter_mut()
                .zip(y.iter().zip(grad))
                .for_each(|(o, (&y, &g))| *o = f(y, g));
        }
        match self {
            Activation::Identity => out.copy_from_slice(grad),
            Activation::Relu => run(out, y, grad, |y, g| if y > 0.0 { g } else { 0.0 }),
            Activation::LeakyRelu(s) => run(out, y, grad, |y, g| if y > 0.0 { g } else { s * g }),
            Activation::Tanh => run(out, y, grad, |y, g| g * (1.0 - y * y)),
            Activation::Sigmoid => run(out, y, grad, |y, g| g * (y * (1.0 - y))),
        }
    }

    /// The gradient before the activation from the one after it, `grad` (contiguous), and
    /// the activation's output `y`: one pass, the derivative read from `y`. Shared by the
    /// fused dense, convolution and batch-norm ops.
    pub(super) fn backward(self, y: &Tensor, grad: &Tensor) -> Result<Tensor> {
        match self {
            Activation::Identity => Ok(grad.clone()),
            act => y.apply_op2_no_bwd(grad, &ActivationGrad(act)),
        }
    }

    /// candle's own formula, off the fast path.
    pub(super) fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Activation::Identity => Ok(x.clone()),
            Activation::Relu => x.relu(),
            Activation::LeakyRelu(s) => super::fused::leaky_relu(x, s as f64),
            Activation::Tanh => x.tanh(),
            Activation::Sigmoid => candle_nn::ops::sigmoid(x),
        }
    }
}

/// LeakyReLU with slope `s` below zero.
#[inline(always)]
fn leaky(x: f32, s: f32) -> f32 {
    if x > 0.0 { x } else { s * x }
}

/// How a weight matrix is stored: (out, in) as candle's `Linear`, or (in, out) as a tied
/// decoder reads its encoder's weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WeightLayout {
    OutByIn,
    InByOut,
}

/// `act(layer.forward(x))` for a 2-D input.
pub fn dense(layer: &Linear, x: &Tensor, act: Activation) -> Result<Tensor> {
    dense_with(x, layer.weight(), layer.bias(), WeightLayout::OutByIn, act)
}

/// `act(layer.forward(x))` with the layer's weight and bias detached: gradients reach `x`
/// only (a discriminator seen by the generator's step, whose weight gradients would be
/// computed and thrown away).
pub fn dense_frozen(layer: &Linear, x: &Tensor, act: Activation) -> Result<Tensor> {
    let b = layer.bias().map(Tensor::detach);
    dense_with(
        x,
        &layer.weight().detach(),
        b.as_ref(),
        WeightLayout::OutByIn,
        act,
    )
}

/// act(x·W + b) with W stored as `layout` says; `b` is optional.
pub fn dense_with(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    layout: WeightLayout,
    act: Activation,
) -> Result<Tensor> {
    let fast = x.device().is_cpu()
        && x.rank() == 2
        && w.rank() == 2
        && [x.dtype(), w.dtype()] == [DType::F32; 2]
        && b.is_none_or(|b| b.dtype() == DType::F32 && b.rank() == 1);
    if !fast {
        let wt = match layout {
            WeightLayout::OutByIn => w.t()?,
            WeightLayout::InByOut => w.clone(),
        };
        let y = x.broadcast_matmul(&wt)?;
        let y = match b {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        return act.apply(&y);
    }
    let out_dim = match layout {
        WeightLayout::OutByIn => w.dim(0)?,
        WeightLayout::InByOut => w.dim(1)?,
    };
    let b = match b {
        Some(b) => b.contiguous()?,
        // A zero bias keeps one op with three arguments; its gradient is simply unused.
        None => Tensor::zeros(out_dim, DType::F32, x.device())?,
    };
    x.contiguous()?
        .apply_op3(&w.contiguous()?, &b, Dense { act, layout })
}

/// Elements per task when an activation is spread over threads.
const PARALLEL_BLOCK: usize = 32 * 1024;

/// Rows per task when a sampling-sized batch (at least four blocks) is multiplied and
/// activated block by block: each task's product (single-threaded) is activated while it
/// is still in the core's cache. As one product on both threads followed by one pass of
/// the activation, a thousand VAE samples' 3 MiB of sigmoid inputs had left the cache before
/// the pass read them, and that pass was 30% of sampling, as slow with an AVX2 exponential
/// as with SSE. Block by block: VAE sampling 337k-395k -> 386k-412k images a second, the
/// MLP GAN's 90k-93k -> 101k-104k (three interleaved runs each), the same bits (3,000
/// samples of each, compared byte for byte).
const SAMPLING_BLOCK_ROWS: usize = 128;

struct Dense {
    act: Activation,
    layout: WeightLayout,
}

impl Dense {
    /// (rows, in, out) of a product, checked against the weight and bias.
    fn dims(&self, x: &Layout, w: &Layout, b: &Layout) -> Result<(usize, usize, usize)> {
        let (m, k) = x.shape().dims2()?;
        let (w0, w1) = w.shape().dims2()?;
        let (wk, n) = match self.layout {
            WeightLayout::OutByIn => (w1, w0),
            WeightLayout::InByOut => (w0, w1),
        };
        if wk != k || b.shape().elem_count() != n {
            candle_core::bail!(
                "dense layer: input has {k} features, weight is {w0}x{w1}, bias has {} values",
                b.shape().elem_count()
            );
        }
        Ok((m, k, n))
    }
}

impl CustomOp3 for Dense {
    fn name(&self) -> &'static str {
        "genmod-dense"
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
        let (m, k, n) = self.dims(xl, wl, bl)?;
        let x = f32_slice(xs, xl, "dense layer")?;
        let w = f32_slice(ws, wl, "dense layer")?;
        let b = f32_slice(bs, bl, "dense layer")?;
        // Each output row starts as the bias; the GEMM adds x·W onto it.
        let mut y: Vec<f32> = Vec::with_capacity(m * n);
        for _ in 0..m {
            y.extend_from_slice(b);
        }
        // W viewed as the (k, n) right-hand side: element (kk, j) sits at
        // kk·rs + j·cs of the stored matrix.
        let (rs, cs) = match self.layout {
            WeightLayout::OutByIn => (1, k),
            WeightLayout::InByOut => (n, 1),
        };
        let weight = Strided { data: w, rs, cs };
        // (k = 0, a layer with no inputs, keeps the one-product path: its blocks of x are
        // empty.)
        if self.act != Activation::Identity && m >= 4 * SAMPLING_BLOCK_ROWS && k > 0 {
            y.par_chunks_mut(SAMPLING_BLOCK_ROWS * n)
                .zip(x.par_chunks(SAMPLING_BLOCK_ROWS * k))
                .try_for_each(|(yb, xb)| {
                    let rows = xb.len() / k;
                    matmul((rows, n, k), yb, true, Strided::rows(xb, k), weight, 1)?;
                    self.act.apply_in_place(yb);
                    Ok::<(), candle_core::Error>(())
                })?;
            return Ok((CpuStorage::F32(y), Shape::from((m, n))));
        }
        matmul(
            (m, n, k),
            &mut y,
            true,
            Strided::rows(x, k),
            weight,
            rayon::current_num_threads(),
        )?;
        // Large outputs (sampling a thousand images) are activated on every core, in
        // blocks of rows big enough to be worth a task.
        if self.act != Activation::Identity {
            let rows_per_task = (PARALLEL_BLOCK / n.max(1)).max(1);
            if m * n >= PARALLEL_BLOCK * 2 {
                y.par_chunks_mut(rows_per_task * n)
                    .for_each(|block| self.act.apply_in_place(block));
            } else {
                self.act.apply_in_place(&mut y);
            }
        }
        Ok((CpuStorage::F32(y), Shape::from((m, n))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        y: &Tensor,
        grad_y: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad_y = grad_y.contiguous()?;
        let g = self.act.backward(y, &grad_y)?;
        // Only the gradients someone will read: an input batch of images, a detached fake
        // or frozen weights record no graph, and their products would be thrown away
        // (for the first layer, gx is the largest GEMM of the backward pass).
        let gx = match (x.track_op(), self.layout) {
            (false, _) => None,
            (true, WeightLayout::OutByIn) => Some(g.matmul(w)?),
            (true, WeightLayout::InByOut) => Some(g.matmul(&w.t()?)?),
        };
        let gw = match (w.track_op(), self.layout) {
            (false, _) => None,
            (true, WeightLayout::OutByIn) => Some(g.t()?.matmul(x)?),
            (true, WeightLayout::InByOut) => Some(x.t()?.matmul(&g)?),
        };
        let gb = if b.track_op() {
            Some(g.apply_op1_no_bwd(&ColumnSums)?)
        } else {
            None
        };
        Ok((gx, gw, gb))
    }
}

/// (output y, upstream gradient) → upstream · f′, in one pass.
struct ActivationGrad(Activation);

impl CustomOp2 for ActivationGrad {
    fn name(&self) -> &'static str {
        "genmod-activation-grad-from-output"
    }

    fn cpu_fwd(
        &self,
        ys: &CpuStorage,
        yl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let y = f32_slice(ys, yl, "activation gradient")?;
        let g = f32_slice(gs, gl, "activation gradient")?;
        if y.len() != g.len() {
            candle_core::bail!(
                "activation gradient: {} values against {}",
                y.len(),
                g.len()
            );
        }
        let act = self.0;
        let mut out = vec![0f32; y.len()];
        // Large gradients (a convolution's or batch norm's output) on every core, in blocks
        // big enough to be worth a task.
        if y.len() >= PARALLEL_BLOCK * 2 {
            out.par_chunks_mut(PARALLEL_BLOCK)
                .zip(
                    y.par_chunks(PARALLEL_BLOCK)
                        .zip(g.par_chunks(PARALLEL_BLOCK)),
                )
                .for_each(|(o, (y, g))| act.gradient_into(o, y, g));
        } else {
            act.gradient_into(&mut out, y, g);
        }
        Ok((CpuStorage::F32(out), yl.shape().clone()))
    }
}

/// The sum of each column of a (rows, cols) matrix: the bias gradient, one contiguous pass.
struct ColumnSums;

impl CustomOp1 for ColumnSums {
    fn name(&self) -> &'static str {
        "genmod-column-sums"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (_, cols) = l.shape().dims2()?;
        let g = f32_slice(s, l, "dense layer bias gradient")?;
        let mut sums = vec![0f32; cols];
        for row in g.chunks_exact(cols.max(1)) {
            sums.iter_mut().zip(row).for_each(|(s, v)| *s += v);
        }
        Ok((CpuStorage::F32(sums), Shape::from(cols)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn var(rows: usize, cols: usize, seed: f32) -> Var {
        let v: Vec<f32> = (0..rows * cols)
            .map(|i| ((i as f32 + seed) * 0.731).sin() * 1.3)
            .collect();
        Var::from_vec(v, (rows, cols), &Device::Cpu).unwrap()
    }

    /// Values and the gradients of x, W and b against candle's matmul, add and activation.
    fn agrees(act: Activation, layout: WeightLayout, with_bias: bool) {
        let (m, k, n) = (7, 5, 3);
        let x = var(m, k, 0.5);
        let w = match layout {
            WeightLayout::OutByIn => var(n, k, 2.0),
            WeightLayout::InByOut => var(k, n, 2.0),
        };
        let b = var(1, n, 9.0);
        let b1 = b.as_tensor().flatten_all().unwrap();
        // A weighted sum, so each output's gradient differs.
        let weights = var(m, n, 4.0).as_tensor().detach();
        let mut results = Vec::new();
        for fused in [true, false] {
            let bias = with_bias.then_some(&b1);
            let y = if fused {
                dense_with(x.as_tensor(), w.as_tensor(), bias, layout, act).unwrap()
            } else {
                let wt = match layout {
                    WeightLayout::OutByIn => w.as_tensor().t().unwrap(),
                    WeightLayout::InByOut => w.as_tensor().clone(),
                };
                let mut y = x.as_tensor().matmul(&wt).unwrap();
                if let Some(bias) = bias {
                    y = y.broadcast_add(bias).unwrap();
                }
                match act {
                    Activation::Identity => y,
                    Activation::Relu => y.relu().unwrap(),
                    Activation::LeakyRelu(s) => candle_nn::ops::leaky_relu(&y, s as f64).unwrap(),
                    Activation::Tanh => y.tanh().unwrap(),
                    Activation::Sigmoid => (y.neg().unwrap().exp().unwrap() + 1.0)
                        .unwrap()
                        .recip()
                        .unwrap(),
                }
            };
            let grads = (&y * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let gb = grads.get(b.as_tensor()).map(flat);
            results.push((
                flat(&y),
                flat(grads.get(x.as_tensor()).unwrap()),
                flat(grads.get(w.as_tensor()).unwrap()),
                gb,
            ));
        }
        let close = |a: &[f32], b: &[f32], what: &str| {
            assert_eq!(a.len(), b.len(), "{what}");
            for (i, (p, q)) in a.iter().zip(b).enumerate() {
                assert!(
                    (p - q).abs() < 1e-5,
                    "{what}[{i}]: {p} vs {q} ({act:?}, {layout:?})"
                );
            }
        };
        let (f, p) = (&results[0], &results[1]);
        close(&f.0, &p.0, "value");
        close(&f.1, &p.1, "gradient of x");
        close(&f.2, &p.2, "gradient of W");
        match (&f.3, &p.3) {
            (Some(a), Some(c)) => close(a, c, "gradient of b"),
            (None, None) => assert!(!with_bias),
            _ => panic!("bias gradient present on one side only"),
        }
        // The activation really acted: some outputs are negative before it.
        assert!(p.0.iter().any(|v| *v <= 0.0) || act != Activation::Relu);
    }

    #[test]
    fn eight_lane_sigmoid_and_tanh_saturate_without_overflow() {
        let xs = [
            -1e30f32, 1e30, -100.0, 100.0, -88.8, 88.8, -20.0, 20.0, -1.0, 0.0, 0.5,
        ];
        for act in [Activation::Sigmoid, Activation::Tanh] {
            let mut ys = xs.to_vec();
            act.apply_in_place(&mut ys);
            for (&x, &y) in xs.iter().zip(&ys) {
                let want = match act {
                    Activation::Sigmoid => 1.0 / (1.0 + (-(x as f64)).exp()),
                    _ => (x as f64).tanh(),
                };
                assert!(
                    (y as f64 - want).abs() < 1e-6,
                    "{act:?}({x}) = {y}, want {want}"
                );
            }
        }
    }

    #[test]
    fn dense_matches_candles_ops_in_value_and_every_gradient() {
        for act in [
            Activation::Identity,
            Activation::Relu,
            Activation::LeakyRelu(0.2),
            Activation::Tanh,
            Activation::Sigmoid,
        ] {
            for layout in [WeightLayout::OutByIn, WeightLayout::InByOut] {
                for with_bias in [true, false] {
                    agrees(act, layout, with_bias);
                }
            }
        }
    }

    /// A layer with no inputs and a sampling-sized batch gives the activated bias in every
    /// row (the block path would divide by k).
    #[test]
    fn a_sampling_sized_batch_through_a_layer_with_no_inputs_is_its_activated_bias() {
        let m = 4 * SAMPLING_BLOCK_ROWS;
        let x = Tensor::zeros((m, 0), candle_core::DType::F32, &Device::Cpu).unwrap();
        let w = Tensor::zeros((3, 0), candle_core::DType::F32, &Device::Cpu).unwrap();
        let b = Tensor::new(&[-1f32, 0.0, 2.0], &Device::Cpu).unwrap();
        let y = dense_with(&x, &w, Some(&b), WeightLayout::OutByIn, Activation::Relu)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(y.len(), m);
        assert!(y.iter().all(|row| row == &[0.0, 0.0, 2.0]));
    }

    /// A batch large enough to be multiplied and activated block by block, with a ragged
    /// last block, gives candle's values in every row.
    #[test]
    fn a_sampling_sized_batch_is_computed_block_by_block_to_the_same_values() {
        let (m, k, n) = (4 * SAMPLING_BLOCK_ROWS + 37, 9, 11);
        let x = var(m, k, 0.5);
        let w = var(n, k, 2.0);
        let b = var(1, n, 9.0).as_tensor().flatten_all().unwrap();
        for act in [Activation::Sigmoid, Activation::Tanh, Activation::Relu] {
            let got = dense_with(
                x.as_tensor(),
                w.as_tensor(),
                Some(&b),
                WeightLayout::OutByIn,
                act,
            )
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
            let y = x
                .as_tensor()
                .matmul(&w.as_tensor().t().unwrap())
                .unwrap()
                .broadcast_add(&b)
                .unwrap();
            let want = match act {
                Activation::Sigmoid => candle_nn::ops::sigmoid(&y).unwrap(),
                Activation::Tanh => y.tanh().unwrap(),
                _ => y.relu().unwrap(),
            }
            .to_vec2::<f32>()
            .unwrap();
            assert_eq!(got.len(), m);
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                for (p, q) in a.iter().zip(b) {
                    assert!((p - q).abs() < 1e-5, "{act:?} row {i}: {p} vs {q}");
                }
            }
        }
    }

    #[test]
    fn dense_accepts_a_transposed_input_and_rejects_a_shape_mismatch() {
        let x = var(4, 6, 1.0).as_tensor().t().unwrap(); // (6, 4), not contiguous
        let w = var(3, 4, 2.0);
        let got = dense_with(
            &x,
            w.as_tensor(),
            None,
            WeightLayout::OutByIn,
            Activation::Relu,
        )
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
        let want = x
            .matmul(&w.as_tensor().t().unwrap())
            .unwrap()
            .relu()
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for (a, b) in got.iter().flatten().zip(want.iter().flatten()) {
            assert!((a - b).abs() < 1e-5);
        }
        let wrong = var(3, 5, 2.0);
        let err = dense_with(
            &x,
            wrong.as_tensor(),
            None,
            WeightLayout::OutByIn,
            Activation::Relu,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("input has 4 features"), "{err}");
    }
}
