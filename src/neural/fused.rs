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
        x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

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
