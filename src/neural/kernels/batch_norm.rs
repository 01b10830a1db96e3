//! Batch normalisation in training mode, fused for the CPU.
//!
//! candle_nn's `BatchNorm::forward_train` is a dozen tensor ops (transpose, copy, mean,
//! broadcast subtract, square, mean, add, sqrt, broadcast divide, broadcast multiply and
//! add, transpose back), each with a backward node; after the convolutions became GEMMs
//! (see [`super::conv`]) those element-wise passes were the largest cost of a DCGAN step.
//! Here the forward is one custom op over (x, γ, β) and its backward the textbook formula in
//! one more pass (Ioffe and Szegedy 2015, section 3):
//!
//! dβ = Σ g, dγ = Σ g·x̂, dx = γ/σ · (g − dβ/M − x̂·dγ/M), with M = N·H·W values per channel.
//!
//! The running averages are updated exactly as candle does (momentum, unbiased variance), so
//! checkpoints and evaluation mode are unchanged. Other devices and dtypes use candle's layer.

use super::cpu::{f32_slice, f32_slice_mut, lane_sum};
use super::linear::Activation;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use candle_nn::{BatchNorm, ModuleT};
use rayon::prelude::*;
use std::sync::Arc;

/// Per-channel mean and biased variance of an (N, C, spatial) buffer: two passes (mean,
/// then squared deviations, which keeps the variance accurate when the mean is large),
/// channels spread over the threads.
fn channel_stats(x: &[f32], n: usize, c: usize, spatial: usize) -> Vec<(f64, f64)> {
    let m = (n * spatial) as f64;
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let planes = (0..n).map(|i| &x[(i * c + ch) * spatial..][..spatial]);
            let mean = planes.clone().map(|p| lane_sum(p, |v| v)).sum::<f64>() / m;
            let mf = mean as f32;
            let var = planes
                .map(|p| lane_sum(p, |v| (v - mf) * (v - mf)))
                .sum::<f64>()
                / m;
            (mean, var)
        })
        .collect()
}

/// The shape (N, C, spatial) of a batch-norm input.
fn dims(l: &Layout) -> Result<(usize, usize, usize)> {
    let d = l.dims();
    if d.len() < 2 {
        candle_core::bail!("batch norm needs at least two dimensions, got {d:?}");
    }
    Ok((d[0], d[1], d[2..].iter().product()))
}

/// (x, γ, β) → act(γ·x̂ + β) with batch statistics.
struct Forward {
    eps: f64,
    act: Activation,
    /// Each channel's batch mean and biased variance of x, computed once in [`forward_t`]
    /// and shared by the running averages, this pass and the backward pass.
    stats: Arc<[(f64, f64)]>,
}

impl CustomOp3 for Forward {
    fn name(&self) -> &'static str {
        "genmod-batch-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, gamma, beta) = (
            f32_slice(s1, l1, "batch norm")?,
            f32_slice(s2, l2, "batch norm")?,
            f32_slice(s3, l3, "batch norm")?,
        );
        let (_, c, spatial) = dims(l1)?;
        if self.stats.len() != c {
            candle_core::bail!(
                "batch norm: statistics for {} channels, input has {c}",
                self.stats.len()
            );
        }
        // y = x·scale + shift per channel, images spread over the threads.
        let affine: Vec<(f32, f32)> = self
            .stats
            .iter()
            .enumerate()
            .map(|(ch, &(mean, var))| {
                let scale = gamma[ch] as f64 / (var + self.eps).sqrt();
                (scale as f32, (beta[ch] as f64 - mean * scale) as f32)
            })
            .collect();
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(c * spatial)
            .zip(x.par_chunks(c * spatial))
            .for_each(|(yi, xi)| {
                for ((yp, xp), &(scale, shift)) in
                    yi.chunks_mut(spatial).zip(xi.chunks(spatial)).zip(&affine)
                {
                    self.act.affine_into(yp, xp, scale, shift);
                }
            });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let c = x.dim(1)?;
        let grad = grad.contiguous()?;
        // Through the activation first; its derivative is read from the output.
        let grad = self.act.backward(y, &grad)?;
        let backward = Backward {
            eps: self.eps,
            stats: self.stats.clone(),
        };
        let packed = x.apply_op3_no_bwd(&grad, gamma, &backward)?;
        let total = x.elem_count();
        let dx = packed.narrow(0, 0, total)?.reshape(x.shape())?;
        let dgamma = packed.narrow(0, total, c)?;
        let dbeta = packed.narrow(0, total + c, c)?;
        // Frozen γ and β record no graph: hand back only what someone reads.
        Ok((
            x.track_op().then_some(dx),
            gamma.track_op().then_some(dgamma),
            beta.track_op().then_some(dbeta),
        ))
    }
}

/// (x, upstream gradient, γ) → [dx (flattened), dγ, dβ] in one buffer.
struct Backward {
    eps: f64,
    /// The forward pass's statistics of the same x.
    stats: Arc<[(f64, f64)]>,
}

impl CustomOp3 for Backward {
    fn name(&self) -> &'static str {
        "genmod-batch-norm-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, g, gamma) = (
            f32_slice(s1, l1, "batch norm")?,
            f32_slice(s2, l2, "batch norm")?,
            f32_slice(s3, l3, "batch norm")?,
        );
        let (n, c, spatial) = dims(l1)?;
        let m = (n * spatial) as f64;
        let stats = &self.stats;
        if stats.len() != c {
            candle_core::bail!(
                "batch norm: statistics for {} channels, input has {c}",
                stats.len()
            );
        }
        // Per channel: dβ = Σ g and dγ = Σ g·x̂ (channels over the threads) ...
        let sums: Vec<(f64, f64)> = stats
            .par_iter()
            .enumerate()
            .map(|(ch, &(mean, var))| {
                let inv_std = 1.0 / (var + self.eps).sqrt();
                let (mut dbeta, mut dcentred) = (0f64, 0f64);
                let mf = mean as f32;
                for i in 0..n {
                    let o = (i * c + ch) * spatial;
                    let (xp, gp) = (&x[o..o + spatial], &g[o..o + spatial]);
                    dbeta += lane_sum(gp, |v| v);
                    let mut lanes = [0f32; 8];
                    let (xc, gc) = (xp.chunks_exact(8), gp.chunks_exact(8));
                    let tail: f32 = xc
                        .remainder()
                        .iter()
                        .zip(gc.remainder())
                        .map(|(&xv, &gv)| gv * (xv - mf))
                        .sum();
                    for (xs, gs) in xc.zip(gc) {
                        for ((l, &xv), &gv) in lanes.iter_mut().zip(xs).zip(gs) {
                            *l += gv * (xv - mf);
                        }
                    }
                    dcentred += lanes.iter().map(|&l| l as f64).sum::<f64>() + tail as f64;
                }
                (dbeta, dcentred * inv_std)
            })
            .collect();
        // ... then dx = γ/σ · (g − dβ/M − x̂·dγ/M), images over the threads.
        let coef: Vec<(f32, f32, f32, f32)> = stats
            .iter()
            .zip(&sums)
            .enumerate()
            .map(|(ch, (&(mean, var), &(dbeta, dgamma)))| {
                let inv_std = 1.0 / (var + self.eps).sqrt();
                let k = gamma[ch] as f64 * inv_std;
                // dx = k·g − k·dβ/M − k·dγ/M·inv_std·(x − mean)
                (
                    k as f32,
                    (k * dbeta / m) as f32,
                    (k * dgamma / m * inv_std) as f32,
                    mean as f32,
                )
            })
            .collect();
        let mut out = vec![0f32; x.len() + 2 * c];
        out[..x.len()]
            .par_chunks_mut(c * spatial)
            .zip(x.par_chunks(c * spatial).zip(g.par_chunks(c * spatial)))
            .for_each(|(di, (xi, gi))| {
                for (((dp, xp), gp), &(k, shift, slope, mean)) in di
                    .chunks_mut(spatial)
                    .zip(xi.chunks(spatial))
                    .zip(gi.chunks(spatial))
                    .zip(&coef)
                {
                    for ((d, &xv), &gv) in dp.iter_mut().zip(xp).zip(gp) {
                        *d = k * gv - shift - slope * (xv - mean);
                    }
                }
            });
        for (ch, &(dbeta, dgamma)) in sums.iter().enumerate() {
            out[x.len() + ch] = dgamma as f32;
            out[x.len() + c + ch] = dbeta as f32;
        }
        Ok((CpuStorage::F32(out), Shape::from(x.len() + 2 * c)))
    }
}

/// `act(bn.forward_t(x, train))`, with the training-mode pass fused on the CPU (the
/// activation that follows batch norm in both DCGAN nets costs no extra pass or backward
/// node). In training the running mean and variance are updated as candle would. With
/// `frozen`, the fused pass computes no gradient for γ and β (a discriminator seen by the
/// generator's step); off the fused path they are computed and left unread.
pub fn forward_t(
    bn: &BatchNorm,
    x: &Tensor,
    train: bool,
    frozen: bool,
    act: Activation,
) -> Result<Tensor> {
    let fused = train
        && x.device().is_cpu()
        && x.dtype() == DType::F32
        && x.rank() >= 2
        && x.elem_count() > x.dim(1)?;
    let Some((gamma, beta)) = bn.weight_and_bias().filter(|_| fused) else {
        return act.apply(&bn.forward_t(x, train)?);
    };
    let x = x.contiguous()?;
    let stats: Arc<[(f64, f64)]> = {
        let (storage, layout) = x.storage_and_layout();
        let candle_core::Storage::Cpu(cpu) = &*storage else {
            candle_core::bail!("batch norm: expected a CPU tensor");
        };
        let (n, c, spatial) = dims(layout)?;
        channel_stats(f32_slice(cpu, layout, "batch norm")?, n, c, spatial).into()
    };
    // Running averages from the batch statistics (no graph).
    let m = x.elem_count() / x.dim(1)?;
    let column = |f: fn(&(f64, f64)) -> f64| {
        let values: Vec<f32> = stats.iter().map(|s| f(s) as f32).collect();
        Tensor::from_vec(values, stats.len(), x.device())
    };
    let (mean, var) = (column(|s| s.0)?, column(|s| s.1)?);
    let mom = bn.momentum();
    let rm = bn.running_mean();
    let rv = bn.running_var();
    let new_mean = ((rm * (1.0 - mom))? + (&mean * mom)?)?;
    let new_var = ((rv * (1.0 - mom))? + (&var * (mom * m as f64 / (m as f64 - 1.0)))?)?;
    running_set(rm, &new_mean)?;
    running_set(rv, &new_var)?;
    let (gamma, beta) = match frozen {
        true => (gamma.detach(), beta.detach()),
        false => (gamma.clone(), beta.clone()),
    };
    x.apply_op3(
        &gamma,
        &beta,
        Forward {
            eps: bn.eps(),
            act,
            stats,
        },
    )
}

/// Writes `value` into a running-statistics tensor in place (it is a variable in the VarMap,
/// saved with checkpoints).
fn running_set(target: &Tensor, value: &Tensor) -> Result<()> {
    let value = value.to_dtype(target.dtype())?.contiguous()?;
    target.inplace_op2(&value, &CopyFrom)
}

struct CopyFrom;

impl candle_core::InplaceOp2 for CopyFrom {
    fn name(&self) -> &'static str {
        "genmod-copy-from"
    }
    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let src = f32_slice(s2, l2, "batch norm")?;
        let dst = f32_slice_mut(s1, l1, "batch norm")?;
        if dst.len() != src.len() {
            candle_core::bail!("batch norm: {} running values for {}", dst.len(), src.len());
        }
        dst.copy_from_slice(src);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use candle_nn::{VarBuilder, VarMap};

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    #[test]
    fn matches_candles_batch_norm_in_output_gradients_and_running_statistics() {
        for act in [
            Activation::Identity,
            Activation::Relu,
            Activation::LeakyRelu(0.2),
        ] {
            agrees_with_candle(act);
        }
    }

    /// The fused op against candle's layer followed by candle's activation.
    fn agrees_with_candle(act: Activation) {
        let shape = (4, 3, 5, 5);
        let n: usize = 4 * 3 * 5 * 5;
        let raw: Vec<f32> = (0..n)
            .map(|i| ((i * 53 % 97) as f32 / 20.0) - 2.0)
            .collect();
        let mut results = Vec::new();
        for fused in [true, false] {
            let varmap = VarMap::new();
            let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
            let bn = candle_nn::batch_norm(3, 1e-5, vb).unwrap();
            // Non-trivial γ and β.
            {
                let data = varmap.data().lock().unwrap();
                data["weight"]
                    .set(&Tensor::new(&[0.5f32, 2.0, -1.0], &Device::Cpu).unwrap())
                    .unwrap();
                data["bias"]
                    .set(&Tensor::new(&[0.1f32, -0.3, 0.7], &Device::Cpu).unwrap())
                    .unwrap();
            }
            let x = Var::from_vec(raw.clone(), shape, &Device::Cpu).unwrap();
            let y = if fused {
                forward_t(&bn, x.as_tensor(), true, false, act).unwrap()
            } else {
                act.apply(&bn.forward_t(x.as_tensor(), true).unwrap())
                    .unwrap()
            };
            let w = Tensor::arange(0f32, n as f32, &Device::Cpu)
                .unwrap()
                .reshape(shape)
                .unwrap()
                .cos()
                .unwrap();
            let grads = (&y * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let data = varmap.data().lock().unwrap();
            results.push(vec![
                values(&y),
                values(grads.get(x.as_tensor()).unwrap()),
                values(grads.get(data["weight"].as_tensor()).unwrap()),
                values(grads.get(data["bias"].as_tensor()).unwrap()),
                values(data["running_mean"].as_tensor()),
                values(data["running_var"].as_tensor()),
            ]);
        }
        let names = [
            "output",
            "dx",
            "dgamma",
            "dbeta",
            "running mean",
            "running var",
        ];
        for (k, name) in names.iter().enumerate() {
            for (a, b) in results[0][k].iter().zip(&results[1][k]) {
                assert!(
                    (a - b).abs() < 1e-4 * b.abs().max(1.0),
                    "{act:?} {name}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn frozen_parameters_pass_the_same_input_gradient_and_get_none_of_their_own() {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let bn = candle_nn::batch_norm(2, 1e-5, vb).unwrap();
        let raw: Vec<f32> = (0..2 * 2 * 9)
            .map(|i| (i as f32 * 0.7).sin() * 3.0 + 5.0)
            .collect();
        let x = Var::from_vec(raw, (2, 2, 3, 3), &Device::Cpu).unwrap();
        let w = Tensor::arange(0f32, 36.0, &Device::Cpu)
            .unwrap()
            .reshape((2, 2, 3, 3))
            .unwrap()
            .sin()
            .unwrap();
        let mut runs = Vec::new();
        for frozen in [false, true] {
            let y = forward_t(&bn, x.as_tensor(), true, frozen, Activation::Identity).unwrap();
            let grads = (&y * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let has_gamma = grads.get(bn.weight_and_bias().unwrap().0).is_some();
            runs.push((
                values(&y),
                values(grads.get(x.as_tensor()).unwrap()),
                has_gamma,
            ));
        }
        assert_eq!(runs[0].0, runs[1].0, "output");
        assert_eq!(runs[0].1, runs[1].1, "input gradient");
        assert!(runs[0].2 && !runs[1].2, "γ's gradient only when not frozen");
    }
}
