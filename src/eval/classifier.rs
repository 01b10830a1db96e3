//! The project's own MNIST classifier: its 128-d penultimate features are the space the
//! Fréchet distance and precision/recall are measured in, and its predictions give mode
//! coverage and conditional accuracy. A small CNN (two 3x3 convolutions with max pooling,
//! then 128 and 10 units), trained seeded with random ±2-pixel shifts, cached with a SHA-256
//! of its weights so every evaluation uses the same one.

use crate::data::{PixelScale, Split};
use crate::neural::layers::ParamStore;
use crate::neural::optim::{Adam, AdamConfig};
use candle_core::{Device, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, Init, Linear, Module, VarBuilder};
use rand::Rng;
use sha2::Digest;
use std::path::Path;

/// The classifier's layers.
pub struct DigitClassifier {
    params: ParamStore,
    conv1: Conv2d,
    conv2: Conv2d,
    fc1: Linear,
    fc2: Linear,
}

impl DigitClassifier {
    fn new(device: &Device) -> Result<Self> {
        let params = ParamStore::new();
        let vb = params.var_builder(device);
        let c = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        // Weights uniform in ±√(6/fan_in) (He et al. 2015's scale for ReLU nets), biases 0.
        let he = |fan_in: usize| {
            let bound = (6.0 / fan_in as f32).sqrt() as f64;
            Init::Uniform {
                lo: -bound,
                up: bound,
            }
        };
        let zero = Init::Const(0.0);
        let conv = |c_in: usize, c_out: usize, vb: VarBuilder| -> Result<Conv2d> {
            let w = vb.get_with_hints((c_out, c_in, 3, 3), "weight", he(c_in * 9))?;
            Ok(Conv2d::new(
                w,
                Some(vb.get_with_hints(c_out, "bias", zero)?),
                c,
            ))
        };
        let dense = |inp: usize, out: usize, vb: VarBuilder| -> Result<Linear> {
            let w = vb.get_with_hints((out, inp), "weight", he(inp))?;
            Ok(Linear::new(w, Some(vb.get_with_hints(out, "bias", zero)?)))
        };
        Ok(Self {
            conv1: conv(1, 32, vb.pp("conv1"))?,
            conv2: conv(32, 64, vb.pp("conv2"))?,
            fc1: dense(64 * 7 * 7, 128, vb.pp("fc1"))?,
            fc2: dense(128, 10, vb.pp("fc2"))?,
            params,
        })
    }

    /// The 128 penultimate activations of images (N x 1 x 28 x 28, pixels in [0, 1]).
    pub fn features(&self, images: &Tensor) -> Result<Tensor> {
        let h = self.conv1.forward(images)?.relu()?.max_pool2d(2)?;
        let h = self.conv2.forward(&h)?.relu()?.max_pool2d(2)?;
        self.fc1.forward(&h.flatten_from(1)?)?.relu()
    }

    fn logits(&self, images: &Tensor) -> Result<Tensor> {
        self.fc2.forward(&self.features(images)?)
    }

    /// The predicted class of each image, evaluated in batches of 500.
    pub fn predict(&self, images: &Tensor) -> Result<Vec<usize>> {
        Ok(self
            .predict_with_confidence(images)?
            .into_iter()
            .map(|(class, _)| class)
            .collect())
    }

    /// The predicted class of each image and the classifier's probability for it (the
    /// largest softmax output), evaluated in batches of 500. A clearly drawn digit gets a
    /// probability near 1; a blob or a cross between two digits spreads it.
    pub fn predict_with_confidence(&self, images: &Tensor) -> Result<Vec<(usize, f32)>> {
        let n = images.dim(0)?;
        let mut out = Vec::with_capacity(n);
        for s in (0..n).step_by(500) {
            let logits = self.logits(&images.narrow(0, s, 500.min(n - s))?)?;
            let probs = candle_nn::ops::softmax_last_dim(&logits)?;
            let class = probs.argmax(1)?.to_vec1::<u32>()?;
            let top = probs.max(1)?.to_vec1::<f32>()?;
            out.extend(class.into_iter().map(|c| c as usize).zip(top));
        }
        Ok(out)
    }

    /// Features of many images, in batches, as an f64 matrix (for the metrics).
    pub fn feature_matrix(&self, images: &Tensor) -> Result<faer::Mat<f64>> {
        let n = images.dim(0)?;
        let mut rows: Vec<Vec<f32>> = Vec::with_capacity(n);
        for s in (0..n).step_by(500) {
            rows.extend(
                self.features(&images.narrow(0, s, 500.min(n - s))?)?
                    .to_vec2::<f32>()?,
            );
        }
        Ok(faer::Mat::from_fn(n, 128, |i, j| rows[i][j] as f64))
    }

    /// Trains on the training part with seeded shifts; returns the model and its test accuracy.
    pub fn train(
        split: &Split,
        seed: u64,
        epochs: usize,
        log: &mut dyn FnMut(&str),
    ) -> Result<(Self, f64)> {
        let dev = Device::Cpu;
        let model = Self::new(&dev)?;
        model.params.initialise(seed, None)?;
        let all = model.params.all();
        let mut opt = Adam::new(model.params.trainable(&all), AdamConfig::new(1e-3, 0.9))?;
        let train = &split.train;
        let labels = train
            .labels()
            .ok_or_else(|| candle_core::Error::Msg("the classifier needs labels".into()))?;
        let mut rng = crate::util::Stream::Classifier.rng(seed);
        let bs = 64;
        for epoch in 0..epochs {
            // Step decay: the last epochs refine with a smaller step.
            opt.config.lr = if epoch * 2 < epochs {
                1e-3
            } else if epoch * 6 < epochs * 5 {
                3e-4
            } else {
                1e-4
            };
            let order = train.epoch_order(seed, epoch as u64);
            for chunk in order.chunks_exact(bs) {
                let mut px = Vec::with_capacity(bs * 784);
                for &i in chunk {
                    let img = train.image(i);
                    let (dx, dy) = (rng.random_range(-2i32..=2), rng.random_range(-2i32..=2));
                    for y in 0..28i32 {
                        for x in 0..28i32 {
                            let (sx, sy) = (x - dx, y - dy);
                            let v = if (0..28).contains(&sx) && (0..28).contains(&sy) {
                                img[(sy * 28 + sx) as usize]
                            } else {
                                0
                            };
                            px.push(v as f32 / 255.0);
                        }
                    }
                }
                let x = Tensor::from_vec(px, (bs, 1, 28, 28), &dev)?;
                let y = Tensor::from_vec(
                    chunk.iter().map(|&i| labels[i]).collect::<Vec<u32>>(),
                    bs,
                    &dev,
                )?;
                let loss = candle_nn::loss::cross_entropy(&model.logits(&x)?, &y)?;
                opt.step(&loss.backward()?)?;
            }
            log(&format!("  classifier epoch {}/{epochs}", epoch + 1));
        }
        let acc = model.test_accuracy(split)?;
        Ok((model, acc))
    }

    /// Accuracy on the test part.
    pub fn test_accuracy(&self, split: &Split) -> Result<f64> {
        let idx: Vec<usize> = (0..split.test.len()).collect();
        let b = split
            .test
            .batch_of(&idx, &PixelScale::ZeroOne.table(), &Device::Cpu)?;
        let pred = self.predict(&b.images)?;
        let truth = split.test.labels().unwrap_or(&[]);
        Ok(pred
            .iter()
            .zip(truth)
            .filter(|(p, t)| **p == **t as usize)
            .count() as f64
            / truth.len().max(1) as f64)
    }

    /// Loads the cached classifier if its weights still match their recorded SHA-256, else
    /// trains one (12 epochs) and caches it. Returns it with its test accuracy.
    pub fn load_or_train(
        cache: &Path,
        split: &Split,
        seed: u64,
        log: &mut dyn FnMut(&str),
    ) -> super::Result<(Self, f64)> {
        use super::{EvalError, file_error};
        // The recipe's version is in the name: a changed recipe never reuses old weights.
        let weights = cache.join(format!("digit-classifier-v2-seed{seed}.safetensors"));
        let record = cache.join(format!("digit-classifier-v2-seed{seed}.json"));
        if let (Ok(bytes), Ok(meta)) = (std::fs::read(&weights), std::fs::read(&record)) {
            let meta: serde_json::Value =
                serde_json::from_slice(&meta).map_err(|cause| EvalError::Json {
                    path: record.clone(),
                    cause,
                })?;
            let sha = hex(&sha2::Sha256::digest(&bytes));
            if meta["sha256"].as_str() == Some(sha.as_str()) {
                let model = Self::new(&Device::Cpu)?;
                // The clone shares the variables: loading fills the model's own.
                model.params.varmap().clone().load(&weights)?;
                let model = model;
                let acc = model.test_accuracy(split)?;
                log(&format!(
                    "classifier: cached {} (SHA-256 {}), test accuracy {:.2}%",
                    weights.display(),
                    &sha[..12],
                    100.0 * acc
                ));
                return Ok((model, acc));
            }
            log("classifier: cached weights do not match their checksum; training again");
        }
        log("classifier: training (12 epochs, seeded)");
        let (model, acc) = Self::train(split, seed, 12, log)?;
        std::fs::create_dir_all(cache).map_err(file_error(cache))?;
        let tmp = cache.join(format!(".tmp-classifier-{}", std::process::id()));
        model.params.varmap().save(&tmp)?;
        let bytes = std::fs::read(&tmp).map_err(file_error(&tmp))?;
        std::fs::rename(&tmp, &weights).map_err(file_error(&weights))?;
        let meta = serde_json::json!({ "sha256": hex(&sha2::Sha256::digest(&bytes)), "test_accuracy": acc, "seed": seed, "epochs": 12 });
        let json = serde_json::to_string_pretty(&meta).expect("a JSON value serialises");
        crate::util::atomic_write(&record, json.as_bytes()).map_err(file_error(&record))?;
        log(&format!(
            "classifier: test accuracy {:.2}%, cached in {}",
            100.0 * acc,
            weights.display()
        ));
        Ok((model, acc))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
