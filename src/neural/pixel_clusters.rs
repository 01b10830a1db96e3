//! Clusters of the training images that the MLP GAN and the DCGAN condition on, in place of
//! labels they do not have: a self-conditioned GAN (Liu et al. 2020, "Diverse Image
//! Generation via Self-Conditioned GANs", CVPR), with the clusters found once by k-means on
//! the pixels rather than repeatedly on the discriminator's features.
//!
//! An unconditional generator must learn every kind of digit from one code space, and
//! within the default budgets many of its samples are blends between kinds. Told which
//! cluster an image belongs to, G only has to draw images of that cluster and D can judge
//! whether an image fits its cluster (the conditional nets' projection head). No label of
//! the data is used: the clusters come from the images alone, and a sample's cluster is
//! drawn with the cluster's share of the training images, so the model stays a model of
//! the images, sampled from a code alone.
//!
//! The clustering needs the training data, so the trainer does it (k-means++ of report
//! 3.5, `classical::gmm::kmeans`) and hands the result to [`PixelClusters::set`]. The
//! centroids and shares are parameters no optimiser trains, so checkpoints carry them.

use super::code_mixture::split_normal;
use super::layers::ParamStore;
use candle_core::{DType, Result, Tensor, Var};
use candle_nn::{Init, VarBuilder};

/// `k` clusters of images of `dim` values: their centroids (K x dim, in the model's pixel
/// scale) and their shares of the training images (K). All zero until the trainer fits
/// them.
pub struct PixelClusters {
    centroids: Var,
    shares: Var,
    k: usize,
    dim: usize,
}

impl PixelClusters {
    /// Unfitted clusters, created in the model's parameters and marked as statistics, so
    /// that no optimiser takes them.
    pub(crate) fn new(k: usize, dim: usize, vb: &VarBuilder, params: &ParamStore) -> Result<Self> {
        let var = |shape: Vec<usize>, name: &str| -> Result<Var> {
            Var::from_tensor(&vb.get_with_hints(shape, name, Init::Const(0.0))?)
        };
        let c = Self {
            centroids: var(vec![k, dim], "clusters.centroids")?,
            shares: var(vec![k], "clusters.shares")?,
            k,
            dim,
        };
        params.mark_statistics(&[c.centroids.as_tensor(), c.shares.as_tensor()])?;
        Ok(c)
    }

    /// The number of clusters.
    pub fn clusters(&self) -> usize {
        self.k
    }

    /// Whether the trainer has fitted them (every share is zero before).
    pub fn fitted(&self) -> Result<bool> {
        Ok(self
            .shares
            .as_tensor()
            .to_vec1::<f32>()?
            .iter()
            .any(|&s| s > 0.0))
    }

    /// Stores centroids (K x dim, row-major) and each cluster's count of training images.
    /// Refused if the sizes do not match or a cluster is empty.
    pub fn set(&self, centroids: &[f32], counts: &[usize]) -> Result<()> {
        let (k, dim) = (self.k, self.dim);
        if centroids.len() != k * dim || counts.len() != k {
            candle_core::bail!(
                "{} centroid values and {} counts do not fit {k} clusters of {dim} values",
                centroids.len(),
                counts.len()
            );
        }
        if let Some(c) = counts.iter().position(|&n| n == 0) {
            candle_core::bail!("cluster {c} of {k} holds no training image");
        }
        let total: usize = counts.iter().sum();
        let shares: Vec<f32> = counts
            .iter()
            .map(|&n| (n as f64 / total as f64) as f32)
            .collect();
        let dev = self.shares.device();
        self.centroids
            .set(&Tensor::from_vec(centroids.to_vec(), (k, dim), dev)?)?;
        self.shares.set(&Tensor::from_vec(shares, k, dev)?)
    }

    /// The centroids, K x dim, row-major.
    pub fn centroids(&self) -> Result<Vec<f32>> {
        self.centroids.as_tensor().flatten_all()?.to_vec1::<f32>()
    }

    /// Each cluster's share of the training images.
    pub fn shares(&self) -> Result<Vec<f32>> {
        self.shares.as_tensor().to_vec1::<f32>()
    }

    /// The nearest centroid of each image of `images` (N x …, dim values each), as u32
    /// labels (N).
    pub fn assign(&self, images: &Tensor) -> Result<Tensor> {
        self.check_fitted()?;
        let n = images.dim(0)?;
        let x = images.reshape((n, self.dim))?;
        let c = self.centroids.as_tensor();
        // ‖x − c‖² = ‖x‖² − 2 x·c + ‖c‖²; ‖x‖² is the same for every centroid of a row.
        let cross = x.matmul(&c.t()?)?;
        let c_sq = c.sqr()?.sum(1)?.unsqueeze(0)?;
        (c_sq.broadcast_sub(&(cross * 2.0)?)?)
            .argmin(1)?
            .to_dtype(DType::U32)
    }

    /// Splits standard normal codes `z` (N x d) into a cluster per row, drawn with the
    /// clusters' shares, and codes whose first coordinate is replaced by a fresh standard
    /// normal independent of the cluster (as [`super::code_mixture::CodeMixture::transform`]
    /// does): one code still gives one image.
    pub fn pick(&self, z: &Tensor) -> Result<(Tensor, Tensor)> {
        self.check_fitted()?;
        let shares = self.shares()?;
        let (n, d) = z.dims2()?;
        let mut rows = z.to_vec2::<f32>()?;
        let mut labels = Vec::with_capacity(n);
        for row in &mut rows {
            let (c, fresh) = split_normal(row[0], &shares);
            labels.push(c as u32);
            row[0] = fresh as f32;
        }
        let z = Tensor::from_vec(rows.concat(), (n, d), z.device())?;
        Ok((Tensor::from_vec(labels, n, z.device())?, z))
    }

    fn check_fitted(&self) -> Result<()> {
        if !self.fitted()? {
            candle_core::bail!(
                "the model's {} clusters have not been fitted yet (the trainer fits them before the first step)",
                self.k
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use rand::SeedableRng;

    fn clusters(k: usize, dim: usize) -> PixelClusters {
        let params = ParamStore::new();
        let vb = VarBuilder::from_varmap(params.varmap(), DType::F32, &Device::Cpu);
        PixelClusters::new(k, dim, &vb, &params).unwrap()
    }

    #[test]
    fn images_go_to_their_nearest_centroid() {
        let c = clusters(3, 2);
        c.set(&[0.0, 0.0, 10.0, 0.0, 0.0, 10.0], &[1, 1, 1])
            .unwrap();
        let x = Tensor::new(
            &[[9.0f32, 1.0], [1.0, -1.0], [2.0, 7.0], [4.9, 0.0]],
            &Device::Cpu,
        )
        .unwrap();
        let labels = c.assign(&x).unwrap().to_vec1::<u32>().unwrap();
        assert_eq!(labels, vec![1, 0, 2, 0]);
    }

    #[test]
    fn codes_pick_clusters_with_their_shares_and_keep_a_fresh_normal() {
        let c = clusters(3, 1);
        c.set(&[0.0, 1.0, 2.0], &[600, 300, 100]).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let n = 40_000;
        let z = crate::neural::normal(n, 2, &mut rng, &Device::Cpu).unwrap();
        let (labels, z2) = c.pick(&z).unwrap();
        let labels = labels.to_vec1::<u32>().unwrap();
        let z2 = z2.to_vec2::<f32>().unwrap();
        let z = z.to_vec2::<f32>().unwrap();
        for (cluster, want) in [(0u32, 0.6), (1, 0.3), (2, 0.1)] {
            let rows: Vec<usize> = (0..n).filter(|&i| labels[i] == cluster).collect();
            let share = rows.len() as f64 / n as f64;
            assert!((share - want).abs() < 0.01, "cluster {cluster}: {share}");
            // Within a cluster the new first coordinate is again standard normal.
            let m = rows.iter().map(|&i| z2[i][0] as f64).sum::<f64>() / rows.len() as f64;
            let v = rows
                .iter()
                .map(|&i| (z2[i][0] as f64 - m).powi(2))
                .sum::<f64>()
                / rows.len() as f64;
            assert!(
                m.abs() < 0.05 && (v - 1.0).abs() < 0.06,
                "cluster {cluster}: {m} {v}"
            );
        }
        // The other coordinates pass through.
        assert!((0..n).all(|i| z2[i][1] == z[i][1]));
    }

    #[test]
    fn unfitted_or_mismatched_clusters_are_refused() {
        let c = clusters(2, 2);
        let x = Tensor::zeros((1, 2), DType::F32, &Device::Cpu).unwrap();
        let e = c.assign(&x).unwrap_err().to_string();
        assert!(e.contains("have not been fitted yet"), "{e}");
        let e = c.set(&[0.0; 3], &[1, 1]).unwrap_err().to_string();
        assert!(e.contains("do not fit 2 clusters of 2 values"), "{e}");
        let e = c.set(&[0.0; 4], &[3, 0]).unwrap_err().to_string();
        assert!(e.contains("cluster 1 of 2 holds no training image"), "{e}");
    }
}
