//! Fitting the clusters of training images that the MLP GAN and the DCGAN condition on
//! (`neural::pixel_clusters`) with k-means (k-means++ seeding and Lloyd's iterations, the
//! initialisation of report 3.5's EM, `classical::gmm::kmeans`). It lives in the trainer
//! because it needs the training data and the classical code, which the models sit beside.

use crate::classical::gmm::kmeans;
use crate::data::Dataset;
use crate::neural::Model;
use crate::util::Stream;
use candle_core::{Device, Tensor};
use faer::Mat;
use rand::seq::index;

/// The most images k-means reads: the clusters of a larger dataset are found on a seeded
/// random subset (every image is then assigned to its nearest centroid for the shares),
/// which bounds the fit's time on full MNIST or CIFAR-10.
pub const FIT_IMAGES: usize = 10_000;

/// The most pixel values k-means holds (as f64, 64 MB): with larger images the subset
/// shrinks (10,000 digits of 784 pixels, 2,604 CIFAR-10 images, 651 faces of 64x64x3), so
/// the fit never costs more memory than the training itself.
pub const FIT_VALUES: usize = 8_000_000;

/// The most Lloyd's iterations (the fit stops earlier once no image changes cluster).
pub const MAX_ITERATIONS: usize = 100;

/// Images converted per batch.
const BATCH: usize = 1000;

/// Fits `model`'s clusters, if it has any, to the images of `train` in the model's pixel
/// scale, with k-means seeded from `seed`; stores the centroids and every cluster's share
/// of all training images. Returns whether there were clusters to fit; the error says why
/// the fit failed.
pub fn fit(model: &dyn Model, train: &Dataset, device: &Device, seed: u64) -> Result<bool, String> {
    let Some(clusters) = model.pixel_clusters() else {
        return Ok(false);
    };
    let k = clusters.clusters();
    let n = train.len();
    if n < k {
        return Err(format!(
            "{n} training images cannot make {k} clusters; ask for at most {n} with --clusters"
        ));
    }
    let table = model.pixel_scale().table();
    let images = |idx: &[usize]| -> Result<Tensor, String> {
        train
            .batch_of(idx, &table, device)
            .map(|b| b.images)
            .map_err(|e| e.to_string())
    };
    let mut rng = Stream::Clusters.rng(seed);
    let image_values = model.shape().dim().max(1);
    let fit_images = FIT_IMAGES.min(FIT_VALUES / image_values).max(k);
    let mut chosen: Vec<usize> = if n > fit_images {
        index::sample(&mut rng, n, fit_images).into_vec()
    } else {
        (0..n).collect()
    };
    chosen.sort_unstable();
    let mut rows: Vec<f32> = Vec::new();
    for part in chosen.chunks(BATCH) {
        let v = images(part)?
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| e.to_string())?;
        rows.extend(v);
    }
    let dim = rows.len() / chosen.len();
    let x = Mat::from_fn(chosen.len(), dim, |i, j| rows[i * dim + j] as f64);
    let assign = kmeans(x.as_ref(), k, &mut rng, MAX_ITERATIONS);
    let mut sums = vec![0.0f64; k * dim];
    let mut members = vec![0usize; k];
    for (i, &c) in assign.iter().enumerate() {
        members[c] += 1;
        for j in 0..dim {
            sums[c * dim + j] += x[(i, j)];
        }
    }
    let centroids: Vec<f32> = (0..k * dim)
        .map(|i| (sums[i] / members[i / dim].max(1) as f64) as f32)
        .collect();
    // Store the centroids first (with the subset's counts) so that every image can be
    // assigned to its nearest one; then the shares of all images.
    clusters
        .set(&centroids, &members)
        .map_err(|e| e.to_string())?;
    if chosen.len() < n {
        let mut counts = vec![0usize; k];
        let all: Vec<usize> = (0..n).collect();
        for part in all.chunks(BATCH) {
            let labels = clusters
                .assign(&images(part)?)
                .and_then(|l| l.to_vec1::<u32>())
                .map_err(|e| e.to_string())?;
            for c in labels {
                counts[c as usize] += 1;
            }
        }
        clusters
            .set(&centroids, &counts)
            .map_err(|e| e.to_string())?;
    }
    Ok(true)
}
