//! The layers the models are made of, in candle's idiom: a struct per layer or sub-net,
//! built by its own `new(.., vb)` and applied through `Module` (or `forward_frozen` where
//! the generator's step needs a net whose weights take no gradient).
//!
//! Every parameter is created through a [`ParamStore`], which records how it is to be
//! initialised. candle's initialisers draw from an unseeded generator, so the store draws
//! every parameter again from the model's seed, in name order: the same seed gives the same
//! model on every run. A layer that asks for an initialiser the store cannot draw (candle's
//! Kaiming or normal ones) fails when it is built, instead of leaving a weight unseeded.
//! The store also says which parameters form a net's optimiser group and which are
//! statistics no optimiser touches, from how the model was built rather than from the
//! parameters' names.

use super::kernels::batch_norm;
use super::kernels::conv;
use super::kernels::linear::{Activation, dense, dense_frozen};
use candle_core::{DType, Device, Module, Result, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{
    BatchNorm, Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig, Embedding, Init,
    Linear, VarBuilder, VarMap,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// How a parameter gets its initial value.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamInit {
    /// Every entry the same: biases 0, batch-norm scales and running variances 1.
    Constant(f32),
    /// Uniform in ±bound, drawn from the model's seed.
    Uniform(f32),
    /// A copy of another parameter's initial value (the generator's moving average).
    CopyOf(String),
}

impl ParamInit {
    /// PyTorch's default for dense and convolutional weights: uniform in ±1/√fan_in.
    pub fn fan_in(fan_in: usize) -> Init {
        let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
        Init::Uniform {
            lo: -(bound as f64),
            up: bound as f64,
        }
    }

    /// The store's reading of a candle initialiser hint, if it can draw it seeded.
    fn from_hint(hint: Init) -> Option<Self> {
        match hint {
            Init::Const(c) => Some(ParamInit::Constant(c as f32)),
            Init::Uniform { lo, up } if lo == -up && up >= 0.0 => {
                Some(ParamInit::Uniform(up as f32))
            }
            _ => None,
        }
    }
}

struct Record {
    init: ParamInit,
    /// Creation order, for grouping the parameters of one net.
    order: usize,
    /// A running statistic (batch norm's), updated by the forward pass, not by an optimiser.
    statistic: bool,
}

/// The parameters of one model: candle's `VarMap` (what checkpoints save) and, for each
/// parameter, how it is initialised and whether an optimiser trains it.
#[derive(Clone)]
pub struct ParamStore {
    varmap: VarMap,
    records: Arc<Mutex<BTreeMap<String, Record>>>,
}

/// The names of the parameters one net created, from [`ParamStore::group`].
#[derive(Debug, Clone, PartialEq)]
pub struct ParamGroup(Vec<String>);

impl Default for ParamStore {
    fn default() -> Self {
        Self::new()
    }
}

impl ParamStore {
    pub fn new() -> Self {
        Self {
            varmap: VarMap::new(),
            records: Arc::default(),
        }
    }

    /// A builder whose parameters this store records (f32, on `device`).
    pub fn var_builder(&self, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(Recorder(self.clone())), DType::F32, device.clone())
    }

    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    fn records(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Record>> {
        self.records.lock().expect("parameter records lock")
    }

    /// Runs `build` and returns what it built with the parameters it created: a net's
    /// optimiser group.
    pub fn group<T>(&self, build: impl FnOnce() -> Result<T>) -> Result<(T, ParamGroup)> {
        let start = self.records().len();
        let built = build()?;
        let names = self
            .records()
            .iter()
            .filter(|(_, r)| r.order >= start)
            .map(|(n, _)| n.clone())
            .collect();
        Ok((built, ParamGroup(names)))
    }

    /// Every parameter created so far, as one group.
    pub fn all(&self) -> ParamGroup {
        ParamGroup(self.records().keys().cloned().collect())
    }

    /// Marks the parameters holding `tensors` as running statistics: no optimiser takes
    /// them. An unknown tensor is an error, since it would otherwise be trained.
    pub fn mark_statistics(&self, tensors: &[&Tensor]) -> Result<()> {
        let data = self.varmap.data().lock().expect("varmap lock");
        let mut records = self.records();
        for t in tensors {
            let name = data
                .iter()
                .find(|(_, v)| v.as_tensor().id() == t.id())
                .map(|(n, _)| n.clone())
                .ok_or_else(|| {
                    candle_core::Error::Msg("a statistic that is not a model parameter".into())
                })?;
            if let Some(r) = records.get_mut(&name) {
                r.statistic = true;
            }
        }
        Ok(())
    }

    /// The trainable parameters of `group`, by name, sorted: what its optimiser steps.
    pub fn trainable(&self, group: &ParamGroup) -> Vec<(String, Var)> {
        let data = self.varmap.data().lock().expect("varmap lock");
        let records = self.records();
        group
            .0
            .iter()
            .filter(|n| records.get(*n).is_some_and(|r| !r.statistic))
            .filter_map(|n| data.get(n).map(|v| (n.clone(), v.clone())))
            .collect()
    }

    /// Adds `var` under `name`, starting as a copy of parameter `of`.
    pub fn add_copy(&self, name: String, of: &str, var: Var) {
        self.varmap
            .data()
            .lock()
            .expect("varmap lock")
            .insert(name.clone(), var);
        let mut records = self.records();
        let order = records.len();
        records.insert(
            name,
            Record {
                init: ParamInit::CopyOf(of.to_string()),
                order,
                statistic: true,
            },
        );
    }

    /// Draws every parameter from `seed`: constants set, random draws taken in name order,
    /// then copies made of their sources. With `normal_std`, the weights recorded as
    /// uniform are drawn from N(0, std²) instead (the DCGAN paper's initialisation).
    pub fn initialise(&self, seed: u64, normal_std: Option<f32>) -> Result<()> {
        let data = self.varmap.data().lock().expect("varmap lock");
        let records = self.records();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let var = |name: &str| {
            data.get(name).ok_or_else(|| {
                candle_core::Error::Msg(format!("parameter {name} is recorded but missing"))
            })
        };
        for (name, record) in records.iter() {
            let var = var(name)?;
            let n = var.elem_count();
            let values: Vec<f32> = match (&record.init, normal_std) {
                (ParamInit::Constant(c), _) => vec![*c; n],
                (ParamInit::Uniform(_), Some(std)) => (0..n)
                    .map(|_| std * rng.sample::<f32, _>(rand_distr::StandardNormal))
                    .collect(),
                (ParamInit::Uniform(bound), None) if *bound > 0.0 => {
                    let bound = *bound;
                    (0..n).map(|_| rng.random_range(-bound..bound)).collect()
                }
                (ParamInit::Uniform(_), None) => vec![0.0; n],
                (ParamInit::CopyOf(_), _) => continue,
            };
            var.set(&Tensor::from_vec(values, var.dims(), var.device())?)?;
        }
        for (name, record) in records.iter() {
            if let ParamInit::CopyOf(of) = &record.init {
                var(name)?.set(var(of)?.as_tensor())?;
            }
        }
        Ok(())
    }
}

/// The `VarBuilder` backend of a [`ParamStore`]: creates variables in its `VarMap` and
/// records their initialiser.
struct Recorder(ParamStore);

impl SimpleBackend for Recorder {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let init = ParamInit::from_hint(h).ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "parameter {name}: the initialiser {h:?} cannot be drawn from the model's seed \
                 (use a constant or a symmetric uniform, as neural::layers does)"
            ))
        })?;
        let t = self.0.varmap.get(s, name, h, dtype, dev)?;
        let mut records = self.0.records();
        let order = records.len();
        records.entry(name.to_string()).or_insert(Record {
            init,
            order,
            statistic: false,
        });
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> Result<Tensor> {
        SimpleBackend::get_unchecked(&self.0.varmap, name, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        SimpleBackend::contains_tensor(&self.0.varmap, name)
    }
}

/// A fully connected layer and its activation, y = act(x·Wᵀ + b), run as one fused op.
/// Weights start uniform in ±1/√fan_in, biases at 0.
pub struct Dense {
    linear: Linear,
    act: Activation,
}

impl Dense {
    pub fn new(inputs: usize, outputs: usize, act: Activation, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints((outputs, inputs), "weight", ParamInit::fan_in(inputs))?;
        let bias = vb.get_with_hints(outputs, "bias", Init::Const(0.0))?;
        Ok(Self {
            linear: Linear::new(weight, Some(bias)),
            act,
        })
    }

    /// The same function with the weights detached: gradients reach the input only.
    pub fn forward_frozen(&self, x: &Tensor) -> Result<Tensor> {
        dense_frozen(&self.linear, x, self.act)
    }

    /// The layer with another activation (a decoder's logits while training, its
    /// probabilities when sampling).
    pub fn forward_as(&self, x: &Tensor, act: Activation) -> Result<Tensor> {
        dense(&self.linear, x, act)
    }
}

impl Module for Dense {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        dense(&self.linear, x, self.act)
    }
}

/// A stack of dense layers, LeakyReLU(0.2) between them and `last` after the final one.
pub struct Mlp {
    layers: Vec<Dense>,
}

impl Mlp {
    /// Layers `sizes[i] → sizes[i+1]`, named `l0`, `l1`, ….
    pub fn new(sizes: &[usize], last: Activation, vb: VarBuilder) -> Result<Self> {
        let n = sizes.len().saturating_sub(1);
        let layers = sizes
            .windows(2)
            .enumerate()
            .map(|(i, w)| {
                let act = if i + 1 < n {
                    Activation::LeakyRelu(0.2)
                } else {
                    last
                };
                Dense::new(w[0], w[1], act, vb.pp(format!("l{i}")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { layers })
    }

    /// The same function with every weight detached: the generator's step runs D this
    /// way, since it reads only the gradient that reaches G's output.
    pub fn forward_frozen(&self, x: &Tensor) -> Result<Tensor> {
        self.layers
            .iter()
            .try_fold(x.clone(), |h, l| l.forward_frozen(&h))
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.layers.iter().try_fold(x.clone(), |h, l| l.forward(&h))
    }
}

impl Mlp {
    /// The net with `dropout` after every layer but the last (a discriminator while it
    /// trains); `frozen` as in [`Mlp::forward_frozen`].
    pub fn forward_dropout(&self, x: &Tensor, frozen: bool, dropout: &Dropout) -> Result<Tensor> {
        let last = self.layers.len().saturating_sub(1);
        self.layers
            .iter()
            .enumerate()
            .try_fold(x.clone(), |h, (i, l)| {
                let h = if frozen {
                    l.forward_frozen(&h)?
                } else {
                    l.forward(&h)?
                };
                if i < last { dropout.apply(&h) } else { Ok(h) }
            })
    }
}

/// Inverted dropout: each entry is zeroed with probability `p` and the others scaled by
/// 1/(1 − p), so an activation's expectation is unchanged and evaluation needs no
/// rescaling. The masks come from a seeded generator (candle's own dropout draws from the
/// device's unseeded one, which would make a run unrepeatable).
pub struct Dropout {
    p: f32,
    rng: std::cell::RefCell<ChaCha8Rng>,
}

impl Dropout {
    /// Masks drawn from `seed`; `p` in [0, 1).
    pub fn new(p: f64, seed: u64) -> Self {
        Self {
            p: p as f32,
            rng: std::cell::RefCell::new(ChaCha8Rng::seed_from_u64(seed)),
        }
    }

    /// The dropout of one training step with probability `p`, its masks seeded from
    /// `rng`; none when `p` is 0, and then `rng` is not drawn from, so that runs without
    /// dropout keep their random stream.
    pub fn for_step(p: f64, rng: &mut ChaCha8Rng) -> Option<Self> {
        (p > 0.0).then(|| Self::new(p, rng.random()))
    }

    /// `h` with a fresh mask applied.
    pub fn apply(&self, h: &Tensor) -> Result<Tensor> {
        if self.p <= 0.0 {
            return Ok(h.clone());
        }
        let keep = 1.0 / (1.0 - self.p);
        let mask = self.decisions(h.elem_count(), |k| if k { keep } else { 0.0 });
        h * Tensor::from_vec(mask, h.shape(), h.device())?.to_dtype(h.dtype())?
    }

    /// The next `n` decisions of the mask stream, 1 to keep an entry and 0 to drop it: what
    /// [`Dropout::apply`] draws for a tensor of `n` entries in row-major order. `bench
    /// lockstep` records them so that PyTorch can replay a step with genmod's masks.
    pub fn keep_pattern(&self, n: usize) -> Vec<u8> {
        self.decisions(n, u8::from)
    }

    /// The next `n` keep-or-drop decisions, each mapped by `f`: the one place the mask
    /// stream is drawn, so that `apply` and `keep_pattern` cannot drift apart.
    fn decisions<T>(&self, n: usize, f: impl Fn(bool) -> T) -> Vec<T> {
        let mut rng = self.rng.borrow_mut();
        (0..n).map(|_| f(rng.random::<f32>() >= self.p)).collect()
    }
}

/// The projection discriminator's label term e_y·φ(x), one value per row of the features
/// `phi` (Miyato and Koyama 2018); with `frozen`, no gradient reaches the class vectors
/// (the generator's step).
pub fn projection(
    embed: &Embedding,
    labels: &Tensor,
    phi: &Tensor,
    frozen: bool,
) -> Result<Tensor> {
    let table = embed.embeddings();
    let table = if frozen {
        table.detach()
    } else {
        table.clone()
    };
    (table.index_select(labels, 0)? * phi)?.sum_keepdim(1)
}

/// A learnt vector per class (the projection discriminator's), uniform in ±1/√dim.
pub fn embedding(classes: usize, dim: usize, vb: VarBuilder) -> Result<Embedding> {
    let table = vb.get_with_hints((classes, dim), "weight", ParamInit::fan_in(dim))?;
    Ok(Embedding::new(table, dim))
}

/// Side, stride and padding of the DCGAN's resampling layers: each halves or doubles the
/// image side exactly.
const KERNEL: usize = 4;
const STRIDE: usize = 2;
const PADDING: usize = 1;

/// A stride-2 convolution (kernel 4, padding 1) that halves the side, and its activation.
pub struct DownConv {
    conv: Conv2d,
    act: Activation,
}

impl DownConv {
    pub fn new(c_in: usize, c_out: usize, act: Activation, vb: VarBuilder) -> Result<Self> {
        let fan_in = c_in * KERNEL * KERNEL;
        let w = vb.get_with_hints(
            (c_out, c_in, KERNEL, KERNEL),
            "weight",
            ParamInit::fan_in(fan_in),
        )?;
        let b = vb.get_with_hints(c_out, "bias", Init::Const(0.0))?;
        let cfg = Conv2dConfig {
            padding: PADDING,
            stride: STRIDE,
            dilation: 1,
            groups: 1,
            cudnn_fwd_algo: None,
        };
        Ok(Self {
            conv: Conv2d::new(w, Some(b), cfg),
            act,
        })
    }

    /// With `frozen`, the weights take no gradient.
    pub fn forward_t(&self, x: &Tensor, frozen: bool) -> Result<Tensor> {
        conv::conv2d(&self.conv, x, STRIDE, PADDING, frozen, self.act)
    }
}

/// A stride-2 transposed convolution (kernel 4, padding 1) that doubles the side, and its
/// activation. Its fan-in counts the input channels, as for the forward convolution it
/// transposes.
pub struct UpConv {
    conv: ConvTranspose2d,
    act: Activation,
}

impl UpConv {
    pub fn new(c_in: usize, c_out: usize, act: Activation, vb: VarBuilder) -> Result<Self> {
        let fan_in = c_in * KERNEL * KERNEL;
        let w = vb.get_with_hints(
            (c_in, c_out, KERNEL, KERNEL),
            "weight",
            ParamInit::fan_in(fan_in),
        )?;
        let b = vb.get_with_hints(c_out, "bias", Init::Const(0.0))?;
        let cfg = ConvTranspose2dConfig {
            padding: PADDING,
            output_padding: 0,
            stride: STRIDE,
            dilation: 1,
        };
        Ok(Self {
            conv: ConvTranspose2d::new(w, Some(b), cfg),
            act,
        })
    }
}

impl Module for UpConv {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        conv::conv_transpose2d(&self.conv, x, STRIDE, PADDING, self.act)
    }
}

/// Batch norm over channels (scale 1, shift 0, running mean 0 and variance 1 at the
/// start), then an activation, fused.
pub struct BatchNorm2d {
    bn: BatchNorm,
    act: Activation,
}

impl BatchNorm2d {
    pub fn new(channels: usize, act: Activation, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            bn: candle_nn::batch_norm(channels, 1e-5, vb)?,
            act,
        })
    }

    /// With `train`, normalises by the batch's statistics and updates the running ones;
    /// else by the running ones. With `frozen`, the scale and shift take no gradient.
    pub fn forward_t(&self, x: &Tensor, train: bool, frozen: bool) -> Result<Tensor> {
        batch_norm::forward_t(&self.bn, x, train, frozen, self.act)
    }

    /// The running mean and variance, for [`ParamStore::mark_statistics`].
    pub fn statistics(&self) -> [&Tensor; 2] {
        [self.bn.running_mean(), self.bn.running_var()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_parameters_and_constants_stay_constant() {
        let draw = |seed| {
            let store = ParamStore::new();
            let vb = store.var_builder(&Device::Cpu);
            Dense::new(3, 2, Activation::Identity, vb.pp("a")).unwrap();
            BatchNorm2d::new(2, Activation::Relu, vb.pp("bn")).unwrap();
            store.initialise(seed, None).unwrap();
            let data = store.varmap().data().lock().unwrap();
            let get = |n: &str| {
                data[n]
                    .as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
            };
            (get("a.weight"), get("a.bias"), get("bn.running_var"))
        };
        let (w0, b0, v0) = draw(7);
        assert_eq!(draw(7).0, w0);
        assert_ne!(draw(8).0, w0);
        let bound = 1.0 / 3f32.sqrt();
        assert!(w0.iter().all(|w| w.abs() < bound) && w0.iter().any(|w| *w != 0.0));
        assert_eq!(b0, vec![0.0; 2]);
        assert_eq!(v0, vec![1.0; 2]);
    }

    #[test]
    fn groups_and_statistics_come_from_how_the_model_was_built() {
        let store = ParamStore::new();
        let vb = store.var_builder(&Device::Cpu);
        let (_, first) = store
            .group(|| Dense::new(2, 2, Activation::Relu, vb.pp("x")))
            .unwrap();
        let (bn, second) = store
            .group(|| BatchNorm2d::new(4, Activation::Relu, vb.pp("y")))
            .unwrap();
        store.mark_statistics(&bn.statistics()).unwrap();
        let names = |g: &ParamGroup| -> Vec<String> {
            store.trainable(g).into_iter().map(|(n, _)| n).collect()
        };
        assert_eq!(names(&first), ["x.bias", "x.weight"]);
        assert_eq!(names(&second), ["y.bias", "y.weight"]);
        assert_eq!(store.all().0.len(), 6);
    }

    #[test]
    fn an_unseedable_initialiser_is_refused_with_the_parameter_named() {
        let store = ParamStore::new();
        let vb = store.var_builder(&Device::Cpu);
        let err = candle_nn::linear(3, 2, vb.pp("plain"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("plain.weight") && err.contains("seed"),
            "{err}"
        );
    }
}
