//! Command-line arguments shared by `genmod` and `genmod-tui`.

use crate::data::DataSource;
use clap::Args;
use std::path::PathBuf;

/// Which dataset to use: the embedded digits unless told otherwise.
#[derive(Args, Clone, Debug)]
pub struct DataArgs {
    /// mnist-10k (embedded, default), mnist, fashion-mnist, cifar10 or folder.
    #[arg(long, default_value = "mnist-10k")]
    pub dataset: String,
    /// Folder holding the dataset's files (all but mnist-10k).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Side of the square images an image folder is resized to.
    #[arg(long, default_value_t = 64)]
    pub image_size: u32,
    /// Load at most this many images from an image folder.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Seed of every random choice (splits, initialisation, batches, noise).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl DataArgs {
    /// The dataset these arguments name; a clear error if they do not add up.
    pub fn source(&self) -> anyhow::Result<DataSource> {
        if self.image_size == 0 {
            anyhow::bail!("--image-size must be at least 1, got 0");
        }
        if self.limit == Some(0) {
            anyhow::bail!("--limit must be at least 1, got 0");
        }
        Ok(DataSource::from_name(
            &self.dataset,
            self.data_dir.as_deref(),
            self.image_size,
            self.limit,
        )?)
    }
}
