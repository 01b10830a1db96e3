//! The project's own MNIST classifier: its 128-d penultimate features are the space the
//! Fréchet distance and precision/recall are measured in, and its predictions give mode
//! coverage and conditional accuracy. A small CNN (two 3x3 convolutions with max pooling,
//! then 128 and 10 units), trained seeded with random ±2-pixel shifts, cached with a SHA-256
//! of its weights so every evaluation uses the same one.

use crate::data::{PixelScale, Split};
use crate::neural::optim::{Adam, AdamConfig, trainable};
use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, Linear, Module, VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::Digest;
use std::path::Path;

/// The classifier's layers.
pub struct DigitClassifier {
    varmap: VarMap,
    conv1: Conv2d,
    conv2: Conv2d,
    fc1: Linear,
    fc2: Linear,
}

impl DigitClassifier {
    fn new(device: &Device) -> Result<Self> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let c = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        Ok(Self {
            conv1: candle_nn::conv2d(1, 32, 3, c, vb.pp("conv1"))?,
            conv2: candle_nn::conv2d(32, 64, 3, c, vb.pp("conv2"))?,
            fc1: candle_nn::linear(64 * 7 * 7, 128, vb.pp("fc1"))?,
            fc2: candle_nn::linear(128, 10, vb.pp("fc2"))?,
            varmap,
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
        let n = images.dim(0)?;
        let mut out = Vec::with_capacity(n);
        for s in (0..n).step_by(500) {
            let l = self
                .logits(&images.narrow(0, s, 500.min(n - s))?)?
                .argmax(1)?
                .to_vec1::<u32>()?;
            out.extend(l.into_iter().map(|v| v as usize));
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
        // Seeded initialisation, as every model of the crate.
        {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let data = model.varmap.data().lock().expect("varmap lock");
            let mut names: Vec<&String> = data.keys().collect();
            names.sort();
            for name in names {
                let v = &data[name];
                let dims = v.dims().to_vec();
                let n: usize = dims.iter().product();
                let fan_in: usize = dims[1..].iter().product::<usize>().max(1);
                let bound = if name.ends_with("bias") {
                    0.0
                } else {
                    (6.0 / fan_in as f32).sqrt()
                };
                let vals: Vec<f32> = (0..n)
                    .map(|_| {
                        if bound == 0.0 {
                            0.0
                        } else {
                            rng.random_range(-bound..bound)
                        }
                    })
                    .collect();
                v.set(&Tensor::from_vec(vals, dims, &dev)?)?;
            }
        }
        let mut opt = Adam::new(trainable(&model.varmap, ""), AdamConfig::new(1e-3, 0.9))?;
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
    ) -> anyhow::Result<(Self, f64)> {
        // The recipe's version is in the name: a changed recipe never reuses old weights.
        let weights = cache.join(format!("digit-classifier-v2-seed{seed}.safetensors"));
        let record = cache.join(format!("digit-classifier-v2-seed{seed}.json"));
        if let (Ok(bytes), Ok(meta)) = (std::fs::read(&weights), std::fs::read(&record)) {
            let meta: serde_json::Value = serde_json::from_slice(&meta)?;
            let sha = hex(&sha2::Sha256::digest(&bytes));
            if meta["sha256"].as_str() == Some(sha.as_str()) {
                let mut model = Self::new(&Device::Cpu)?;
                model.varmap.load(&weights)?;
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
        std::fs::create_dir_all(cache)?;
        let tmp = cache.join(format!(".tmp-classifier-{}", std::process::id()));
        model.varmap.save(&tmp)?;
        let bytes = std::fs::read(&tmp)?;
        std::fs::rename(&tmp, &weights)?;
        let meta = serde_json::json!({ "sha256": hex(&sha2::Sha256::digest(&bytes)), "test_accuracy": acc, "seed": seed, "epochs": 12 });
        crate::util::atomic_write(&record, serde_json::to_string_pretty(&meta)?.as_bytes())?;
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
