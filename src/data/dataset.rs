//! The one image dataset type every model consumes.

use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// How 8-bit pixels map to floats: models with sigmoid outputs want [0, 1], GANs with tanh
/// outputs want [-1, 1].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelScale {
    /// `p / 255`
    ZeroOne,
    /// `p / 127.5 - 1`
    MinusOneOne,
}

impl PixelScale {
    /// The 256-entry lookup table from byte to float for this scale.
    pub fn table(self) -> [f32; 256] {
        let mut t = [0f32; 256];
        for (i, v) in t.iter_mut().enumerate() {
            *v = match self {
                PixelScale::ZeroOne => i as f32 / 255.0,
                PixelScale::MinusOneOne => i as f32 / 127.5 - 1.0,
            };
        }
        t
    }
}

/// Values in a batch above which [`Dataset::batch_of`] shares its filling between threads.
const PARALLEL_BATCH_VALUES: usize = 64 * 1024;

/// Images as `u8` in N x C x H x W order, with optional labels and class names.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// A short human name, e.g. "mnist-10k (train)".
    pub name: String,
    pixels: Vec<u8>,
    n: usize,
    channels: usize,
    height: usize,
    width: usize,
    labels: Option<Vec<u32>>,
    class_names: Option<Vec<String>>,
}

/// A training part and a held-out test part of the same data.
#[derive(Debug, Clone)]
pub struct Split {
    pub train: Dataset,
    pub test: Dataset,
}

/// One mini-batch: the images as an `N x C x H x W` f32 tensor, labels as u32 when present.
#[derive(Debug, Clone)]
pub struct Batch {
    pub images: Tensor,
    pub labels: Option<Tensor>,
    /// Indices of the batch's images in the dataset.
    pub indices: Vec<usize>,
}

impl Dataset {
    /// Builds a dataset, checking that the pixel buffer, labels and class names agree.
    pub fn new(
        name: impl Into<String>,
        pixels: Vec<u8>,
        shape: [usize; 4],
        labels: Option<Vec<u32>>,
        class_names: Option<Vec<String>>,
    ) -> Result<Self, String> {
        let [n, c, h, w] = shape;
        let name = name.into();
        let expected = n
            .checked_mul(c)
            .and_then(|v| v.checked_mul(h))
            .and_then(|v| v.checked_mul(w))
            .ok_or_else(|| format!("{name}: shape {shape:?} overflows"))?;
        if pixels.len() != expected {
            return Err(format!(
                "{name}: {} pixel bytes do not match shape {shape:?} ({expected} bytes)",
                pixels.len()
            ));
        }
        if let Some(l) = &labels {
            if l.len() != n {
                return Err(format!("{name}: {} labels for {n} images", l.len()));
            }
            if let Some(names) = &class_names
                && let Some((i, &bad)) = l
                    .iter()
                    .enumerate()
                    .find(|&(_, &y)| y as usize >= names.len())
            {
                return Err(format!(
                    "{name}: label {bad} of image {i} has no class name (there are {})",
                    names.len()
                ));
            }
        }
        Ok(Self {
            name,
            pixels,
            n,
            channels: c,
            height: h,
            width: w,
            labels,
            class_names,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// `[N, C, H, W]`.
    pub fn shape(&self) -> [usize; 4] {
        [self.n, self.channels, self.height, self.width]
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    pub fn height(&self) -> usize {
        self.height
    }

    pub fn width(&self) -> usize {
        self.width
    }

    /// Values per image, C·H·W.
    pub fn dim(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// All pixels, image after image.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// The C·H·W bytes of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let d = self.dim();
        &self.pixels[i * d..(i + 1) * d]
    }

    pub fn labels(&self) -> Option<&[u32]> {
        self.labels.as_deref()
    }

    pub fn class_names(&self) -> Option<&[String]> {
        self.class_names.as_deref()
    }

    /// Number of classes: the class names when known, else one more than the largest label.
    pub fn num_classes(&self) -> Option<usize> {
        match (&self.class_names, &self.labels) {
            (Some(n), _) => Some(n.len()),
            (None, Some(l)) => l.iter().max().map(|&m| m as usize + 1),
            _ => None,
        }
    }

    /// Images per class, indexed by label.
    pub fn class_counts(&self) -> Option<Vec<usize>> {
        let k = self.num_classes()?;
        let mut counts = vec![0; k];
        for &y in self.labels.as_ref()? {
            counts[y as usize] += 1;
        }
        Some(counts)
    }

    /// A new dataset holding the images at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let d = self.dim();
        let mut pixels = Vec::with_capacity(indices.len() * d);
        for &i in indices {
            pixels.extend_from_slice(self.image(i));
        }
        Dataset {
            name: self.name.clone(),
            pixels,
            n: indices.len(),
            channels: self.channels,
            height: self.height,
            width: self.width,
            labels: self
                .labels
                .as_ref()
                .map(|l| indices.iter().map(|&i| l[i]).collect()),
            class_names: self.class_names.clone(),
        }
    }

    /// The first `n` images (or all, if there are fewer).
    pub fn take(&self, n: usize) -> Dataset {
        let idx: Vec<usize> = (0..n.min(self.n)).collect();
        self.subset(&idx)
    }

    /// All pixels as f32 in `scale`, image after image.
    pub fn to_f32(&self, scale: PixelScale) -> Vec<f32> {
        let t = scale.table();
        self.pixels.iter().map(|&p| t[p as usize]).collect()
    }

    /// All pixels as f64 in [0, 1], one row per image (for the classical models).
    pub fn to_f64_rows(&self) -> Vec<f64> {
        self.pixels.iter().map(|&p| p as f64 / 255.0).collect()
    }

    /// The images as an `N x C x H x W` f32 tensor on `device`.
    pub fn to_tensor(&self, scale: PixelScale, device: &Device) -> candle_core::Result<Tensor> {
        Tensor::from_vec(self.to_f32(scale), self.shape().to_vec(), device)
    }

    /// The labels as a u32 tensor of length N, if the dataset has labels.
    pub fn labels_tensor(&self, device: &Device) -> candle_core::Result<Option<Tensor>> {
        self.labels
            .as_ref()
            .map(|l| Tensor::from_slice(l, l.len(), device))
            .transpose()
    }

    /// The order in which epoch `epoch` visits the images: a permutation drawn from `seed`
    /// and `epoch` alone, so the same seed replays the same batches.
    pub fn epoch_order(&self, seed: u64, epoch: u64) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..self.n).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        idx.shuffle(&mut rng);
        idx
    }

    /// Seeded, shuffled mini-batches for one epoch. The last batch is dropped when it is
    /// smaller than `batch_size` and `drop_last` is set (GANs with batch norm want that).
    pub fn batches<'a>(
        &'a self,
        batch_size: usize,
        seed: u64,
        epoch: u64,
        scale: PixelScale,
        drop_last: bool,
        device: &'a Device,
    ) -> impl Iterator<Item = candle_core::Result<Batch>> + 'a {
        let order = self.epoch_order(seed, epoch);
        let table = scale.table();
        let bs = batch_size.max(1);
        let n_batches = if drop_last {
            self.n / bs
        } else {
            self.n.div_ceil(bs)
        };
        (0..n_batches).map(move |b| {
            let indices: Vec<usize> = order[b * bs..((b + 1) * bs).min(order.len())].to_vec();
            self.batch_of(&indices, &table, device)
        })
    }

    /// The images at `indices` as a batch, using the byte-to-float `table`.
    pub fn batch_of(
        &self,
        indices: &[usize],
        table: &[f32; 256],
        device: &Device,
    ) -> candle_core::Result<Batch> {
        let d = self.dim();
        let mut buf = vec![0f32; indices.len() * d];
        let fill = |(dst, &i): (&mut [f32], &usize)| {
            dst.iter_mut()
                .zip(self.image(i))
                .for_each(|(v, &p)| *v = table[p as usize]);
        };
        // A large batch (256 digits: 200,000 look-ups) is filled by every thread; it is
        // serial work between the steps' parallel products otherwise.
        if buf.len() >= PARALLEL_BATCH_VALUES && d > 0 {
            use rayon::prelude::*;
            buf.par_chunks_mut(d).zip(indices.par_iter()).for_each(fill);
        } else if d > 0 {
            buf.chunks_mut(d).zip(indices).for_each(fill);
        }
        let images = Tensor::from_vec(
            buf,
            (indices.len(), self.channels, self.height, self.width),
            device,
        )?;
        let labels = match &self.labels {
            Some(l) => {
                let ls: Vec<u32> = indices.iter().map(|&i| l[i]).collect();
                Some(Tensor::from_vec(ls, indices.len(), device)?)
            }
            None => None,
        };
        Ok(Batch {
            images,
            labels,
            indices: indices.to_vec(),
        })
    }

    /// Splits off a seeded random `test_fraction` of the images as the test part.
    pub fn split(&self, test_fraction: f64, seed: u64) -> Split {
        let order = self.epoch_order(seed, u64::MAX);
        let n_test = ((self.n as f64) * test_fraction.clamp(0.0, 1.0)).round() as usize;
        let (test_idx, train_idx) = order.split_at(n_test);
        let mut train_idx = train_idx.to_vec();
        let mut test_idx = test_idx.to_vec();
        train_idx.sort_unstable();
        test_idx.sort_unstable();
        let mut train = self.subset(&train_idx);
        let mut test = self.subset(&test_idx);
        train.name = format!("{} (train)", self.name);
        test.name = format!("{} (test)", self.name);
        Split { train, test }
    }

    /// The images of one class, in dataset order.
    pub fn of_class(&self, class: u32) -> Dataset {
        let idx: Vec<usize> = match &self.labels {
            Some(l) => (0..self.n).filter(|&i| l[i] == class).collect(),
            None => Vec::new(),
        };
        self.subset(&idx)
    }
}

impl Split {
    /// A multi-line description: shapes, labels and class counts of both parts.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for (part, ds) in [("train", &self.train), ("test", &self.test)] {
            let [n, c, h, w] = ds.shape();
            s.push_str(&format!("{part}: {n} images, {c} x {h} x {w} u8\n"));
            match (ds.class_counts(), ds.class_names()) {
                (Some(counts), names) => {
                    let cells: Vec<String> = counts
                        .iter()
                        .enumerate()
                        .map(|(k, c)| match names {
                            Some(nm) if nm[k] != k.to_string() => format!("{k} {}:{c}", nm[k]),
                            _ => format!("{k}:{c}"),
                        })
                        .collect();
                    s.push_str(&format!("  class counts: {}\n", cells.join(" ")));
                }
                (None, _) => s.push_str("  no labels\n"),
            }
        }
        s
    }
}
