//! An exponential moving average of the generator's weights, used for sampling (Yazıcı et
//! al., "The Unusual Effectiveness of Averaging in GAN Training", ICLR 2019). A GAN's
//! generator circles around a good point rather than settling on it; the average of its
//! recent weights sits nearer that point, so its samples are cleaner than the last step's,
//! at no cost to training, which still updates the live weights.
//!
//! The averages are variables of the model's `VarMap` under `ema.` + the weight's name,
//! so checkpoints save and restore them with the weights.

use super::kernels::cpu::{f32_slice, f32_slice_mut};
use super::layers::ParamStore;
use candle_core::{CpuStorage, DType, InplaceOp2, Layout, Result, Var};
use rayon::prelude::*;

/// The prefix of the averaged copies in the `VarMap`.
pub const PREFIX: &str = "ema.";

/// The averaged copies of some weights, and how fast they follow.
pub struct Ema {
    decay: f64,
    /// (live weight, its average), in name order.
    pairs: Vec<(Var, Var)>,
}

impl Ema {
    /// Adds an average for each of `weights` (name, variable) to the model's parameters,
    /// starting at the weight's value (also after the store draws the weights again).
    /// `decay` in (0, 1): the share of the old average kept each step.
    pub fn new(params: &ParamStore, weights: &[(String, Var)], decay: f64) -> Result<Self> {
        let mut pairs = Vec::with_capacity(weights.len());
        for (name, live) in weights {
            let avg = Var::from_tensor(&live.as_tensor().copy()?)?;
            params.add_copy(format!("{PREFIX}{name}"), name, avg.clone());
            pairs.push((live.clone(), avg));
        }
        Ok(Self { decay, pairs })
    }

    /// Folds the live weights into the averages after optimiser step `t` (counting from 1).
    /// Early on the decay is lowered to (1 + t) / (10 + t), so the average forgets the
    /// random initial weights within the first hundred steps instead of thousands.
    pub fn update(&self, t: u64) -> Result<()> {
        let t = t as f64;
        let decay = self.decay.min((1.0 + t) / (10.0 + t));
        for (live, avg) in &self.pairs {
            let (a, l) = (avg.as_tensor(), live.as_tensor());
            if a.device().is_cpu() && a.dtype() == DType::F32 && a.is_contiguous() {
                a.inplace_op2(l, &Fold::new(decay))?;
            } else {
                avg.set(&((a * decay)? + (l * (1.0 - decay))?)?)?;
            }
        }
        Ok(())
    }

    /// Runs `f` with the averages in place of the live weights, then puts the live ones
    /// back (also when `f` fails).
    pub fn with_averages<R>(&self, f: impl FnOnce() -> Result<R>) -> Result<R> {
        let saved = self
            .pairs
            .iter()
            .map(|(live, _)| live.as_tensor().copy())
            .collect::<Result<Vec<_>>>()?;
        for (live, avg) in &self.pairs {
            live.set(avg.as_tensor())?;
        }
        let out = f();
        for ((live, _), value) in self.pairs.iter().zip(&saved) {
            live.set(value)?;
        }
        out
    }
}

/// avg ← decay·avg + (1 − decay)·live in one pass over the average's own storage. The
/// tensor formula made three temporaries the size of G and copied the last one in: on the
/// MLP GANs' 1.4 million weights, several milliseconds of a step of about ten. The
/// arithmetic is the formula's (each product rounded, then 0 added as candle's scalar
/// multiply does, then the sum), so the averages are the same bits.
struct Fold {
    keep: f32,
    take: f32,
}

impl Fold {
    fn new(decay: f64) -> Self {
        Self {
            keep: decay as f32,
            take: (1.0 - decay) as f32,
        }
    }

    fn apply(&self, avg: &mut [f32], live: &[f32]) {
        for (a, l) in avg.iter_mut().zip(live) {
            *a = (*a * self.keep + 0.0) + (*l * self.take + 0.0);
        }
    }
}

/// Values per parallel task of the fold.
const FOLD_BLOCK: usize = 16 * 1024;

impl InplaceOp2 for Fold {
    fn name(&self) -> &'static str {
        "genmod-moving-average"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let avg = f32_slice_mut(s1, l1, "moving average")?;
        let live = f32_slice(s2, l2, "moving average")?;
        if avg.len() != live.len() {
            candle_core::bail!(
                "moving average: {} averaged values for {} weights",
                avg.len(),
                live.len()
            );
        }
        if avg.len() >= 2 * FOLD_BLOCK {
            avg.par_chunks_mut(FOLD_BLOCK)
                .zip(live.par_chunks(FOLD_BLOCK))
                .for_each(|(a, l)| self.apply(a, l));
        } else {
            self.apply(avg, live);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Tensor};

    /// The in-place fold gives the tensor formula's bits, on a tensor large enough to be
    /// folded in parallel.
    #[test]
    fn the_in_place_fold_is_the_formula() {
        let n = 3 * FOLD_BLOCK + 5;
        let values = |seed: u32| -> Vec<f32> {
            (0..n as u32)
                .map(|i| ((i.wrapping_mul(2654435761) ^ seed) % 2001) as f32 / 1000.0 - 1.0)
                .collect()
        };
        let avg = Tensor::from_vec(values(1), n, &Device::Cpu).unwrap();
        let live = Tensor::from_vec(values(2), n, &Device::Cpu).unwrap();
        for decay in [0.999, 0.5, 2.0 / 11.0] {
            let want = ((&avg * decay).unwrap() + (&live * (1.0 - decay)).unwrap())
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let folded = avg.copy().unwrap();
            folded.inplace_op2(&live, &Fold::new(decay)).unwrap();
            let got = folded.to_vec1::<f32>().unwrap();
            assert!(
                got.iter()
                    .zip(&want)
                    .all(|(g, w)| g.to_bits() == w.to_bits()),
                "decay {decay}"
            );
        }
    }

    #[test]
    fn the_average_follows_the_weights_and_sampling_restores_them() {
        let params = ParamStore::new();
        let varmap = params.varmap().clone();
        let w = Var::from_tensor(&Tensor::new(&[0f32, 10.0], &Device::Cpu).unwrap()).unwrap();
        varmap
            .data()
            .lock()
            .unwrap()
            .insert("g.w".into(), w.clone());
        let ema = Ema::new(&params, &[("g.w".into(), w.clone())], 0.5).unwrap();
        assert!(varmap.data().lock().unwrap().contains_key("ema.g.w"));
        // Step 1: the warm-up decay (1 + 1) / (10 + 1) = 2/11 is below 0.5.
        w.set(&Tensor::new(&[11f32, 21.0], &Device::Cpu).unwrap())
            .unwrap();
        ema.update(1).unwrap();
        let d = 2.0 / 11.0;
        let want = [11.0 * (1.0 - d), 10.0 * d + 21.0 * (1.0 - d)];
        let got = ema
            .with_averages(|| w.as_tensor().to_vec1::<f32>())
            .unwrap();
        for (g, w) in got.iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-5, "{got:?} vs {want:?}");
        }
        // The live weights are back after sampling.
        assert_eq!(w.as_tensor().to_vec1::<f32>().unwrap(), [11.0, 21.0]);
        // Late in training the configured decay applies.
        ema.update(1000).unwrap();
        let avg = varmap.data().lock().unwrap()["ema.g.w"]
            .as_tensor()
            .to_dtype(DType::F64)
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        assert!(
            (avg[0] - (0.5 * want[0] + 0.5 * 11.0)).abs() < 1e-4,
            "{avg:?}"
        );
    }
}
