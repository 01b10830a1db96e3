//! Fused element-wise activations for the CPU.
//!
//! candle builds LeakyReLU from five tensor ops (zeros, maximum, minimum, scale, add) and a
//! stable softplus from six, and each op allocates its output and records a backward node
//! that allocates again. On small MLPs that bookkeeping, not arithmetic, dominates a step.
//! These custom ops compute each activation and its derivative in one pass over the data.
//! On other devices, other dtypes or in a build where the fast path cannot apply, the plain
//! candle formula is used, so results agree to rounding wherever the op runs.

use super::cpu::f32_slice;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use wide::f32x8;

/// Which activation.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// max(x, 0) + slope · min(x, 0).
    LeakyRelu(f32),
    /// log(1 + eˣ), computed as max(x, 0) + log(1 + e^(−|x|)).
    Softplus,
}

impl Kind {
    #[inline]
    fn value(self, x: f32) -> f32 {
        match self {
            Kind::LeakyRelu(s) => {
                if x > 0.0 {
                    x
                } else {
                    s * x
                }
            }
            Kind::Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
        }
    }

    #[inline]
    fn derivative(self, x: f32) -> f32 {
        match self {
            Kind::LeakyRelu(s) => {
                if x > 0.0 {
                    1.0
                } else {
                    s
                }
            }
            // d/dx softplus = σ(x), in a form that does not overflow for large |x|.
            Kind::Softplus => {
                if x >= 0.0 {
                    1.0 / (1.0 + (-x).exp())
                } else {
                    let e = x.exp();
                    e / (1.0 + e)
                }
            }
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::LeakyRelu(_) => "genmod-leaky-relu",
            Kind::Softplus => "genmod-softplus",
        }
    }
}

struct Activation(Kind);

impl CustomOp1 for Activation {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, "fused activation")?;
        let k = self.0;
        let y: Vec<f32> = x.iter().map(|&v| k.value(v)).collect();
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let g = grad_res.contiguous()?;
        Ok(Some(arg.apply_op2_no_bwd(&g, &ActivationGrad(self.0))?))
    }
}

/// (x, upstream gradient) → upstream · f′(x), in one pass.
struct ActivationGrad(Kind);

impl CustomOp2 for ActivationGrad {
    fn name(&self) -> &'static str {
        "genmod-activation-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, "fused activation")?;
        let g = f32_slice(s2, l2, "fused activation")?;
        if x.len() != g.len() {
            candle_core::bail!("fused op gradient: {} values against {}", x.len(), g.len());
        }
        let k = self.0;
        let out: Vec<f32> = x
            .iter()
            .zip(g)
            .map(|(&x, &g)| g * k.derivative(x))
            .collect();
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// Binary cross-entropy with logits summed over each row: Σ_j softplus(l_ij) − l_ij·x_ij,
/// with gradient σ(l) − x for the logits (the targets get none). One pass forward and one
/// backward, where candle's composite needs four nodes, each allocating a gradient twice.
struct BceWithLogitsRows;

impl CustomOp2 for BceWithLogitsRows {
    fn name(&self) -> &'static str {
        "genmod-bce-with-logits-rows"
    }

    fn cpu_fwd(
        &self,
        ls: &CpuStorage,
        ll: &Layout,
        xs: &CpuStorage,
        xl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (rows, cols) = ll.shape().dims2()?;
        if xl.shape() != ll.shape() {
            candle_core::bail!(
                "cross-entropy: logits {:?} against targets {:?}",
                ll.shape(),
                xl.shape()
            );
        }
        let l = f32_slice(ls, ll, "cross-entropy")?;
        let x = f32_slice(xs, xl, "cross-entropy")?;
        // Rows spread over the threads (a batch of 128 images is 100k exp/log1p pairs).
        let sums = l
            .par_chunks_exact(cols.max(1))
            .zip(x.par_chunks_exact(cols.max(1)))
            .map(|(l, x)| bce_row(l, x))
            .collect();
        Ok((CpuStorage::F32(sums), Shape::from(rows)))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = grad_res.contiguous()?;
        let grad = logits.apply_op3_no_bwd(targets, &g, &BceWithLogitsGrad)?;
        Ok((Some(grad), None))
    }
}

/// (logits, targets, per-row upstream gradient) → g_i · (σ(l_ij) − x_ij).
struct BceWithLogitsGrad;

impl candle_core::CustomOp3 for BceWithLogitsGrad {
    fn name(&self) -> &'static str {
        "genmod-bce-with-logits-grad"
    }

    fn cpu_fwd(
        &self,
        ls: &CpuStorage,
        ll: &Layout,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, cols) = ll.shape().dims2()?;
        let l = f32_slice(ls, ll, "cross-entropy gradient")?;
        let x = f32_slice(xs, xl, "cross-entropy gradient")?;
        let g = f32_slice(gs, gl, "cross-entropy gradient")?;
        if x.len() != l.len() || g.len() * cols != l.len() {
            candle_core::bail!(
                "cross-entropy gradient: {} logits, {} targets, {} row gradients",
                l.len(),
                x.len(),
                g.len()
            );
        }
        let mut out = vec![0f32; l.len()];
        out.par_chunks_exact_mut(cols.max(1))
            .zip(l.par_chunks_exact(cols.max(1)))
            .zip(x.par_chunks_exact(cols.max(1)).zip(g.par_iter()))
            .for_each(|((out, l), (x, &g))| bce_row_grad(l, x, g, out));
        Ok((CpuStorage::F32(out), ll.shape().clone()))
    }
}

// The cross-entropy's exp and log1p run eight lanes at a time (wide's f32x8, whose ln_1p
// follows musl's log1pf): libm's are scalar calls, and the loss evaluates them for every
// pixel of every image.

/// Σ_j softplus(l_j) − l_j·x_j for one row.
fn bce_row(l: &[f32], x: &[f32]) -> f32 {
    let (lc, lt) = l.split_at(l.len() / 8 * 8);
    let (xc, xt) = x.split_at(lc.len());
    let mut acc = f32x8::ZERO;
    for (l8, x8) in lc.chunks_exact(8).zip(xc.chunks_exact(8)) {
        let l8 = f32x8::from(<[f32; 8]>::try_from(l8).expect("chunk of 8"));
        let x8 = f32x8::from(<[f32; 8]>::try_from(x8).expect("chunk of 8"));
        let softplus = l8.max(f32x8::ZERO) + (-l8.abs()).exp().ln_1p();
        acc += softplus - l8 * x8;
    }
    let tail: f32 = lt
        .iter()
        .zip(xt)
        .map(|(&l, &x)| Kind::Softplus.value(l) - l * x)
        .sum();
    acc.reduce_add() + tail
}

/// Writes g · (σ(l_j) − x_j) for one row into `out`.
fn bce_row_grad(l: &[f32], x: &[f32], g: f32, out: &mut [f32]) {
    let (lc, lt) = l.split_at(l.len() / 8 * 8);
    let (xc, xt) = x.split_at(lc.len());
    let (oc, ot) = out.split_at_mut(lc.len());
    let g8 = f32x8::splat(g);
    for ((l8, x8), o8) in lc
        .chunks_exact(8)
        .zip(xc.chunks_exact(8))
        .zip(oc.chunks_exact_mut(8))
    {
        let l8 = f32x8::from(<[f32; 8]>::try_from(l8).expect("chunk of 8"));
        let x8 = f32x8::from(<[f32; 8]>::try_from(x8).expect("chunk of 8"));
        // σ(l) = 1/(1 + e^−l) for l ≥ 0 and e^l/(1 + e^l) below: neither overflows.
        let e = (-l8.abs()).exp();
        let numerator = l8.simd_ge(f32x8::ZERO).select(f32x8::ONE, e);
        let sigmoid = numerator / (f32x8::ONE + e);
        o8.copy_from_slice(&(g8 * (sigmoid - x8)).to_array());
    }
    for ((o, &l), &x) in ot.iter_mut().zip(lt).zip(xt) {
        *o = g * (Kind::Softplus.derivative(l) - x);
    }
}

/// Per-row binary cross-entropy of logits against targets in [0, 1], for (rows, cols) f32
/// tensors on the CPU; None where the fused op does not apply.
pub fn bce_with_logits_rows(logits: &Tensor, targets: &Tensor) -> Result<Option<Tensor>> {
    if !(fast_path(logits) && fast_path(targets) && logits.rank() == 2) {
        return Ok(None);
    }
    logits
        .contiguous()?
        .apply_op2(&targets.contiguous()?.detach(), BceWithLogitsRows)
        .map(Some)
}

fn fast_path(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

/// LeakyReLU with the given negative slope.
pub fn leaky_relu(x: &Tensor, slope: f64) -> Result<Tensor> {
    if fast_path(x) {
        x.contiguous()?
            .apply_op1(Activation(Kind::LeakyRelu(slope as f32)))
    } else {
        candle_nn::ops::leaky_relu(x, slope)
    }
}

/// softplus(x) = log(1 + eˣ), stable for any x.
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    if fast_path(x) {
        x.contiguous()?.apply_op1(Activation(Kind::Softplus))
    } else {
        softplus_with_candle_ops(x)
    }
}

/// 1 where x > `threshold`, else 0, as f32 (the VAE's binarised pixels), with no gradient.
/// One pass, shared between the threads for large batches, where candle makes a u8 mask
/// and then converts it, both on one thread (6% of a VAE step at batch 256).
pub fn above(x: &Tensor, threshold: f32) -> Result<Tensor> {
    if fast_path(x) {
        x.contiguous()?.apply_op1_no_bwd(&Above(threshold))
    } else {
        x.gt(f64::from(threshold))?.to_dtype(DType::F32)
    }
}

struct Above(f32);

impl CustomOp1 for Above {
    fn name(&self) -> &'static str {
        "genmod-above"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, "threshold")?;
        let t = self.0;
        let mut out = vec![0f32; x.len()];
        let run = |(o, x): (&mut [f32], &[f32])| {
            o.iter_mut()
                .zip(x)
                .for_each(|(o, &x)| *o = if x > t { 1.0 } else { 0.0 })
        };
        if x.len() >= 2 * ABOVE_BLOCK {
            out.par_chunks_mut(ABOVE_BLOCK)
                .zip(x.par_chunks(ABOVE_BLOCK))
                .for_each(run);
        } else {
            run((&mut out, x));
        }
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }
}

/// Values per task of [`above`]'s parallel pass.
const ABOVE_BLOCK: usize = 32 * 1024;

/// The same formula in candle's tensor ops: the path off the CPU, and the tests' reference.
fn softplus_with_candle_ops(x: &Tensor) -> Result<Tensor> {
    x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// The fused threshold gives candle's `gt` mask as f32, on a batch small enough for one
    /// pass and one large enough to be shared, NaN and values at the threshold included.
    #[test]
    fn above_matches_candles_mask() {
        for len in [1000, 3 * ABOVE_BLOCK + 17] {
            let mut v: Vec<f32> = (0..len)
                .map(|i| ((i as f32) * 0.37).sin() * 0.6 + 0.5)
                .collect();
            v[3] = 0.5;
            v[7] = f32::NAN;
            let x = Tensor::from_vec(v, len, &Device::Cpu).unwrap();
            let fused: Vec<f32> = above(&x, 0.5).unwrap().to_vec1().unwrap();
            let plain: Vec<f32> = x
                .gt(0.5)
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap()
                .to_vec1()
                .unwrap();
            assert_eq!(fused, plain);
            assert_eq!((fused[3], fused[7]), (0.0, 0.0));
            assert!(fused.contains(&1.0) && fused.contains(&0.0));
        }
    }

    /// Values and gradients of the fused op against candle's composite formula.
    fn agrees(fused: fn(&Tensor) -> Result<Tensor>, plain: fn(&Tensor) -> Result<Tensor>) {
        // Half-integer steps keep x = 0 out, where the composite formulas pick a side arbitrarily.
        let xs: Vec<f32> = (-40..40).map(|i| (i as f32 + 0.5) * 0.37).collect();
        let n = xs.len();
        let weights: Vec<f32> = (0..n).map(|i| (i as f32 * 0.7).sin()).collect();
        let w = Tensor::from_vec(weights, n, &Device::Cpu).unwrap();
        let mut out = Vec::new();
        for f in [fused, plain] {
            let x = Var::from_vec(xs.clone(), n, &Device::Cpu).unwrap();
            let y = f(x.as_tensor()).unwrap();
            // A weighted sum, so each element's gradient is its own weight times f′(x).
            let loss = (&y * &w).unwrap().sum_all().unwrap();
            let g = loss.backward().unwrap();
            let gx = g.get(x.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
            out.push((y.to_vec1::<f32>().unwrap(), gx));
        }
        for (i, x) in xs.iter().enumerate() {
            assert!((out[0].0[i] - out[1].0[i]).abs() < 1e-5, "value at {x}");
            assert!((out[0].1[i] - out[1].1[i]).abs() < 1e-5, "gradient at {x}");
        }
    }

    #[test]
    fn leaky_relu_matches_candles_composite_in_value_and_gradient() {
        agrees(
            |x| leaky_relu(x, 0.2),
            |x| candle_nn::ops::leaky_relu(x, 0.2),
        );
    }

    #[test]
    fn softplus_matches_the_composite_formula_in_value_and_gradient() {
        agrees(softplus, |x| {
            x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?
        });
    }

    #[test]
    fn row_cross_entropy_matches_the_composite_formula_in_value_and_gradient() {
        // 13 columns: eight lanes and a scalar tail of five; the logit of 90 is in the lanes.
        let (rows, cols) = (3, 13);
        let ls: Vec<f32> = (0..rows * cols)
            .map(|i| (i as f32 - 7.0) * 2.9 + if i == 4 { 90.0 } else { 0.0 })
            .collect();
        let xs: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 7) % 3) as f32 / 2.0)
            .collect();
        let x = Tensor::from_vec(xs, (rows, cols), &Device::Cpu).unwrap();
        let row_weights = Tensor::new(&[0.5f32, -1.0, 2.0], &Device::Cpu).unwrap();
        let mut out = Vec::new();
        for fused in [true, false] {
            let l = Var::from_vec(ls.clone(), (rows, cols), &Device::Cpu).unwrap();
            let per_row = if fused {
                bce_with_logits_rows(l.as_tensor(), &x).unwrap().unwrap()
            } else {
                let l = l.as_tensor();
                (softplus_with_candle_ops(l).unwrap() - (l * &x).unwrap())
                    .unwrap()
                    .sum(1)
                    .unwrap()
            };
            let g = (&per_row * &row_weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let gl = g.get(l.as_tensor()).unwrap().flatten_all().unwrap();
            out.push((
                per_row.to_vec1::<f32>().unwrap(),
                gl.to_vec1::<f32>().unwrap(),
            ));
        }
        for (a, b) in out[0].0.iter().zip(&out[1].0) {
            assert!(
                (a - b).abs() < 1e-4 * b.abs().max(1.0),
                "row value {a} vs {b}"
            );
        }
        for (a, b) in out[0].1.iter().zip(&out[1].1) {
            assert!((a - b).abs() < 1e-5, "logit gradient {a} vs {b}");
        }
    }

    #[test]
    fn works_on_non_contiguous_input() {
        let x = Tensor::arange(-6f32, 6., &Device::Cpu)
            .unwrap()
            .reshape((3, 4))
            .unwrap()
            .t()
            .unwrap();
        let got = leaky_relu(&x, 0.5).unwrap().to_vec2::<f32>().unwrap();
        let want = candle_nn::ops::leaky_relu(&x, 0.5)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(got, want);
    }
}
