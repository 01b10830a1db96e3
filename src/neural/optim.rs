//! Adam (Kingma and Ba 2015) with decoupled weight decay, whose moment estimates can be
//! saved and restored: candle's own AdamW keeps them private, and a checkpoint that drops
//! them does not continue the same training curve.

use super::kernels::cpu::{f32_slice, f32_slice_mut};
use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, DType, InplaceOp1, InplaceOp2, Layout, Result, Tensor, Var};
use rayon::prelude::*;
use std::cell::RefCell;
use std::collections::HashMap;

/// Parameters per task when an update is spread over the threads: a weight matrix of the
/// VAE (313,600 values) was updated on one core while the other waited.
const PARALLEL_BLOCK: usize = 16 * 1024;

/// Hyperparameters of Adam.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Decoupled weight decay (AdamW); 0 for plain Adam, as GANs want.
    pub weight_decay: f64,
}

impl AdamConfig {
    /// Adam as a model's configuration asks: its learning rate and both moment decays.
    pub fn of(cfg: &super::NeuralConfig) -> Self {
        Self {
            beta2: cfg.beta2,
            ..Self::new(cfg.lr, cfg.beta1)
        }
    }

    /// Adam with the given learning rate and first-moment decay, no weight decay.
    pub fn new(lr: f64, beta1: f64) -> Self {
        Self {
            lr,
            beta1,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// Adam over a named set of variables.
pub struct Adam {
    vars: Vec<(String, Var)>,
    m: Vec<Var>,
    v: Vec<Var>,
    /// Steps taken (for the bias correction).
    pub t: u64,
    pub config: AdamConfig,
}

impl Adam {
    pub fn new(vars: Vec<(String, Var)>, config: AdamConfig) -> Result<Self> {
        let m = vars
            .iter()
            .map(|(_, v)| Var::zeros(v.shape(), v.dtype(), v.device()))
            .collect::<Result<Vec<_>>>()?;
        let v = vars
            .iter()
            .map(|(_, v)| Var::zeros(v.shape(), v.dtype(), v.device()))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            vars,
            m,
            v,
            t: 0,
            config,
        })
    }

    /// The variables this optimiser updates.
    pub fn vars(&self) -> impl Iterator<Item = &Var> {
        self.vars.iter().map(|(_, v)| v)
    }

    /// One update from `grads`; variables without a gradient are left alone.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.t += 1;
        let c = self.config;
        let bc1 = 1.0 - c.beta1.powi(self.t as i32);
        let bc2 = 1.0 - c.beta2.powi(self.t as i32);
        let step = c.lr / bc1;
        for (i, (_, var)) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            if fused_step_applies(var.as_tensor(), g) {
                // One pass over weights, moments and gradient, in place: no allocation.
                let g = g.contiguous()?;
                var.inplace_op1(&WithWeights {
                    m: &self.m[i],
                    v: &self.v[i],
                    g: &g,
                    rule: Rule {
                        beta1: c.beta1 as f32,
                        beta2: c.beta2 as f32,
                        step: step as f32,
                        inv_sqrt_bc2: (1.0 / bc2.sqrt()) as f32,
                        eps: c.eps as f32,
                        shrink: (1.0 - c.lr * c.weight_decay) as f32,
                    },
                })?;
                continue;
            }
            let m = ((self.m[i].as_tensor() * c.beta1)? + (g * (1.0 - c.beta1))?)?;
            let v = ((self.v[i].as_tensor() * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let denom = ((&v / bc2)?.sqrt()? + c.eps)?;
            let mut w = var.as_tensor().clone();
            if c.weight_decay != 0.0 {
                w = (&w * (1.0 - c.lr * c.weight_decay))?;
            }
            let w = (w - ((&m / &denom)? * step)?)?;
            self.m[i].set(&m)?;
            self.v[i].set(&v)?;
            var.set(&w)?;
        }
        Ok(())
    }

    /// The moments, keyed `PREFIX.m.NAME` and `PREFIX.v.NAME`, for a checkpoint.
    pub fn state(&self, prefix: &str) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (i, (name, _)) in self.vars.iter().enumerate() {
            out.insert(format!("{prefix}.m.{name}"), self.m[i].as_tensor().clone());
            out.insert(format!("{prefix}.v.{name}"), self.v[i].as_tensor().clone());
        }
        out
    }

    /// The names and shapes [`Adam::state`] writes, so that a checkpoint's file can be
    /// checked against them before anything in it is loaded.
    pub fn state_shapes(&self, prefix: &str) -> Vec<(String, Vec<usize>)> {
        self.vars
            .iter()
            .enumerate()
            .flat_map(|(i, (name, _))| {
                ["m", "v"]
                    .map(|kind| (format!("{prefix}.{kind}.{name}"), self.m[i].dims().to_vec()))
            })
            .collect()
    }

    /// Restores the moments saved by [`Adam::state`]; every one must be present.
    pub fn load_state(
        &mut self,
        prefix: &str,
        state: &HashMap<String, Tensor>,
        t: u64,
    ) -> Result<()> {
        for (i, (name, _)) in self.vars.iter().enumerate() {
            for (kind, store) in [("m", &self.m[i]), ("v", &self.v[i])] {
                let key = format!("{prefix}.{kind}.{name}");
                let t = state.get(&key).ok_or_else(|| {
                    candle_core::Error::Msg(format!("optimiser state lacks `{key}`"))
                })?;
                store.set(t)?;
            }
        }
        self.t = t;
        Ok(())
    }
}

/// Whether the in-place CPU update can serve this variable (f32, contiguous, on the CPU);
/// otherwise the tensor-op formula runs, on any device.
fn fused_step_applies(var: &Tensor, g: &Tensor) -> bool {
    var.device().is_cpu()
        && var.dtype() == DType::F32
        && g.dtype() == DType::F32
        && var.is_contiguous()
        && var.shape() == g.shape()
}

// Adam's update in one pass. candle lets an in-place op write only the tensor it is called
// on, so three ops are nested: the one on the weights hands their slice to one on the first
// moment, which hands both to one on the second moment, where the loop runs. Three separate
// passes (one per moment, one for the weights) read the moments twice and the gradient
// twice; on an MLP GAN step they were 6.5% of the time.

/// The update's constants for one step.
#[derive(Clone, Copy)]
struct Rule {
    beta1: f32,
    beta2: f32,
    /// lr / (1 − β₁ᵗ)
    step: f32,
    /// 1 / √(1 − β₂ᵗ): √(v / (1 − β₂ᵗ)) is taken as √v times this per-step constant, so
    /// that each weight costs a multiplication instead of a division; the update touches
    /// every weight every step, so each operation per weight shows in the step time
    inv_sqrt_bc2: f32,
    eps: f32,
    /// 1 − lr · weight decay
    shrink: f32,
}

impl Rule {
    /// m ← β₁m + (1 − β₁)g, v ← β₂v + (1 − β₂)g², w ← shrink·w − step·m / (√(v / bc2) + eps)
    /// with bc2 = 1 − β₂ᵗ.
    fn apply(&self, w: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32]) {
        let (b1, b2) = (self.beta1, self.beta2);
        let (c1, c2) = (1.0 - b1, 1.0 - b2);
        for (((w, m), v), &g) in w.iter_mut().zip(m).zip(v).zip(g) {
            *m = b1 * *m + c1 * g;
            *v = b2 * *v + c2 * g * g;
            *w = self.shrink * *w - self.step * *m / (v.sqrt() * self.inv_sqrt_bc2 + self.eps);
        }
    }
}

/// Called on the weights.
struct WithWeights<'a> {
    m: &'a Var,
    v: &'a Var,
    g: &'a Tensor,
    rule: Rule,
}

/// Called on the first moment, with the gradient as argument.
struct WithFirstMoment<'a> {
    w: RefCell<&'a mut [f32]>,
    v: &'a Var,
    rule: Rule,
}

/// Called on the second moment: runs the loop.
struct WithSecondMoment<'a, 'w> {
    w: &'a RefCell<&'w mut [f32]>,
    m: RefCell<&'a mut [f32]>,
    g: &'a [f32],
    rule: Rule,
}

impl InplaceOp1 for WithWeights<'_> {
    fn name(&self) -> &'static str {
        "genmod-adam"
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> Result<()> {
        let w = f32_slice_mut(s, l, "Adam")?;
        self.m.inplace_op2(
            self.g,
            &WithFirstMoment {
                w: RefCell::new(w),
                v: self.v,
                rule: self.rule,
            },
        )
    }
}

impl InplaceOp2 for WithFirstMoment<'_> {
    fn name(&self) -> &'static str {
        "genmod-adam"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let m = f32_slice_mut(s1, l1, "Adam")?;
        let g = f32_slice(s2, l2, "Adam")?;
        self.v.inplace_op1(&WithSecondMoment {
            w: &self.w,
            m: RefCell::new(m),
            g,
            rule: self.rule,
        })
    }
}

impl InplaceOp1 for WithSecondMoment<'_, '_> {
    fn name(&self) -> &'static str {
        "genmod-adam"
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> Result<()> {
        let v = f32_slice_mut(s, l, "Adam")?;
        let mut w = self.w.borrow_mut();
        let mut m = self.m.borrow_mut();
        let (w, m, g) = (&mut **w, &mut **m, self.g);
        if m.len() != w.len() || v.len() != w.len() || g.len() != w.len() {
            candle_core::bail!(
                "Adam: {} weights, moments of {} and {}, {} gradients",
                w.len(),
                m.len(),
                v.len(),
                g.len()
            );
        }
        let rule = self.rule;
        if w.len() >= 2 * PARALLEL_BLOCK {
            w.par_chunks_mut(PARALLEL_BLOCK)
                .zip(m.par_chunks_mut(PARALLEL_BLOCK))
                .zip(
                    v.par_chunks_mut(PARALLEL_BLOCK)
                        .zip(g.par_chunks(PARALLEL_BLOCK)),
                )
                .for_each(|((w, m), (v, g))| rule.apply(w, m, v, g));
        } else {
            rule.apply(w, m, v, g);
        }
        Ok(())
    }
}

/// √(Σ ‖g‖²) over the gradients of `vars`: how strongly a loss pushes those parameters.
pub fn grad_norm<'a>(grads: &GradStore, vars: impl Iterator<Item = &'a Var>) -> Result<f64> {
    let mut total = 0.0;
    for v in vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            total += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
        }
    }
    Ok(total.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn a_models_adam_takes_both_decays_from_its_config_and_old_configs_get_0_999() {
        use crate::neural::{ModelKind, NeuralConfig};
        let mut cfg = NeuralConfig::new(ModelKind::Dcgan);
        cfg.beta2 = 0.99;
        let adam = AdamConfig::of(&cfg);
        assert_eq!((adam.lr, adam.beta1, adam.beta2), (4e-4, 0.5, 0.99));
        // A checkpoint written before the field existed has no "beta2".
        let mut json = serde_json::to_value(&cfg).unwrap();
        json.as_object_mut().unwrap().remove("beta2");
        let old: NeuralConfig = serde_json::from_value(json).unwrap();
        assert_eq!(old.beta2, 0.999);
    }

    #[test]
    fn first_step_moves_each_weight_by_lr_against_its_gradient_sign() {
        // With bias correction Adam's first step is lr · g / (|g| + eps) ≈ lr · sign(g).
        let w = Var::from_vec(vec![1.0f32, -2.0, 3.0], 3, &Device::Cpu).unwrap();
        let mut opt = Adam::new(vec![("w".into(), w.clone())], AdamConfig::new(0.1, 0.9)).unwrap();
        let target = Tensor::new(&[0.0f32, 0.0, 10.0], &Device::Cpu).unwrap();
        let loss = (w.as_tensor() - &target)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap();
        opt.step(&loss.backward().unwrap()).unwrap();
        let got = w.as_tensor().to_vec1::<f32>().unwrap();
        for (g, want) in got.iter().zip([0.9f32, -1.9, 3.1]) {
            assert!((g - want).abs() < 1e-5, "{got:?}");
        }
        assert_eq!(opt.t, 1);
        let s = opt.state("g");
        assert_eq!(s["g.m.w"].dtype(), DType::F32);
    }

    #[test]
    fn in_place_cpu_update_matches_the_tensor_formula() {
        // f32 takes the in-place path, f64 the tensor-op path: same data, same steps. 40,000
        // values are enough for the in-place update to split the work over threads.
        let n = 40_000;
        let start: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin() * 3.0).collect();
        let mut cfg = AdamConfig::new(0.01, 0.5);
        cfg.weight_decay = 0.1;
        let as_f64 = |t: &Tensor| t.to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap();
        let run = |dtype: DType| -> Vec<Vec<f64>> {
            let w = Var::from_vec(start.clone(), n, &Device::Cpu)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let w = Var::from_tensor(&w).unwrap();
            let mut opt = Adam::new(vec![("w".into(), w.clone())], cfg).unwrap();
            for _ in 0..25 {
                let loss = (w.as_tensor().sqr().unwrap() * w.as_tensor().sin().unwrap())
                    .unwrap()
                    .sum_all()
                    .unwrap();
                opt.step(&loss.backward().unwrap()).unwrap();
            }
            let state = opt.state("o");
            vec![
                as_f64(w.as_tensor()),
                as_f64(&state["o.m.w"]),
                as_f64(&state["o.v.w"]),
            ]
        };
        let (fast, plain) = (run(DType::F32), run(DType::F64));
        assert_ne!(fast[0], start, "the weights moved");
        for (what, (a, b)) in ["weights", "first moment", "second moment"]
            .iter()
            .zip(fast.iter().zip(&plain))
        {
            let scale = b.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() < 1e-4 * scale, "{what}: {x} vs {y}");
            }
        }
    }

    #[test]
    fn minimises_a_quadratic() {
        let w = Var::from_vec(vec![5.0f32, -4.0], 2, &Device::Cpu).unwrap();
        let mut opt = Adam::new(vec![("w".into(), w.clone())], AdamConfig::new(0.05, 0.9)).unwrap();
        for _ in 0..400 {
            let loss = w.as_tensor().sqr().unwrap().sum_all().unwrap();
            opt.step(&loss.backward().unwrap()).unwrap();
        }
        let got = w.as_tensor().to_vec1::<f32>().unwrap();
        assert!(got.iter().all(|v| v.abs() < 0.05), "{got:?}");
    }
}
